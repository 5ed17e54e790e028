"""Multi-process renders: real `gvjax render` processes joined by `jax.distributed` on 127.0.0.1 (CPU, gloo).

* two processes give the frames of one process (decoded hashes), slit-scan seams included;
* a process killed mid-render: the other ends with one clear line, exit 2, and leaves no output.

(Multi-process training is tested with the other training runs, in test_train_runs.py.)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import run_cli
from test_render import frame_hashes, tone

from gvjax.demo_audio import write_wav
from gvjax.render.segments import finished_segments, partial_dir, process_partial_dir

pytestmark = pytest.mark.slow  # whole renders

SR = 22050
TIMELINE = ("[[section]]\nstart = 0.0\nseeds = [1, 2, 3]\n"  # a slit-scan: the second process warms up its history
            "[[section.warp]]\ntype = 'slitscan'\nresolution = 16\nfeature = 'rms'\ndelay = 6\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(args, n=2):
    """`gvjax *args --coordinator ... --process-id I` for I in 0..n-1, started at once."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return [subprocess.Popen([sys.executable, "-m", "gvjax", *map(str, args), "--coordinator", f"127.0.0.1:{port}",
                              "--num-processes", str(n), "--process-id", str(i)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(n)]


@pytest.fixture(scope="module")
def job(tmp_path_factory, nvidia_checkpoint):
    root = tmp_path_factory.mktemp("multiprocess")
    (root / "t.toml").write_text(TIMELINE)
    return root, nvidia_checkpoint("ada_micro_skip")


def render_args(root, ckpt, seconds):
    song = root / f"song{seconds}.wav"
    if not song.exists():
        write_wav(song, tone(seconds, 0.6), SR)
    return ["render", song, "--model", ckpt, "--timeline", root / "t.toml", "--fps", "12", "--batch", "4", "--quiet"]


def test_two_processes_render_the_frames_of_one(job):
    root, ckpt = job
    args = render_args(root, ckpt, 7.0)  # 84 frames in 4 segments of 24: frames 0-47 and 48-83
    r = run_cli(*args, "-o", root / "one.mp4")
    assert r.returncode == 0, r.stderr
    out = root / "two.mp4"
    procs = start_processes([*args, "-o", out])
    results = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr
        assert stderr == ""  # no chatter from gloo or the coordination service
    assert "process 1: rendered frames 48..83 of 84" in results[1][0]
    assert f"wrote {out}" in results[0][0]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["processes"] == 2 and record["devices"] == 2 and record["frames"] == 84
    assert frame_hashes(out) == frame_hashes(root / "one.mp4")
    assert not partial_dir(out).exists() and not process_partial_dir(out, 1).exists()


def test_a_killed_process_ends_the_run_with_one_line(job):
    root, ckpt = job
    args = render_args(root, ckpt, 12.0)  # 144 frames in 6 segments: process 1 renders segments 3-5
    out = root / "killed.mp4"
    p0, p1 = start_processes([*args, "-o", out])
    theirs = process_partial_dir(out, 1)
    deadline = time.time() + 300
    while not (theirs / "seg00003.h264").exists() and p1.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p1.poll() is None, p1.communicate()[1]
    p1.send_signal(signal.SIGKILL)  # mid-render: one of its three segments is done
    p1.communicate(timeout=60)
    _, stderr = p0.communicate(timeout=300)
    assert p0.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: another process of this run (2 processes) stopped"), stderr
    assert sorted(path.name for path in root.iterdir() if path.name.startswith("killed")) == []  # no video, record or segments
    assert finished_segments(partial_dir(out)) == 0
