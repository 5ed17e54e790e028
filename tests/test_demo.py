"""The demo tells the story (travel, then warps), progress shows as a bar, and the one-call API."""

import dataclasses
import os
import pty
import subprocess
import sys

import numpy as np
import pytest
from test_render import decode_frames

import gvjax
from gvjax.bundled import bundled_model
from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav
from gvjax.render.config import RenderConfig
from gvjax.render.pipeline import prepare_render, variables_digest
from gvjax.render.timeline import load_timeline

pytestmark = pytest.mark.slow
FPS = 8.0  # fewer frames than the demo's 30 fps, the same two acts


def job_frames(job) -> np.ndarray:
    return np.concatenate([np.asarray(frames)[:n] for _, frames, n in job.batches()])


def test_demo_warps_act_in_its_second_act(tmp_path):
    out = tmp_path / "demo.mp4"
    result = gvjax.render_song(None, out, demo=True, fps=FPS, progress=False)
    assert result.frames == 96  # 12 s at 8 fps
    video = decode_frames(out)
    assert video.shape == (96, 256, 256, 3)  # the bundled 64x64 model at a size worth watching

    # The step itself: the demo's timeline against the same timeline with its warps removed.
    ckpt = bundled_model()
    song = write_wav(tmp_path / "demo.wav", synth_demo_track(), DEMO_SR)
    cfg = RenderConfig(fps=FPS, scale=4, timeline="original")
    timeline = load_timeline("original")
    digest = variables_digest(ckpt.variables)
    job = prepare_render(cfg, ckpt, song, timeline, cache_dir=None, model_digest=digest)
    assert [w.kind for w in job.step.spec.warps] == ["slitscan", "strips"]
    warped = job_frames(job)
    # Unwarped: the same compiled step and travel with every warp at strength 0 (each warp is the
    # identity there), so any difference is what the warps do.
    plain = prepare_render(cfg, ckpt, song, timeline, cache_dir=None, model_digest=digest)
    plain.plan = dataclasses.replace(plain.plan, strengths=np.zeros_like(plain.plan.strengths))
    unwarped = job_frames(plain)
    change = np.abs(warped.astype(np.float32) - unwarped.astype(np.float32)).mean(axis=(1, 2, 3))
    seconds = np.arange(len(change)) / FPS
    act1, act2 = seconds < 6.0, seconds >= 7.0  # the warps fade in over the 1 s cross-fade at 6 s
    assert (change[act1] == 0).all()  # travel only: exactly the unwarped frames
    assert change[act2].mean() > 8.0 and (change[act2] > 1.0).mean() > 0.9, change[act2]

    # The file holds the warped frames (within H.264's error), not the unwarped ones.
    to_file = np.abs(video.astype(np.float32) - warped.astype(np.float32)).mean(axis=(1, 2, 3))
    to_plain = np.abs(video.astype(np.float32) - unwarped.astype(np.float32)).mean(axis=(1, 2, 3))
    assert to_file.max() < 4.0 and (to_file[act2] < to_plain[act2]).all()


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gvjax", "render", "--demo", "--duration", "1", "--fps", "8", "--scale", "1", "-o", tmp_path / "t.mp4"],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0, seen[-2000:]
    text = seen.decode("utf-8", "replace")
    assert "━" in text and "8/8" in text and "frames/s" in text and "ETA" in text  # rich's bar, count, speed, ETA

    r = subprocess.run([sys.executable, "-m", "gvjax", "render", "--demo", "--duration", "1", "--fps", "8", "--scale", "1", "-o", tmp_path / "p.mp4"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "━" not in r.stderr and "\x1b[" not in r.stderr  # no bar and no escape codes in a pipe or a log
    assert r.stderr.strip().splitlines()[-1].startswith("render 8/8 frames")


def test_render_song_api(tmp_path):
    result = gvjax.render_song(None, tmp_path / "a.mp4", demo=True, duration=1.0, fps=8, scale=1, seed=3, progress=False)
    assert result.frames == 8 and result.video.exists() and result.record.exists()
    assert decode_frames(result.video).shape == (8, 64, 64, 3)
    with pytest.raises(gvjax.errors.GvjaxError, match="unknown render option"):
        gvjax.render_song(None, tmp_path / "b.mp4", demo=True, fpz=8)
    with pytest.raises(gvjax.errors.GvjaxError, match="already exists"):
        gvjax.render_song(None, tmp_path / "a.mp4", demo=True)
