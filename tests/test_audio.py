"""Audio decoding and per-frame features, on real files decoded by librosa (nothing mocked).

Every signal is synthesised here (or by gvjax.demo_audio), written to a real file (our
16-bit wav writer, or soundfile for flac/ogg/mp3 and multichannel), and read back through
`load_audio`. A few seconds of audio each, so the module runs in seconds on 2 cores.
"""

import json
import pathlib

import numpy as np
import pytest
import soundfile

from gvjax import audio
from gvjax.audio import FEATURES, FeatureConfig, compute_features, load_audio, raw_features, smooth_envelope
from gvjax.demo_audio import BAR, intro_seconds, synth_demo_track, write_wav
from gvjax.errors import GvjaxError

SR = 22050


def tone(freq, seconds, sr=SR, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def click_track(seconds, *, bpm=120.0, first=0.25, sr=SR):
    """(samples, click times in s): 10 ms decaying 1 kHz clicks on every beat from `first`."""
    times = np.arange(first, seconds - 0.1, 60.0 / bpm)
    y = np.zeros(int(round(seconds * sr)), np.float64)
    n = int(0.01 * sr)
    k = np.arange(n)
    click = 0.8 * np.sin(2 * np.pi * 1000 * k / sr) * np.exp(-k / (0.002 * sr))
    for t in times:
        i = int(round(t * sr))
        y[i : i + n] += click
    return y.astype(np.float32), times


def peaks(x, threshold=0.5):
    """Indices of local maxima of x at or above threshold * max."""
    x = np.asarray(x)
    level = threshold * x.max()
    return np.array([i for i in range(len(x)) if x[i] >= level and x[i] >= x[max(i - 1, 0)]
                     and x[i] > x[min(i + 1, len(x) - 1)]])


def rms(x):
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


# ----------------------------------------------------------------------------- must show


@pytest.mark.parametrize("fps", [30, 24], ids=["30fps-direct-hop", "24fps-pooled"])
@pytest.mark.parametrize("offset", [0.0, 0.25, 0.5, 0.75])
def test_click_track_onset_peaks_within_one_frame(tmp_path, fps, offset):
    # 120 BPM clicks, `offset` of a frame off the frame grid.
    y, times = click_track(4.0, first=0.25 + offset / fps)
    path = write_wav(tmp_path / "clicks.wav", y, SR)
    features = compute_features(path, fps)
    assert features.n_frames == int(4.0 * fps)
    found = peaks(features.onset)
    assert len(found) == len(times), (found, times * fps)
    errors = found / fps - times
    assert np.all(np.abs(errors) < 1 / fps), errors * 1000  # within one video frame
    # And nothing else peaks: between clicks the onset feature stays low.
    between = np.ones(features.n_frames, bool)
    for f in found:
        between[max(f - 2, 0) : f + 5] = False
    assert features.onset[between].max() < 0.3


def test_rms_rises_monotonically_with_input_gain(tmp_path):
    base = synth_demo_track(3.0, SR)
    gains = [0.01, 0.03, 0.1, 0.3, 1.0]
    means, normalised = [], []
    for g in gains:
        path = write_wav(tmp_path / f"gain{g}.wav", base * g, SR)
        y, sr = load_audio(path)
        means.append(raw_features(y, sr, 30, names=("rms",))["rms"].mean())
        normalised.append(compute_features(path, 30).rms)
    assert np.all(np.diff(means) > 0)
    # Linear in the gain (16-bit quantisation at gain 0.01 is far below 1%).
    np.testing.assert_allclose(np.array(means) / means[-1], gains, rtol=0.01)
    # The normalised feature does not depend on the gain (after the first 0.1 s: the track
    # fades in from 0, and at gain 0.01 its first frames are under the -80 dBFS silence floor).
    for x in normalised[:-1]:
        np.testing.assert_allclose(x[3:], normalised[-1][3:], atol=0.01)


# ----------------------------------------------------------------------------- decoding


FORMATS = {
    "wav": dict(format="WAV", subtype="PCM_16"),
    "flac": dict(format="FLAC", subtype="PCM_16"),
    "ogg": dict(format="OGG", subtype="VORBIS"),
    "mp3": dict(format="MP3", subtype="MPEG_LAYER_III"),
}


@pytest.mark.parametrize("ext", list(FORMATS))
@pytest.mark.parametrize("rate", [44100, 48000])
def test_decodes_formats_rates_and_stereo(tmp_path, ext, rate):
    if FORMATS[ext]["format"] not in soundfile.available_formats():
        pytest.skip(f"this libsndfile ({soundfile.__libsndfile_version__}) cannot write {ext}")
    t = np.arange(2 * rate) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1320 * t)
    path = tmp_path / f"stereo.{ext}"
    soundfile.write(path, np.stack([left, right], axis=1), rate, **FORMATS[ext])

    y, sr = load_audio(path)
    assert sr == SR and y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(2 * SR, abs=SR * 0.06)  # lossy codecs may pad a little
    assert audio.audio_duration(path) == pytest.approx(2.0, abs=0.06)
    # Mono is the mean of the channels: 0.4 sin(440) + 0.05 sin(1320), at the right pitch.
    spectrum = np.abs(np.fft.rfft(y[: 2 * SR // 2 * 2]))
    freqs = np.fft.rfftfreq(2 * SR // 2 * 2, 1 / SR)
    assert freqs[np.argmax(spectrum)] == pytest.approx(440, abs=1)
    mid = y[SR // 2 : 3 * SR // 2]
    assert rms(mid) == pytest.approx(np.sqrt(0.4**2 / 2 + 0.05**2 / 2), rel=0.03)


def test_streamed_decode_equals_librosa_load(tmp_path):
    import librosa

    rate = 44100
    y = np.stack([synth_demo_track(5.0, rate), 0.5 * synth_demo_track(5.0, rate)], axis=1)
    path = tmp_path / "song.flac"
    soundfile.write(path, y, rate)
    for start, duration in [(0.0, None), (1.3, 2.7), (0.5, None)]:
        ours, _ = load_audio(path, start=start, duration=duration)
        ref, _ = librosa.load(path, sr=SR, offset=start, duration=duration)
        np.testing.assert_array_equal(ours, ref)


def test_multichannel_becomes_the_channel_mean(tmp_path):
    rng = np.random.RandomState(0)
    x = (rng.rand(SR, 4) - 0.5).astype(np.float32)  # 4 channels, 1 s, already at 22050 Hz
    path = tmp_path / "quad.wav"
    soundfile.write(path, x, SR, subtype="FLOAT")
    y, sr = load_audio(path)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-7)


def test_range_loading(tmp_path):
    y = synth_demo_track(4.0, SR)
    path = write_wav(tmp_path / "song.wav", y, SR)
    full, _ = load_audio(path)
    part, _ = load_audio(path, start=1.5, duration=1.25)
    np.testing.assert_array_equal(part, full[int(1.5 * SR) : int(1.5 * SR) + int(1.25 * SR)])
    tail, _ = load_audio(path, start=3.0)
    np.testing.assert_array_equal(tail, full[3 * SR :])
    assert compute_features(path, 30, start=1.5, duration=1.25).n_frames == int(1.25 * 30)


def one_line_error(fn, *fragments):
    with pytest.raises(GvjaxError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


def test_unreadable_inputs_are_one_line_errors(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is a text file, renamed to .wav\n" * 20)
    one_line_error(lambda: load_audio(text), text, "not a readable audio file")
    one_line_error(lambda: compute_features(text, 30), text)
    one_line_error(lambda: audio.audio_duration(text), text)
    binary = tmp_path / "noise.mp3"
    binary.write_bytes(np.random.RandomState(0).bytes(5000))
    one_line_error(lambda: load_audio(binary), binary)
    one_line_error(lambda: load_audio(tmp_path / "missing.flac"), "not found", "missing.flac")
    one_line_error(lambda: load_audio(tmp_path), "directory")
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0), SR)
    one_line_error(lambda: load_audio(empty), empty, "no audio")
    song = write_wav(tmp_path / "song.wav", tone(440, 1.0), SR)
    one_line_error(lambda: load_audio(song, start=5.0), "past the end", song)
    one_line_error(lambda: load_audio(song, start=-1.0), "start")
    one_line_error(lambda: load_audio(song, duration=0.0), "duration")


def test_shorter_than_one_frame(tmp_path):
    short = write_wav(tmp_path / "short.wav", tone(440, 0.02), SR)  # 20 ms < 33.3 ms
    one_line_error(lambda: compute_features(short, 30), "shorter than one video frame", short)
    exact = write_wav(tmp_path / "one_frame.wav", tone(440, 1 / 30 + 1e-4), SR)
    assert compute_features(exact, 30).n_frames == 1
    one_line_error(lambda: compute_features(exact, 0), "fps")


def test_frame_count_is_floor_of_duration_times_fps():
    assert audio.frame_count(SR, SR, 30) == 30
    assert audio.frame_count(SR - 1, SR, 30) == 29
    assert audio.frame_count(10 * SR, SR, 29.97) == 299
    assert audio.frame_count(10 * 48000, 48000, 30000 / 1001) == 299  # 299.7
    assert audio.frame_count(1001 * 48000, 48000, 30000 / 1001) == 30000  # exact, despite 30000/1001 in float


# ----------------------------------------------------------------------------- features


def test_silence_gives_all_zero_features(tmp_path):
    rng = np.random.RandomState(0)
    for name, y in [("zeros", np.zeros(2 * SR)), ("hiss", 10 ** (-90 / 20) * rng.randn(2 * SR))]:
        path = tmp_path / f"{name}.wav"
        soundfile.write(path, y, SR, subtype="FLOAT")
        features = compute_features(path, 30)
        assert features.n_frames == 60
        for feature in FEATURES:
            x = features[feature]
            assert np.all(np.isfinite(x)) and np.all(x == 0), (name, feature)
            assert features.peaks[feature] == 0


def test_relative_gate_silences_a_faded_tail(tmp_path):
    """A tone, then the same tone 70 dB down (quieter than the -60 dB gate): the tail is silent."""
    y = np.concatenate([tone(440, 1.0, amp=0.5), tone(440, 1.0, amp=0.5 * 10 ** (-70 / 20))])
    path = tmp_path / "fade.wav"
    soundfile.write(path, y, SR, subtype="FLOAT")
    features = compute_features(path, 30, config=FeatureConfig(smoothing={n: (0, 0) for n in FEATURES}))
    for name in FEATURES:
        assert np.all(features[name][33:] == 0), name
    assert features.rms[5:28].min() > 0.9
    louder_tail = compute_features(path, 30, config=FeatureConfig(gate_db=-80.0, silence_db=-120.0))
    assert louder_tail.rms[40:].min() > 0  # with the gate opened further, the tail is kept


def test_features_are_normalised_and_shaped(tmp_path):
    path = write_wav(tmp_path / "demo.wav", synth_demo_track(4.0, SR), SR)
    features = compute_features(path, 25)
    assert features.n_frames == 100
    for name in FEATURES:
        x = features[name]
        assert x.shape == ((100, 12) if name == "chroma" else (100,)) and x.dtype == np.float32
        assert x.min() >= 0 and x.max() == pytest.approx(1.0), name
    with pytest.raises(GvjaxError):
        features["tempo"]


def test_bands_hpss_and_chroma_follow_the_signal(tmp_path):
    def raw(y):
        return {k: v[10:-10].mean(axis=0) for k, v in raw_features(y, SR, 30).items()}

    low, mid, high = raw(tone(100, 2)), raw(tone(1000, 2)), raw(tone(8000, 2))
    assert low["low"] > 10 * max(low["mid"], low["high"])
    assert mid["mid"] > 10 * max(mid["low"], mid["high"])
    assert high["high"] > 10 * max(high["low"], high["mid"])
    # A sustained tone is harmonic; a click track is percussive.
    assert mid["harmonic"] > 10 * mid["percussive"]
    clicks = raw(click_track(2.0)[0])
    assert clicks["percussive"] > 2 * clicks["harmonic"]
    # Chroma: A440 peaks at A (bin 9); a C major chord's top three bins are C, E, G.
    assert np.argmax(raw(tone(440, 2))["chroma"]) == 9
    chord = tone(261.63, 2) + tone(329.63, 2) + tone(392.0, 2)
    assert set(np.argsort(raw(chord)["chroma"])[-3:]) == {0, 4, 7}


def test_stems_drive_their_features(tmp_path):
    mix = write_wav(tmp_path / "pad.wav", tone(220, 3.0, amp=0.3), SR)  # no transients after the start
    clicks, times = click_track(3.0)
    drums = write_wav(tmp_path / "drums.wav", clicks, SR)
    plain = compute_features(mix, 30)
    stemmed = compute_features(mix, 30, stems={"onset": drums, "percussive": str(drums)})
    assert stemmed.sources["onset"] == str(drums) and stemmed.sources["rms"] == str(mix)
    np.testing.assert_array_equal(stemmed.rms, plain.rms)  # from the mix
    found = peaks(stemmed.onset)
    assert len(found) == len(times) and np.all(np.abs(found / 30 - times) < 1 / 30)
    assert plain.onset.max() < 0.15  # the pad alone has no beat: below onset_floor, not stretched to 1
    # A stem shorter than the mix is silent past its end.
    short = write_wav(tmp_path / "short.wav", clicks[: SR], SR)
    cut = compute_features(mix, 30, stems={"onset": short}, config=FeatureConfig(smoothing={"onset": (0, 0)}))
    assert cut.n_frames == 90 and np.all(cut.onset[30:] == 0) and cut.onset[:30].max() == 1
    one_line_error(lambda: compute_features(mix, 30, stems={"tempo": drums}), "tempo")


@pytest.mark.parametrize("fps", [30, 24, 60])
def test_block_analysis_equals_one_pass(fps):
    y = synth_demo_track(6.0, SR)
    whole = raw_features(y, SR, fps, block_seconds=1e9)
    blocked = raw_features(y, SR, fps, block_seconds=0.7)
    for name in FEATURES:
        np.testing.assert_allclose(blocked[name], whole[name], rtol=1e-5, atol=1e-6 * whole[name].max())


# ----------------------------------------------------------------------------- envelopes


def test_smooth_envelope_step_response_by_hand():
    fps, attack, release = 10.0, 0.1, 0.2  # a_att = exp(-1/(0.1*10)) = e^-1, a_rel = exp(-1/(0.2*10)) = e^-0.5
    x = np.array([0, 0, 1, 1, 1, 1, 0, 0, 0], float)
    e = np.e
    up = [1 - e**-1, 1 - e**-2, 1 - e**-3, 1 - e**-4]  # y_k = a y_{k-1} + (1 - a) x_k from 0
    top = up[-1]
    want = [0, 0, *up, top * e**-0.5, top * e**-1.0, top * e**-1.5]
    np.testing.assert_allclose(smooth_envelope(x, fps, attack, release), want, rtol=1e-12)
    # Zero time constants pass the input through; trailing axes are independent.
    np.testing.assert_array_equal(smooth_envelope(x, fps, 0, 0), x)
    both = smooth_envelope(np.stack([x, 2 * x], axis=1), fps, attack, release)
    np.testing.assert_allclose(both[:, 0], want, rtol=1e-12)
    np.testing.assert_allclose(both[:, 1], 2 * np.array(want), rtol=1e-12)
    # The time constant is in seconds: the same step at 30 fps reaches 1 - 1/e after 0.1 s (3 frames).
    step = smooth_envelope(np.ones(10), 30.0, 0.1, 0.2)
    assert step[2] == pytest.approx(1 - e**-1)


def test_feature_config_round_trip_and_validation():
    cfg = FeatureConfig(smoothing={"onset": (0.0, 0.05)}, low_hz=200.0)
    assert cfg.envelope("onset") == (0.0, 0.05) and cfg.envelope("rms") == audio.DEFAULT_SMOOTHING["rms"]
    again = FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)
    for bad in (dict(smoothing={"tempo": (0, 1)}), dict(smoothing={"rms": (-1, 1)}), dict(low_hz=5000.0)):
        with pytest.raises(GvjaxError):
            FeatureConfig(**bad)
    with pytest.raises(GvjaxError):
        FeatureConfig.from_dict({"hop": 512})


# ----------------------------------------------------------------------------- demo track


def test_demo_track_is_deterministic_with_a_quiet_and_a_loud_part(tmp_path):
    a = write_wav(tmp_path / "a.wav", synth_demo_track(8.0, SR), SR)
    b = write_wav(tmp_path / "b.wav", synth_demo_track(8.0, SR), SR)
    assert pathlib.Path(a).read_bytes() == pathlib.Path(b).read_bytes()
    y, _ = load_audio(a)
    assert len(y) == 8 * SR and np.abs(y).max() <= 1.0
    split = int(intro_seconds(8.0) * SR)
    assert intro_seconds(8.0) == 2 * BAR  # 40% of 8 s, rounded to whole 2 s bars
    assert rms(y[split:]) > 4 * rms(y[:split])
    features = compute_features(a, 30)
    cut = int(intro_seconds(8.0) * 30)
    assert features.rms[cut + 15 :].mean() > 3 * features.rms[: cut - 5].mean()
    assert len(peaks(features.onset[cut:])) >= 8  # the loud part has a beat: 2 beats/s
