"""The demo track: a short song synthesised by our own code, so `gvjax render --demo` needs no download.

120 BPM in 4/4 (a bar is 2 s), the progression Am - F - C - G, one chord a bar. The first
40% of the track (whole bars) is a quiet intro: soft chords and off-beat hats. Then the loud
section: four-on-the-floor kick, snare on 2 and 4, eighth-note hats and bass, louder
chords. It ends with a short fade. Everything is deterministic: the noise of the drums
comes from a fixed `np.random.RandomState`, so the same arguments give the same samples.
"""

from __future__ import annotations

import os
import pathlib
import wave

import numpy as np

from gvjax.errors import GvjaxError

BPM = 120.0
BEAT = 60.0 / BPM  # seconds
BAR = 4 * BEAT
DEMO_SECONDS = 12.0
DEMO_SR = 22050
CHORDS = ((57, 60, 64), (53, 57, 60), (60, 64, 67), (55, 59, 62))  # Am F C G (MIDI)
BASS = (33, 29, 36, 31)  # A1 F1 C2 G1
_NOISE_SEED = 120


def midi_hz(note: float) -> float:
    """Frequency in Hz of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69) / 12)


def intro_seconds(seconds: float) -> float:
    """End of the quiet intro: 40% of the track rounded to whole bars, at least one bar when it fits."""
    bars = max(1, round(0.4 * seconds / BAR))
    return min(bars * BAR, 0.5 * seconds)


def synth_demo_track(seconds: float = DEMO_SECONDS, sr: int = DEMO_SR) -> np.ndarray:
    """`[round(seconds * sr)]` float32 mono samples in [-1, 1]: drums, bass and chords at 120 BPM.

    Quiet intro for `intro_seconds(seconds)`, loud after; peak at -1 dBFS.
    """
    if not seconds > 0 or sr < 8000:
        raise GvjaxError(f"demo track needs seconds > 0 and sr >= 8000, got {seconds}, {sr}")
    n = int(round(seconds * sr))
    out = np.zeros(n, np.float64)
    rng = np.random.RandomState(_NOISE_SEED)
    kick, snare, hat = _kick(sr), _snare(sr, rng), _hat(sr, rng)
    loud_from = intro_seconds(seconds)

    def place(sound: np.ndarray, at: float, gain: float) -> None:
        i = int(round(at * sr))
        if i < n:
            m = min(sound.size, n - i)
            out[i : i + m] += gain * sound[:m]

    for bar in range(int(np.ceil(seconds / BAR))):
        t_bar = bar * BAR
        loud = t_bar >= loud_from - 1e-9
        chord, root = CHORDS[bar % 4], BASS[bar % 4]
        place(_pad(chord, BAR, sr), t_bar, 0.30 if loud else 0.12)
        for eighth in range(8):
            t = t_bar + eighth * BEAT / 2
            if loud:
                place(hat, t, 0.22 if eighth % 2 else 0.12)
                place(_bass(root, BEAT / 2, sr), t, 0.45)
            elif eighth % 2:
                place(hat, t, 0.05)
        if loud:
            for beat in range(4):
                place(kick, t_bar + beat * BEAT, 0.9)
                if beat % 2:
                    place(snare, t_bar + beat * BEAT, 0.5)

    fade = min(int(0.3 * sr), n // 4)
    k = min(16, n)  # 0.7 ms fade-in: no click at the start
    out[:k] *= np.linspace(0, 1, k)
    if fade:
        out[n - fade :] *= np.linspace(1, 0, fade)
    peak = np.max(np.abs(out))
    if peak > 0:
        out *= 10 ** (-1 / 20) / peak
    return out.astype(np.float32)


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def _kick(sr: int) -> np.ndarray:
    """Sine sweeping 155 -> 45 Hz with a fast pitch envelope and a 120 ms decay."""
    t = _t(0.4, sr)
    freq = 45 + 110 * np.exp(-t / 0.04)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)


def _snare(sr: int, rng: np.random.RandomState) -> np.ndarray:
    """High-passed noise burst plus a 185 Hz body."""
    t = _t(0.25, sr)
    noise = np.diff(rng.uniform(-1, 1, t.size + 1))
    return 0.6 * noise * np.exp(-t / 0.07) + 0.5 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)


def _hat(sr: int, rng: np.random.RandomState) -> np.ndarray:
    """Twice-differenced noise (a steep high-pass) with a 20 ms decay."""
    t = _t(0.08, sr)
    noise = np.diff(rng.uniform(-1, 1, t.size + 2), n=2) / 2
    return noise * np.exp(-t / 0.02)


def _bass(note: int, length: float, sr: int) -> np.ndarray:
    """Saw-like note (6 harmonics, 1/k) with a plucked envelope."""
    t = _t(length, sr)
    f = midi_hz(note)
    tone = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 7) if k * f < sr / 2)
    env = np.minimum(t / 0.005, 1) * np.exp(-t / 0.18) * np.minimum((length - t) / 0.01, 1)
    return tone * env


def _pad(notes: tuple[int, ...], length: float, sr: int) -> np.ndarray:
    """Chord of soft tones (3 harmonics each) with a slow attack and a release at the bar's end."""
    t = _t(length, sr)
    tone = sum(
        np.sin(2 * np.pi * k * midi_hz(note) * t) / k**2 for note in notes for k in range(1, 4)
        if k * midi_hz(note) < sr / 2
    )
    env = np.minimum(t / 0.25, 1) * np.minimum((length - t) / 0.1, 1)
    return tone * env / len(notes)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sr: int) -> pathlib.Path:
    """Write `samples` (`[n]` mono or `[n, channels]`, float in [-1, 1], clipped) as 16-bit PCM wav.

    Written to a temporary sibling and renamed into place; an unwritable path is a GvjaxError.
    """
    path = pathlib.Path(path)
    x = np.asarray(samples, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise GvjaxError(f"samples must be [n] or [n, channels], got shape {np.shape(samples)}")
    pcm = np.round(np.clip(np.nan_to_num(x), -1, 1) * 32767).astype("<i2")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with wave.open(str(tmp), "wb") as f:
            f.setnchannels(x.shape[1])
            f.setsampwidth(2)
            f.setframerate(int(sr))
            f.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GvjaxError(f"cannot write {path}: {e.strerror or e}") from None
    return path
