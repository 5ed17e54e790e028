"""Audio in, per-video-frame features out: decoding, analysis, normalisation, envelopes.

    samples = load_audio(path)                      # wav, flac, mp3, m4a, opus, mp4, webm, ... -> mono float32
    raw = raw_features(samples, sr, fps, config)    # per frame, un-normalised, unsmoothed
    features = finish_features(raw, fps, config)    # smoothed (attack/release), then 0..1
    # or all at once, with optional per-feature stems:
    features = compute_features("song.mp3", fps=30, stems={"onset": "drums.wav"})

Frame timing. Video frame i is shown during `[i/fps, (i+1)/fps)`; `n_frames =
floor(duration * fps)`. Its features describe the audio around the frame's presentation
time `i/fps` (analysis windows are centred there), so what is seen starts when it is heard.
  * When `hop = sr / fps` is an integer no larger than `n_fft / 2` (22050 Hz at 25, 30, 50
    fps), librosa runs with that hop and analysis frame i IS video frame i.
  * Otherwise (24, 29.97 or 60 fps at 22050 Hz, or fps so low that the hop would skip
    audio), librosa runs at a finer hop (the largest integer <= half a video frame and
    <= n_fft / 4) and each video frame pools the fine frames centred in
    `[i/fps - 1/(2 fps), i/fps + 1/(2 fps))`: RMS-like features by root-mean-square,
    chroma by mean, onset strength by max (a transient is never dropped between samples).
  Measured on 120 BPM clicks at 20 sub-frame offsets, onset peaks land -10..+22 ms from
  the click at 30 fps (frame: 33 ms), -23..+21 ms at 24 fps, -2..+36 ms at 25 fps
  (frame: 40 ms; librosa's whole-frame centring shift leaves a +17 ms mean lag there).

Features (`FEATURES`), all per frame:
  rms         RMS amplitude of the waveform (window n_fft)
  onset       onset strength (spectral flux of the log-mel spectrogram)
  percussive  RMS of the percussive part of a median-filter HPSS
  harmonic    RMS of the harmonic part
  low/mid/high  RMS of the spectrum below `low_hz`, between, and above `high_hz`
  chroma      `[n_frames, 12]` pitch-class energy (C, C#, ..., B), tuning A440

Normalisation: each feature is smoothed with its attack/release envelope
(`smooth_envelope`), then divided by its maximum over the song (chroma by its maximum over
all frames and bins, so bins stay comparable), giving 0..1 with the loudest moment at 1.
Onset strength is level-independent, so it is divided by at least `onset_floor`: a song
with no transients keeps a small onset feature instead of its flutter at full scale.
Frames quieter than `silence_db` (dBFS, waveform RMS; default -80) or more than `gate_db`
below the loudest frame (default -60 dB) count as silence: every feature is 0 there, so
digital silence and hiss give all-zero features, never NaN.

All analysis is local in time (no global tuning estimate, no top-dB clamp relative to the
song's peak), so it runs in overlapping blocks of `BLOCK_SECONDS` and memory does not grow
with the song beyond the decoded mono samples (5.3 MB a minute at 22050 Hz); `load_audio`
decodes and resamples as a stream for the same reason.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
import subprocess
import tempfile
import warnings
from fractions import Fraction
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from gvjax import chatter
from gvjax.config import known_fields
from gvjax.errors import GvjaxError

SR = 22050
FEATURES = ("rms", "onset", "percussive", "harmonic", "low", "mid", "high", "chroma")
_HPSS = ("percussive", "harmonic")
BLOCK_SECONDS = 10.0  # analysis block length; results do not depend on it

# (attack, release) in seconds, per feature: amplitudes rise fast and fall slowly, onsets hit instantly.
DEFAULT_SMOOTHING = {
    "rms": (0.02, 0.25),
    "onset": (0.0, 0.12),
    "percussive": (0.01, 0.15),
    "harmonic": (0.05, 0.4),
    "low": (0.01, 0.2),
    "mid": (0.02, 0.25),
    "high": (0.01, 0.15),
    "chroma": (0.05, 0.4),
}


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Options of the audio analysis; serialisable with `to_dict` / `from_dict`.

    Attributes:
      sr: analysis sample rate in Hz (audio is resampled to it).
      n_fft: STFT window in samples.
      n_mels: mel bands of the onset-strength spectrogram.
      low_hz, high_hz: band edges of `low` (< low_hz), `mid` and `high` (>= high_hz), Hz.
      hpss_seconds: length of the HPSS harmonic median filter along time, seconds.
      hpss_bins: length of the HPSS percussive median filter along frequency, STFT bins.
      silence_db: absolute silence floor, dBFS: frames whose waveform RMS is below it are
        silent (all features 0), so dither, hiss and digital silence never drive the video.
      gate_db: relative gate, dB (<= 0): frames this far below the source's loudest frame are
        silent too (a fade's tail would otherwise flicker in the level-independent onset feature).
      onset_floor: the onset strength (mean rise in dB per mel band from one frame to the
        next) that normalises to 1 at the least. Onset strength does not scale with level,
        so a song without transients (a steady pad: flutter of ~1 dB) would otherwise have
        its flutter stretched to full scale; drum hits measure 30-90.
      smoothing: feature name -> (attack, release) time constants in seconds (0 = instant);
        missing names take DEFAULT_SMOOTHING. Given as a mapping, stored as a tuple of
        `(name, attack, release)` in FEATURES order (so the config stays hashable); read
        it with `envelope(name)`.
    """

    sr: int = SR
    n_fft: int = 2048
    n_mels: int = 128
    low_hz: float = 250.0
    high_hz: float = 4000.0
    hpss_seconds: float = 0.5
    hpss_bins: int = 31
    silence_db: float = -80.0
    gate_db: float = -60.0
    onset_floor: float = 10.0
    smoothing: Any = ()

    def __post_init__(self):
        if self.sr <= 0 or self.n_fft < 16:
            raise GvjaxError(f"analysis needs sr > 0 and n_fft >= 16, got sr={self.sr}, n_fft={self.n_fft}")
        if not 0 < self.low_hz < self.high_hz < self.sr / 2:
            raise GvjaxError(f"band edges must satisfy 0 < low_hz < high_hz < sr/2, got {self.low_hz}, {self.high_hz}")
        if not self.onset_floor >= 0:
            raise GvjaxError(f"onset_floor must be >= 0, got {self.onset_floor}")
        if not (self.gate_db <= 0 and math.isfinite(self.silence_db)):
            raise GvjaxError(f"gate_db must be <= 0 and silence_db finite, got {self.gate_db}, {self.silence_db}")
        given = self.smoothing
        if not isinstance(given, Mapping):
            given = {item[0]: tuple(item[1:]) for item in given}
        unknown = sorted(set(given) - set(FEATURES))
        if unknown:
            raise GvjaxError(f"unknown feature(s) in smoothing: {', '.join(unknown)}; expected {', '.join(FEATURES)}")
        merged = []
        for name in FEATURES:
            attack, release = given.get(name, DEFAULT_SMOOTHING[name])
            if not (attack >= 0 and release >= 0 and math.isfinite(attack) and math.isfinite(release)):
                raise GvjaxError(f"attack and release of {name} must be finite and >= 0, got {attack}, {release}")
            merged.append((name, float(attack), float(release)))
        object.__setattr__(self, "smoothing", tuple(merged))

    def envelope(self, name: str) -> tuple[float, float]:
        """(attack, release) in seconds of feature `name`."""
        for feature, attack, release in self.smoothing:
            if feature == name:
                return attack, release
        raise GvjaxError(f"unknown audio feature {name!r}; expected one of {', '.join(FEATURES)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["smoothing"] = {name: [attack, release] for name, attack, release in self.smoothing}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureConfig":
        return cls(**known_fields(cls, d, "audio feature config"))


@dataclasses.dataclass(frozen=True)
class AudioFeatures:
    """Per-video-frame features, each 0..1, smoothed. `features["rms"]` indexes by name.

    Attributes:
      fps: video frames per second they were computed for.
      rms, onset, percussive, harmonic, low, mid, high: `[n_frames]` float32, per frame, 0..1.
      chroma: `[n_frames, 12]` float32, per frame, 0..1 (C, C#, ..., B).
      peaks: feature name -> what the smoothed feature was divided by: its maximum (onset: at
        least `onset_floor`), 0 when silent.
      sources: feature name -> the audio file it was computed from (the mix or a stem).
    """

    fps: float
    rms: np.ndarray
    onset: np.ndarray
    percussive: np.ndarray
    harmonic: np.ndarray
    low: np.ndarray
    mid: np.ndarray
    high: np.ndarray
    chroma: np.ndarray
    peaks: Mapping[str, float] = dataclasses.field(default_factory=dict)
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.rms.shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in FEATURES:
            raise GvjaxError(f"unknown audio feature {name!r}; expected one of {', '.join(FEATURES)}")
        return getattr(self, name)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in FEATURES}


