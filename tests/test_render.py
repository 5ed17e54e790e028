"""End-to-end renders on CPU with a micro model: real librosa decoding, real ffmpeg, real files."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import run_cli

from gvjax.demo_audio import write_wav
from gvjax.render.video import probe_streams

SR = 22050


def tone(seconds, amplitude, freq=220.0, sr=SR, seed=0):
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.RandomState(seed).standard_normal(t.size) * 0.3
    return (amplitude * (np.sin(2 * np.pi * freq * t) + noise) / 1.3).astype(np.float32)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    d = tmp_path_factory.mktemp("songs")
    loud_quiet = np.concatenate([tone(2.0, 0.8), tone(2.0, 0.01, seed=1)])
    return {
        "short": write_wav(d / "short.wav", tone(1.5, 0.5), SR),
        "loud_quiet": write_wav(d / "loud_quiet.wav", loud_quiet, SR),
        "silent": write_wav(d / "silent.wav", np.zeros(SR, np.float32), SR),
        "tiny": write_wav(d / "tiny.wav", tone(0.01, 0.5), SR),
        "text": (d / "notes.wav").write_text("this is not audio") and d / "notes.wav",
    }


def decode_frames(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def frame_hashes(path):
    return [hashlib.sha256(f.tobytes()).hexdigest() for f in decode_frames(path)]


def render(tmp_path, ckpt, song, name="out.mp4", *extra):
    out = tmp_path / name
    r = run_cli("render", song, "-o", out, "--model", ckpt, "--quiet", *extra)
    return r, out


def test_frames_audio_and_record(tmp_path, nvidia_checkpoint, songs):
    r, out = render(tmp_path, nvidia_checkpoint("ada_micro_skip"), songs["short"], "out.mp4", "--fps", "10")
    assert r.returncode == 0, r.stderr
    info = probe_streams(out)
    assert info["video_frames"] == 15  # 1.5 s x 10 fps
    assert info["audio_seconds"] == pytest.approx(1.5, abs=0.05)
    assert decode_frames(out).shape == (15, 32, 32, 3)
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["frames"] == 15 and record["compilations"] == 1
    assert record["config"]["fps"] == 10 and len(record["model"]["sha256"]) == 64
    assert record["audio"]["sha256"] == hashlib.sha256(songs["short"].read_bytes()).hexdigest()
    assert {p.name for p in tmp_path.iterdir()} == {"out.mp4", "out.json"}  # no temp files left


def test_motion_follows_amplitude(tmp_path, nvidia_checkpoint, songs):
    fps = 15
    r, out = render(tmp_path, nvidia_checkpoint("ada_micro_skip"), songs["loud_quiet"], "out.mp4",
                    "--fps", str(fps), "--crf", "0", "--base-speed", "0.05", "--speed-gain", "1")
    assert r.returncode == 0, r.stderr
    frames = decode_frames(out).astype(np.float32)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # change into frame k+1
    n = len(frames)
    amplitude = (np.arange(n - 1) < n // 2).astype(np.float32)  # loud first half, quiet second
    pearson = np.corrcoef(change, amplitude)[0, 1]
    assert pearson > 0.5, pearson


def test_same_config_same_frames_and_from_record(tmp_path, nvidia_checkpoint, songs):
    ckpt = nvidia_checkpoint("ada_micro_skip")
    args = ("--fps", "8", "--seed", "3")
    _, a = render(tmp_path, ckpt, songs["short"], "a.mp4", *args)
    _, b = render(tmp_path, ckpt, songs["short"], "b.mp4", *args)
    _, c = render(tmp_path, ckpt, songs["short"], "c.mp4", "--fps", "8", "--seed", "4")
    assert frame_hashes(a) == frame_hashes(b)
    assert frame_hashes(a) != frame_hashes(c)
    r = run_cli("render", "--from", tmp_path / "a.json", "-o", tmp_path / "again.mp4", "--quiet")
    assert r.returncode == 0, r.stderr
    assert frame_hashes(tmp_path / "again.mp4") == frame_hashes(a)


def test_silent_audio_still_moves(tmp_path, nvidia_checkpoint, songs):
    r, out = render(tmp_path, nvidia_checkpoint("ada_micro_skip"), songs["silent"], "s.mp4", "--fps", "10")
    assert r.returncode == 0, r.stderr
    frames = decode_frames(out).astype(np.float32)
    assert len(frames) == 10
    assert np.abs(np.diff(frames, axis=0)).mean() > 0.5


def test_size_crop_and_pad(tmp_path, nvidia_checkpoint, songs):
    r, out = render(tmp_path, nvidia_checkpoint("ada_micro_skip"), songs["short"], "w.mp4", "--fps", "4", "--size", "48x16", "--fill", "pad")
    assert r.returncode == 0, r.stderr
    frames = decode_frames(out)
    assert frames.shape[1:] == (16, 48, 3)
    assert frames[:, :, :6].max() < 20  # left and right pad are black (up to H.264 ringing)


def test_scale_upscales_the_same_picture(tmp_path, songs):
    """--scale 2: twice the size, and the Lanczos-3 upscaling of the unscaled video (computed
    here from its decoded frames); another seed's scaled video is much further away. The
    bundled (trained) model: its images stay inside [-1, 1], so clipping to uint8 before (here)
    or after (in the render) the resampling agree."""
    ckpt = "bundled"
    outs = {}
    for name, extra in [("plain", []), ("scaled", ["--scale", "2"]), ("other", ["--scale", "2", "--seed", "1"])]:
        r, outs[name] = render(tmp_path, ckpt, songs["short"], f"{name}.mp4", "--fps", "4", *extra)
        assert r.returncode == 0, r.stderr
    plain = decode_frames(outs["plain"]).astype(np.float32)
    n, h, w, c = plain.shape
    expected = np.clip(np.asarray(jax.image.resize(plain, (n, 2 * h, 2 * w, c), method="lanczos3")), 0, 255)
    scaled, other = decode_frames(outs["scaled"]).astype(np.float32), decode_frames(outs["other"]).astype(np.float32)
    assert scaled.shape == other.shape == expected.shape
    luma = lambda rgb: rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # yuv420p keeps chroma at half size
    same, different = np.abs(luma(scaled) - luma(expected)).mean(), np.abs(luma(other) - luma(expected)).mean()
    assert same < 3 and different > 5 * same, (same, different)  # measured: 1.5 and 33 levels


def test_preview_renders(tmp_path, nvidia_checkpoint, songs):
    r, out = render(tmp_path, nvidia_checkpoint("ada_micro_skip"), songs["short"], "p.mp4", "--fps", "4", "--preview")
    assert r.returncode == 0, r.stderr
    frames = decode_frames(out)
    assert frames.shape == (6, 32, 32, 3)
    # nearest-neighbour upscaling from 8x8: 4x4 pixel blocks (up to compression noise)
    block = frames[:, :4, :4].astype(np.float32)
    assert np.abs(block - block[:, :1, :1]).mean() < 6


def test_bad_input_gives_one_line_and_exit_2(tmp_path, nvidia_checkpoint, songs):
    ckpt = nvidia_checkpoint("ada_micro_skip")
    (tmp_path / "file").write_text("x")
    cases = [
        ([songs["text"], "-o", tmp_path / "o.mp4", "--model", ckpt], "notes.wav"),
        ([tmp_path / "missing.wav", "-o", tmp_path / "o.mp4", "--model", ckpt], "missing.wav"),
        ([songs["tiny"], "-o", tmp_path / "o.mp4", "--model", ckpt], "shorter than one video frame"),
        ([songs["short"], "-o", tmp_path / "o.mp4", "--model", tmp_path / "nomodel"], "no such model"),
        ([songs["short"], "-o", tmp_path / "o.mp4", "--model", ckpt, "--fps", "0"], "--fps"),
        ([songs["short"], "-o", tmp_path / "o.mp4", "--model", ckpt, "--batch", "0"], "--batch"),
        ([songs["short"], "-o", tmp_path / "o.mp4", "--model", ckpt, "--scale", "0"], "--scale"),
        ([songs["short"], "-o", tmp_path / "o.mp4", "--model", ckpt, "--start", "9"], "past the end"),
        ([songs["short"], "-o", tmp_path / "file" / "o.mp4", "--model", ckpt], "does not exist"),
        ([songs["short"], "-o", "/proc/o.mp4", "--model", ckpt], "not writable"),
    ]
    for args, needle in cases:
        r = run_cli("render", *args, "--quiet")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (args, r.stderr)
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (tmp_path / "o.mp4").exists()


def test_ctrl_c_leaves_a_playable_video(tmp_path):
    song = write_wav(tmp_path / "long.wav", tone(60.0, 0.5), SR)
    out = tmp_path / "int.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gvjax", "render", song, "-o", out, "--model", "bundled", "--fps", "30", "--batch", "4"],
        stderr=subprocess.PIPE, text=True,
    )
    line = proc.stderr.readline()  # the first progress line: frames are being written
    assert line.startswith("render "), line
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "playable" in err
    info = probe_streams(out)
    assert 0 < info["video_frames"] < 1800
    assert info["audio_seconds"] == pytest.approx(info["video_frames"] / 30, abs=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int.json", "int.mp4", "long.wav"]


def test_frames_shard_over_two_devices(tmp_path):
    """With 2 (forced host) devices the batch is split over both and the frames equal a plain vmap."""
    code = r'''
import jax, jax.numpy as jnp, numpy as np
from gvjax.config import GeneratorConfig
from gvjax.model import Generator, init_variables
from gvjax.render.step import FrameSpec, RenderStep, to_uint8
from gvjax.spline import sample_spline
assert len(jax.devices()) == 2
cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16)
v = init_variables(cfg, jax.random.key(0))
kf = np.random.RandomState(0).randn(3, cfg.num_ws, 16).astype(np.float32)
step = RenderStep(cfg, v, FrameSpec(16, 16, spline_alpha=0.0), batch=6, seed=0)
t = np.linspace(0, 0.9, 6).astype(np.float32); idx = np.arange(6)
out = step(kf, t, kf, t, np.zeros(6), idx, None)
assert len(out.sharding.device_set) == 2, out.sharding
gen = Generator(cfg)
ref = jax.vmap(lambda t: to_uint8(gen.apply(v, sample_spline(jnp.asarray(kf), t, alpha=0.0), method="synthesize")))(t)
diff = np.abs(np.asarray(out).astype(int) - np.asarray(ref).astype(int)).max()
assert diff <= 1, diff
print("ok", diff)
'''
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
