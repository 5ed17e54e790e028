"""Segment-parallel encoding, and resuming a render killed with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_cli
from test_render import decode_frames, frame_hashes, tone

from gvjax.demo_audio import write_wav
from gvjax.render.segments import SegmentWriter, concat_segments, finished_segments, partial_dir
from gvjax.render.video import VideoWriter

SR = 22050


def moving_frames(n, h=96, w=128):
    """uint8 `[n, h, w, 3]`: a smooth pattern that moves, so every frame differs."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(n):
        r = 127 + 120 * np.sin((x + 3 * t) / 19.0)  # wavelengths of 80-200 px: smooth enough that
        g = 127 + 120 * np.cos((y - 2 * t) / 15.0)  # yuv420p's halved chroma costs little, and the
        b = 127 + 120 * np.sin((x + y + t) / 31.0)  # error measured is H.264's
        frames.append(np.stack([r, g, b], -1).astype(np.uint8))
    return np.stack(frames)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_segments_in_parallel_equal_one_encoder(tmp_path):
    frames = moving_frames(50)
    single = tmp_path / "single.mp4"
    w = VideoWriter(single, width=128, height=96, fps=25)
    w.write(frames)
    assert w.close() == 50

    parts = tmp_path / "parts"
    parts.mkdir()
    seg = SegmentWriter(parts, segment_frames=8, workers=2, width=128, height=96, fps=25, crf=18)
    for i in range(0, 50, 6):  # batches that do not line up with the segments
        seg.write(frames[i : i + 6])
    assert seg.close() == 50 and seg.segment == 7 and finished_segments(parts) == 7  # 6 of 8 frames and one of 2
    joined = tmp_path / "joined.mp4"
    concat_segments(parts, seg.segment, joined, fps=25)

    a, b = decode_frames(single), decode_frames(joined)
    assert a.shape == b.shape == frames.shape  # a valid mp4 with every frame, in order
    single_psnr = [psnr(a[i], frames[i]) for i in range(50)]
    joined_psnr = [psnr(b[i], frames[i]) for i in range(50)]
    assert min(single_psnr) > 36 and min(joined_psnr) > 36  # both are the frames within H.264 (measured 37.5-39.5 dB at crf 18)
    assert abs(np.mean(joined_psnr) - np.mean(single_psnr)) < 1.0  # and equally close to them
    assert min(psnr(a[i], b[i]) for i in range(50)) > 36
    order = [int(np.argmax([psnr(b[i], f) for f in frames])) for i in range(50)]
    assert order == list(range(50))


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_uninterrupted_frames(tmp_path, nvidia_checkpoint):
    ckpt = nvidia_checkpoint("ada_micro_skip")
    song = write_wav(tmp_path / "song.wav", tone(24.0, 0.6), SR)
    timeline = tmp_path / "t.toml"  # a slit-scan, whose history must be warmed up on resume
    timeline.write_text("[[section]]\nstart = 0.0\nseeds = [1, 2, 3]\n"
                        "[[section.warp]]\ntype = 'slitscan'\nresolution = 16\nfeature = 'rms'\ndelay = 6\n")
    args = ["render", song, "--model", ckpt, "--timeline", timeline, "--fps", "12", "--batch", "4", "--quiet"]
    r = run_cli(*args, "-o", tmp_path / "full.mp4")
    assert r.returncode == 0, r.stderr

    out = tmp_path / "r.mp4"
    parts = partial_dir(out)
    tmp = tmp_path / "tmp"  # the killed process's temporary folder: nothing may be left in it
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "gvjax", *map(str, args), "-o", str(out)], stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 300
    while finished_segments(parts) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done_before = finished_segments(parts)
    assert 3 <= done_before < 12, done_before  # 24 s in segments of 2 s: killed mid-render
    assert not out.exists() and not list(tmp.iterdir())
    assert "--resume" in (parts / "README.txt").read_text()  # a user who finds the folder knows what it is

    r = run_cli(*args, "-o", out)  # without --resume: refused, the segments kept
    assert r.returncode == 2 and "--resume" in r.stderr and finished_segments(parts) == done_before

    r = run_cli(*args, "-o", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert not parts.exists()
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["resumed_at_frame"] == done_before * 24 and record["frames"] == record["total_frames"] == 288
    assert frame_hashes(out) == frame_hashes(tmp_path / "full.mp4")