# ----------------------------------------------------------------------------- decoding


def load_audio(
    path: str | os.PathLike, *, sr: int = SR, start: float = 0.0, duration: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode an audio file: `(samples [n] float32 mono, sr)`, samples within [-1, 1].

    Formats libsndfile reads (wav, flac, ogg vorbis/opus, mp3, aiff, ...) are decoded in
    blocks (`librosa.stream`) and resampled as a stream (soxr HQ), giving the samples and
    length of `librosa.load`. Anything else goes through the bundled ffmpeg
    (imageio-ffmpeg's binary): m4a/aac, alac, wma, and the first audio stream of a video
    (mp4, mov, mkv, webm, avi, ...), decoded to float32 at the native rate, trimmed to the
    range to the sample (`int(start * rate)`, `int(duration * rate)`, as librosa) and
    resampled the same way. The decoders trim AAC/Opus/Vorbis priming samples (WMA's
    decoder delay of 1024 samples stays). Either way memory holds the mono `sr` result
    only. Any channel count is averaged to mono.

    Samples beyond full scale (float files; a lossy decode of a clipped master overshoots a
    little) are divided by the peak of the loaded mono range, so the analysis sees at most
    full scale and cannot overflow, even for a float wav peaking at 1e30 or 3e38 (features
    are normalised per song anyway; only the absolute `silence_db` floor then counts from the
    peak). `peak_gain` gives a muxer the matching gain. NaN or infinite samples are refused.

    What the decoders print (C libraries on file descriptor 2, such as mpg123's `Note: ...`
    lines; ffmpeg's log; Python warnings) goes to `gvjax.chatter` (shown with `--verbose`),
    never to the terminal.

    Args:
      path: the audio (or video) file.
      sr: output sample rate, Hz.
      start: offset of the range to load, seconds (>= 0).
      duration: length of the range, seconds (> 0), or None for the rest of the file.

    Raises GvjaxError (one line naming the file) for a missing, unreadable or non-audio
    file, a video without an audio stream, NaN/inf samples, a start past the end, or a
    file with no samples.
    """
    path = _check_file(path)
    if not (math.isfinite(start) and start >= 0):
        raise GvjaxError(f"audio start must be >= 0 seconds, got {start}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise GvjaxError(f"audio duration must be > 0 seconds, got {duration}")
    with chatter.quiet_stderr(f"audio {path}"):
        y = _decode(path, sr, start, duration, np.float32)
        gain = 1.0
        if y is None or not np.isfinite(np.sum(y, dtype=np.float64)):
            # NaN/inf samples (peak_gain refuses them), or float samples too large for float32
            # arithmetic (mixing down, soxr): decoded again in float64, scaled to full scale first.
            gain = peak_gain(path, start=start, duration=duration)
            y = _decode(path, sr, start, duration, np.float64, gain=gain)
        peak = float(np.max(np.abs(y))) if y is not None and y.size else 0.0
    if y is None or not math.isfinite(peak):
        raise _not_finite(path)
    if y.size == 0:
        if start > 0:
            raise _past_end(path, start)
        raise GvjaxError(f"{path} contains no audio samples")
    if peak > 1 or (gain != 1 and peak > 0):
        chatter.note(f"audio {path}", f"peak {peak / gain:.3g} is beyond full scale: samples divided by it")
        y = y / peak
    return np.asarray(y, np.float32).reshape(-1), int(sr)


def _not_finite(path: str) -> GvjaxError:
    return GvjaxError(f"{path} has NaN or infinite samples (a damaged float file): cannot analyse it")


def _decode(path: str, sr: int, start: float, duration: float | None, dtype, *, gain: float = 1.0) -> np.ndarray | None:
    """`[n]` mono samples at `sr` in `dtype`, times `gain`: libsndfile where it reads the file, else ffmpeg.

    None when libsndfile read samples that are not finite in `dtype` (librosa refuses them).
    """
    import librosa
    import soundfile

    try:
        info = soundfile.info(path)
    except Exception:  # noqa: BLE001 - not a libsndfile format
        return _ffmpeg_decode(path, sr, start, duration, dtype, gain=gain)
    if start > 0 and info.frames > 0 and start >= info.frames / info.samplerate:
        raise _past_end(path, start)
    try:
        return _stream_decode(path, info, sr, start, duration, dtype=dtype, gain=gain)
    except librosa.ParameterError:  # "Audio buffer is not finite everywhere"
        return None
    except Exception as e:  # noqa: BLE001 - libsndfile opened it but cannot decode it: ffmpeg may
        chatter.note(f"audio {path}", f"libsndfile failed ({_one_line(e)}); decoding with ffmpeg")
        return _ffmpeg_decode(path, sr, start, duration, dtype, gain=gain)


def _past_end(path: str, start: float) -> GvjaxError:
    return GvjaxError(f"start {start:g} s is past the end of {path} ({audio_duration(path):.2f} s long)")


def _stream_decode(
    path: str, info, sr: int, start: float, duration: float | None, *, dtype=np.float32, gain: float = 1.0
) -> np.ndarray:
    """Block-wise decode + mono + streaming soxr resample; same samples and length as `librosa.load`.

    `info` is the file's `soundfile.info`; its frame count sizes the output once (no
    doubling, no final copy). `dtype` float64 reads and mixes down in double precision, and
    `gain` scales the mono blocks before resampling (float samples too large for float32 and
    for soxr, whose HQ filter computes in single precision).
    """
    import librosa

    native_sr = info.samplerate
    block = 1 << 16
    n_est = max(0, info.frames - int(start * native_sr)) if info.frames > 0 else block
    if duration is not None:
        n_est = min(n_est, int(duration * native_sr))
    blocks = librosa.stream(
        path, block_length=1, frame_length=block, hop_length=block, mono=True,
        offset=start or None, duration=duration, fill_value=None, dtype=dtype,
    )
    return _resample_stream(blocks, native_sr, sr, n_est, dtype, gain)


def _resample_stream(
    blocks: Iterable[np.ndarray], native_sr: int, sr: int, n_est: int, dtype, gain: float = 1.0
) -> np.ndarray:
    """Concatenate mono blocks at `native_sr` times `gain`, resampled to `sr` as a stream (soxr HQ, as `librosa.load`).

    The output is `ceil(n * sr / native_sr)` samples for n input samples
    (`librosa.resample(fix=True)`), allocated once for `n_est` input samples and grown if
    the stream is longer.
    """
    import soxr

    resampler = None if native_sr == sr else soxr.ResampleStream(native_sr, sr, 1, dtype=np.dtype(dtype).name, quality="HQ")
    out = np.zeros(math.ceil(n_est * sr / native_sr) + 64, dtype)
    n_in = n_out = 0

    def put(x):
        nonlocal out, n_out
        if n_out + x.size > out.size:  # the estimate was short (some mp3 headers, ffmpeg streams)
            out = np.resize(out, n_out + x.size + out.size // 4)
        out[n_out : n_out + x.size] = x
        n_out += x.size

    for x in blocks:
        x = np.ascontiguousarray(x, dtype).reshape(-1)
        x = x if gain == 1 else x * gain
        n_in += x.size
        put(x if resampler is None else resampler.resample_chunk(x))
    if resampler is not None:
        put(resampler.resample_chunk(np.zeros(0, dtype), last=True))
    n_expected = n_in if resampler is None else math.ceil(n_in * sr / native_sr)  # librosa.resample(fix=True)
    if n_out < n_expected:
        out = np.resize(out, n_expected) if out.size < n_expected else out
        out[n_out:n_expected] = 0
    return out[:n_expected]


def audio_duration(path: str | os.PathLike) -> float:
    """Length of an audio file in seconds: from the header for libsndfile formats, else by
    decoding its first audio stream with ffmpeg (exact: the samples `load_audio` gets)."""
    path = _check_file(path)
    import soundfile

    with chatter.quiet_stderr(f"audio {path}"):
        try:
            return float(soundfile.info(path).duration)
        except Exception:  # noqa: BLE001 - not a libsndfile format
            pass
        with _FfmpegAudio(path, np.float32) as stream:
            return sum(x.shape[0] for x in stream.blocks()) / stream.sr


def peak_gain(path: str | os.PathLike, *, start: float = 0.0, duration: float | None = None) -> float:
    """The gain that brings a range of the file within full scale: `1 / peak` when its sample
    peak (any channel, native rate) exceeds 1, else 1.0.

    For playing what `load_audio` analyses: only float files exceed full scale, and ffmpeg's
    AAC encoder fails on samples beyond about 1e7 and stalls just below (a muxer applies
    it as `-af volume=GAIN`). NaN or infinite samples are a GvjaxError, as in `load_audio`.
    """
    path = _check_file(path)
    import soundfile

    peak = 0.0
    with chatter.quiet_stderr(f"audio {path}"):
        try:
            info = soundfile.info(path)
        except Exception:  # noqa: BLE001 - not a libsndfile format
            info = None
        if info is not None:
            first = int(start * info.samplerate)
            count = -1 if duration is None else int(duration * info.samplerate)
            blocks = soundfile.blocks(path, blocksize=1 << 16, dtype="float64", always_2d=True, start=first, frames=count)
            for x in blocks:
                peak = float(np.max(np.abs(x), initial=peak))  # NaN stays NaN
        else:
            with _FfmpegAudio(path, np.float64) as stream:
                first = int(start * stream.sr)
                for x in stream.blocks(first, None if duration is None else int(duration * stream.sr)):
                    peak = float(np.max(np.abs(x), initial=peak))
    if not math.isfinite(peak):
        raise _not_finite(path)
    return 1.0 / peak if peak > 1 else 1.0


# ffmpeg's demuxers of still images: such an input is "an image", not "a video without sound".
_IMAGE_DEMUXERS = ("image2", "apng", "gif", "svg")


class _FfmpegAudio:
    """The first audio stream of a file, decoded by the bundled ffmpeg: native rate, all channels.

    ffmpeg writes a float wav (32 or 64 bit) to a pipe; we read its header for the rate and
    channel count, then blocks of `[frames, channels]`. Its log (`-v warning`) goes
    to a temporary file, read when the stream closes: kept by `gvjax.chatter`, and turned
    into a one-line GvjaxError when ffmpeg failed. Use as a context
    manager; leaving early stops ffmpeg.
    """

    def __init__(self, path: str, dtype):
        import imageio_ffmpeg

        self.path = path
        self.dtype = np.dtype(dtype)
        codec = {"float32": "pcm_f32le", "float64": "pcm_f64le"}[self.dtype.name]
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-v", "warning",
            "-i", path, "-map", "0:a:0", "-c:a", codec, "-map_metadata", "-1", "-f", "wav", "pipe:1",
        ]
        self._log = tempfile.TemporaryFile()
        self._stopped = False
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        except OSError as e:
            self._log.close()
            raise GvjaxError(f"cannot read audio from {path}: cannot run ffmpeg ({_one_line(e)})") from None
        header = _wav_header(self._proc.stdout)
        if header is None:  # ffmpeg stopped before writing audio: its log says why
            self._finish()
            raise GvjaxError(f"cannot read audio from {path}: ffmpeg wrote no audio")
        self.sr, self.channels = header

    def blocks(self, first: int = 0, count: int | None = None, block: int = 1 << 16) -> Iterator[np.ndarray]:
        """`[frames, channels]` blocks of frames `[first, first + count)` (count None: to the end)."""
        frame_bytes = self.channels * self.dtype.itemsize
        at, end = 0, math.inf if count is None else first + count
        while at < end:
            data = self._proc.stdout.read(block * frame_bytes)
            if len(data) < frame_bytes:
                return
            x = np.frombuffer(data[: len(data) // frame_bytes * frame_bytes], "<" + self.dtype.str[1:])
            x = x.reshape(-1, self.channels)
            lo, hi = max(first - at, 0), min(x.shape[0], end - at)
            at += x.shape[0]
            if hi > lo:
                yield x[lo:hi]
        self._stopped = True  # the range is complete: ffmpeg need not decode the rest

    def __enter__(self) -> "_FfmpegAudio":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self._stopped |= kind is not None
        self._finish()

    def _finish(self) -> None:
        """Stop or reap ffmpeg; note its log, or raise the cause of its failure as a GvjaxError."""
        if self._stopped and self._proc.poll() is None:
            self._proc.kill()
        self._proc.stdout.close()
        code = self._proc.wait()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        self._log.close()
        chatter.note(f"ffmpeg {self.path}", text)
        if code != 0 and not self._stopped:
            raise _ffmpeg_error(self.path, text)


def _wav_header(pipe) -> tuple[int, int] | None:
    """`(rate, channels)` from the RIFF header ffmpeg writes to a pipe, leaving `pipe` at the
    first sample; None when the stream ends first."""
    head = pipe.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    fmt = None
    while True:
        chunk = pipe.read(8)
        if len(chunk) < 8:
            return None
        size = int.from_bytes(chunk[4:], "little")
        if chunk[:4] == b"data":  # size 0xFFFFFFFF on a pipe: read to the end
            return None if fmt is None else fmt
        body = pipe.read(size + (size & 1))
        if chunk[:4] == b"fmt " and len(body) >= 8:
            fmt = int.from_bytes(body[4:8], "little"), int.from_bytes(body[2:4], "little")


def _ffmpeg_decode(path: str, sr: int, start: float, duration: float | None, dtype, *, gain: float = 1.0) -> np.ndarray:
    """`[n]` mono samples at `sr` of the file's first audio stream, decoded by ffmpeg, times `gain`."""
    with _FfmpegAudio(path, dtype) as stream:
        first = int(start * stream.sr)
        count = None if duration is None else int(duration * stream.sr)
        mono = (x.mean(axis=1) for x in stream.blocks(first, count))
        return _resample_stream(mono, stream.sr, sr, count or 60 * stream.sr, dtype, gain)


def _ffmpeg_error(path: str, log: str) -> GvjaxError:
    """One line for a failed ffmpeg decode: no audio stream (an image, a silent video) or ffmpeg's own cause."""
    if "matches no streams" in log:  # ffmpeg's description of the input says what it holds instead
        import imageio_ffmpeg

        probe = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path]  # exits 1: no output given
        info = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace").stderr
        chatter.note(f"ffmpeg {path}", info)
        demuxer = re.search(r"^Input #0, ([^,\s]+)", info, re.M)
        video = re.search(r"^\s*Stream #0:\d+\S*: Video: (\w+)", info, re.M)
        demuxer = demuxer.group(1) if demuxer else ""
        if video and (demuxer.endswith("_pipe") or demuxer in _IMAGE_DEMUXERS):
            return GvjaxError(f"cannot read audio from {path}: not a readable audio file (it is a {video.group(1)} image)")
        what = " (a video without sound)" if video else ""
        return GvjaxError(f"{path} has no audio stream{what}")
    lines = [re.sub(r"^\[[^]]*@ 0x[0-9a-f]+\]\s*", "", line).strip() for line in log.splitlines()]
    lines = [line for line in lines if line]
    cause = lines[-1] if lines else "ffmpeg failed"
    return GvjaxError(f"cannot read audio from {path}: not a readable audio file ({cause[:200]})")


def _fps_fraction(fps: float) -> Fraction:
    """fps as an exact fraction: 30 -> 30, 29.97 -> 2997/100, 30000/1001 (a float) -> 30000/1001."""
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise GvjaxError(f"fps must be > 0, got {fps:g}")
    return Fraction(fps).limit_denominator(1_000_000)


def frame_count(n_samples: int, sr: int, fps: float) -> int:
    """`floor(duration * fps)` video frames for `n_samples` at `sr`, exact for fps like 30 or 29.97."""
    return math.floor(Fraction(int(n_samples)) * _fps_fraction(fps) / int(sr))


# ----------------------------------------------------------------------------- analysis


def analysis_hop(sr: int, fps: float, n_fft: int = 2048) -> tuple[int, bool]:
    """`(hop, direct)`: the STFT hop in samples, and whether analysis frames are video frames.

    `direct` when `sr / fps` is an integer <= n_fft / 2. Otherwise the hop is the largest
    integer <= min(sr / (2 fps), n_fft / 4) (at least 16), so every video frame pools at least
    two analysis frames.
    """
    period = Fraction(int(sr)) / _fps_fraction(fps)
    if period.denominator == 1 and period <= n_fft // 2:
        return int(period), True
    return max(16, math.floor(min(period / 2, Fraction(n_fft, 4)))), False


def hpss_stride(sr: int, hop: int) -> int:
    """HPSS runs on every k-th analysis frame, k = round((sr / 30) / hop) >= 1: about 30 frames/s.

    The median filters cost (frames x kernel length), both growing as 1/hop; at a 30 Hz
    frame rate a 5-minute song separates in seconds. The harmonic and percussive RMS are
    interpolated linearly back to the analysis frames (their n_fft window is ~93 ms anyway).
    """
    return max(1, round(sr / 30 / hop))


def raw_features(
    samples: np.ndarray,
    sr: int,
    fps: float,
    config: FeatureConfig = FeatureConfig(),
    *,
    names: tuple[str, ...] = FEATURES,
    source: str = "audio",
    block_seconds: float = BLOCK_SECONDS,
) -> dict[str, np.ndarray]:
    """Un-normalised, unsmoothed features per video frame of mono `samples [n]` at `sr`.

    Returns name -> `[n_frames]` float32 (`chroma`: `[n_frames, 12]`), n_frames =
    `frame_count(n, sr, fps)`. Amplitude features (rms, percussive, harmonic, low, mid,
    high) are linear RMS in full-scale units (a full-scale sine has rms 0.707); they scale
    with the input gain. Silent frames (below `config.silence_db` dBFS, or `config.gate_db`
    below the loudest frame) are 0 in every feature.
    `names` limits the work (HPSS runs only for percussive/harmonic). `source` names the
    audio in error messages. The analysis runs in overlapping blocks of about
    `block_seconds` (memory stays flat with the song's length); the overlap covers every
    window and filter, so the result equals a whole-song analysis to float rounding.
    """
    import librosa

    _fps_fraction(fps)  # validates
    unknown = sorted(set(names) - set(FEATURES))
    if unknown:
        raise GvjaxError(f"unknown audio feature(s): {', '.join(unknown)}; expected {', '.join(FEATURES)}")
    y = np.asarray(samples, np.float32).reshape(-1)
    if sr != config.sr:
        y = librosa.resample(y, orig_sr=sr, target_sr=config.sr).astype(np.float32)
        sr = config.sr
    n_frames = _frames_or_error(y.size, sr, fps, source)
    hop, direct = analysis_hop(sr, fps, config.n_fft)
    fine = _analysis_blocked(y, hop, config, tuple(names), block_seconds)

    level = fine["rms"]
    floor = max(10 ** (config.silence_db / 20), level.max() * 10 ** (config.gate_db / 20))
    gate = (level >= floor).astype(np.float64)
    out = {}
    for name in names:
        x = fine[name] * (gate[:, None] if fine[name].ndim == 2 else gate)
        x = _frames_direct(x, n_frames) if direct else _pool(x, name, n_frames, hop, sr, fps)
        out[name] = np.maximum(x, 0).astype(np.float32)
    return out


def _hpss_time_kernel(config: FeatureConfig, hop: int) -> int:
    """Odd length in frames (at `hop`) of the harmonic median filter: about `hpss_seconds`."""
    return 2 * max(1, round(config.hpss_seconds * config.sr / hop / 2)) + 1


def _analysis_blocked(
    y: np.ndarray, hop: int, config: FeatureConfig, names: tuple[str, ...], block_seconds: float
) -> dict[str, np.ndarray]:
    """`_analysis` of the whole signal, computed block by block.

    Analysis frame j is centred on sample `j * hop` (m = 1 + n // hop frames). A block of
    frames [a, b) is analysed from samples `[(a - M) hop, (b + M) hop)`, cut on the hop
    grid so frame numbers line up, where the margin M covers the STFT window (n_fft / 2
    each side), the onset lag and librosa's centring shift, and half the HPSS time
    median filter; frames of [a, b) then see exactly the samples they see in one pass.
    Block starts and margins are multiples of the HPSS stride, so its grid lines up too.
    """
    m = 1 + y.size // hop
    k = hpss_stride(config.sr, hop)
    reach = -(-config.n_fft // (2 * hop))  # STFT half window, in frames (rounded up)
    margin = 2 * reach + 2 + k * (_hpss_time_kernel(config, hop * k) // 2 + 2)
    margin = k * -(-margin // k)
    block = k * max(1, int(block_seconds * config.sr / hop) // k)
    parts: dict[str, list[np.ndarray]] = {}
    for a in range(0, m, block):
        b = min(a + block, m)
        s0 = max(0, a - margin) * hop
        s1 = min(y.size, (b + margin) * hop)
        first = s0 // hop
        for name, x in _analysis(y[s0:s1], hop, config, names).items():
            parts.setdefault(name, []).append(x[a - first : b - first])
    return {name: np.concatenate(xs) for name, xs in parts.items()}


def _analysis(y: np.ndarray, hop: int, config: FeatureConfig, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Features per analysis frame (`1 + n // hop` frames, centred): name -> `[m]` or `[m, 12]` float64.

    Always includes `rms` (the silence gate).
    """
    import librosa

    sr, n_fft = config.sr, config.n_fft
    out: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft > short input: librosa pads, and says so
        spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True))  # [1 + n_fft/2, m]
        out["rms"] = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop, center=True)[0]
        if "onset" in names:
            mel = librosa.feature.melspectrogram(S=spec**2, sr=sr, n_mels=config.n_mels, fmax=sr / 2)
            log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
            out["onset"] = librosa.onset.onset_strength(
                S=log_mel, sr=sr, n_fft=n_fft, hop_length=hop, lag=1, max_size=1, center=True
            )
        if any(name in names for name in _HPSS):
            k = hpss_stride(sr, hop)  # frames 0, k, 2k, ...: the STFT at hop k * hop
            kernel = (_hpss_time_kernel(config, hop * k), config.hpss_bins)
            harmonic, percussive = librosa.decompose.hpss(spec[:, ::k], kernel_size=kernel)
            at = np.arange(spec.shape[1]) / k
            for name, part in (("harmonic", harmonic), ("percussive", percussive)):
                coarse = librosa.feature.rms(S=part, frame_length=n_fft)[0]
                out[name] = np.interp(at, np.arange(coarse.size), coarse)
        freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
        bands = {
            "low": freqs < config.low_hz,
            "mid": (freqs >= config.low_hz) & (freqs < config.high_hz),
            "high": freqs >= config.high_hz,
        }
        for name, mask in bands.items():
            if name in names:
                out[name] = librosa.feature.rms(S=spec * mask[:, None], frame_length=n_fft)[0]
        if "chroma" in names:
            out["chroma"] = librosa.feature.chroma_stft(
                S=spec**2, sr=sr, n_fft=n_fft, hop_length=hop, norm=None, tuning=0.0
            ).T  # [m, 12]
    m = 1 + y.size // hop
    return {name: _fit_length(np.asarray(x, np.float64), m) for name, x in out.items()}


def _frames_direct(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Analysis frame i is video frame i; pad with zeros if the STFT came out short."""
    if x.shape[0] < n_frames:
        x = np.concatenate([x, np.zeros((n_frames - x.shape[0],) + x.shape[1:], x.dtype)])
    return x[:n_frames]


def _pool(x: np.ndarray, name: str, n_frames: int, hop: int, sr: int, fps: float) -> np.ndarray:
    """Pool fine frames (centred at `j * hop / sr`) into video frames centred at `i / fps`."""
    edges = (np.arange(n_frames + 1) - 0.5) / fps  # window of frame i: [edges[i], edges[i+1])
    bounds = np.clip(np.ceil(edges * sr / hop - 1e-9).astype(np.int64), 0, None)
    if bounds[-1] > x.shape[0]:  # short STFT tail: pad with the last frame's value
        x = np.concatenate([x, np.repeat(x[-1:], bounds[-1] - x.shape[0], axis=0)])
    x = x[: bounds[-1]]
    starts = bounds[:-1]
    if name == "onset":
        return np.maximum.reduceat(x, starts, axis=0)
    counts = np.diff(bounds).astype(np.float64)
    counts = counts[:, None] if x.ndim == 2 else counts
    if name == "chroma":
        return np.add.reduceat(x, starts, axis=0) / counts
    return np.sqrt(np.add.reduceat(x * x, starts, axis=0) / counts)


# ----------------------------------------------------------------------------- envelopes


def smooth_envelope(x: np.ndarray, fps: float, attack: float, release: float) -> np.ndarray:
    """One-pole envelope follower with separate attack and release time constants.

    `y[k] = a * y[k-1] + (1 - a) * x[k]`, with `y[-1] = 0` and `a = exp(-1 / (tau * fps))`,
    where tau is `attack` (seconds) when `x[k] > y[k-1]` and `release` otherwise; tau = 0 is
    instant (`a = 0`). A step input reaches `1 - 1/e` of its height after `attack` seconds
    and falls to `1/e` after `release` seconds. Output stays within [min(0, x), max(x)].

    Args:
      x: `[n_frames, ...]`, per frame; trailing axes are smoothed independently.
      fps: frames per second of x.
      attack, release: time constants, seconds (>= 0).
    Returns: float64 array, same shape as x.
    """
    x = np.asarray(x, np.float64)
    if attack < 0 or release < 0:
        raise GvjaxError(f"attack and release must be >= 0 seconds, got {attack}, {release}")
    a_att = math.exp(-1.0 / (attack * fps)) if attack > 0 else 0.0
    a_rel = math.exp(-1.0 / (release * fps)) if release > 0 else 0.0
    out = np.empty_like(x)
    if x.ndim == 1:  # plain floats: ~10x faster than numpy on scalars
        y = 0.0
        for k, v in enumerate(x.tolist()):
            a = a_att if v > y else a_rel
            y = a * y + (1.0 - a) * v
            out[k] = y
        return out
    y = np.zeros(x.shape[1:])
    for k in range(x.shape[0]):
        a = np.where(x[k] > y, a_att, a_rel)
        y = a * y + (1.0 - a) * x[k]
        out[k] = y
    return out


def normalise(x: np.ndarray, floor: float = 0.0) -> tuple[np.ndarray, float]:
    """`(x / d, d)` with `d = max(max(x), floor)`, as float32 in 0..1; an all-zero x stays zero (d = 0)."""
    x = np.nan_to_num(np.asarray(x, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(x.max()) if x.size else 0.0
    if not peak > 0:
        return np.zeros(x.shape, np.float32), 0.0
    divisor = max(peak, floor)
    return np.clip(x / divisor, 0, 1).astype(np.float32), divisor


def finish_features(
    raw: Mapping[str, np.ndarray], fps: float, config: FeatureConfig = FeatureConfig(), *, sources=None
) -> AudioFeatures:
    """Smooth each raw feature with its (attack, release), then normalise it to 0..1.

    `raw`: name -> `[n_frames]` (chroma `[n_frames, 12]`) from `raw_features`; onset is divided
    by at least `config.onset_floor`. `sources` (name -> file) is recorded as is.
    """
    values, peaks = {}, {}
    for name in FEATURES:
        attack, release = config.envelope(name)
        floor = config.onset_floor if name == "onset" else 0.0
        values[name], peaks[name] = normalise(smooth_envelope(raw[name], fps, attack, release), floor)
    return AudioFeatures(fps=fps, **values, peaks=peaks, sources=dict(sources or {}))


def compute_features(
    mix_path: str | os.PathLike,
    fps: float,
    *,
    stems: Mapping[str, str | os.PathLike] | None = None,
    config: FeatureConfig = FeatureConfig(),
    start: float = 0.0,
    duration: float | None = None,
) -> AudioFeatures:
    """Features of a song per video frame, 0..1, smoothed.

    Args:
      mix_path: the song (the audio that is muxed into the video).
      fps: video frames per second (> 0).
      stems: optional feature name -> separate audio file the feature is computed from, e.g.
        `{"onset": "drums.wav", "percussive": "drums.wav"}`; other features use the mix.
        Stems are read over the same range; a shorter stem is silent past its end.
      config: analysis options.
      start, duration: the range of the song, seconds (duration None: to the end).

    Returns AudioFeatures with `n_frames = floor(loaded duration * fps)`. Songs and stems are
    read by `load_audio` (any container with an audio stream).
    """
    stems = dict(stems or {})
    unknown = sorted(set(stems) - set(FEATURES))
    if unknown:
        raise GvjaxError(f"unknown stem feature(s): {', '.join(unknown)}; expected {', '.join(FEATURES)}")
    mix_key = str(mix_path)
    sources = {name: str(stems.get(name, mix_key)) for name in FEATURES}
    by_source: dict[str, list[str]] = {}
    for name, src in sources.items():
        by_source.setdefault(src, []).append(name)

    y, sr = load_audio(mix_path, sr=config.sr, start=start, duration=duration)
    n_frames = _frames_or_error(y.size, sr, fps, mix_key)
    raw: dict[str, np.ndarray] = {}
    for src, names in by_source.items():
        if src == mix_key:
            samples = y
        else:
            samples, _ = load_audio(src, sr=config.sr, start=start, duration=duration or y.size / sr)
        with chatter.quiet_stderr(f"audio {src}"):  # a numpy warning is noted, never printed
            feats = raw_features(samples, sr, fps, config, names=tuple(names), source=src)
        for name, x in feats.items():
            raw[name] = _fit_length(x, n_frames)
    return finish_features(raw, fps, config, sources=sources)


def _frames_or_error(n_samples: int, sr: int, fps: float, source: str) -> int:
    n_frames = frame_count(n_samples, sr, fps)
    if n_frames < 1:
        raise GvjaxError(
            f"{source} is {1000 * n_samples / sr:.1f} ms long, shorter than one video frame "
            f"({1000 / float(fps):.1f} ms at {float(fps):g} fps)"
        )
    return n_frames


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[0] >= n:
        return x[:n]
    return np.concatenate([x, np.zeros((n - x.shape[0],) + x.shape[1:], x.dtype)])


def _check_file(path: str | os.PathLike) -> str:
    p = pathlib.Path(path)
    if not p.exists():
        raise GvjaxError(f"audio file not found: {p}")
    if not p.is_file():
        raise GvjaxError(f"not an audio file: {p} is a directory" if p.is_dir() else f"not an audio file: {p}")
    return str(p)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
