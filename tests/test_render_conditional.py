"""Conditional models render: `--class N`, and `class = N` per timeline section."""

import json

import pytest
from conftest import run_cli
from test_render import frame_hashes, tone

from gvjax.demo_audio import write_wav

pytestmark = pytest.mark.slow


def test_class_changes_the_frames(tmp_path, nvidia_checkpoint):
    ckpt = nvidia_checkpoint("ada_micro_cond")  # 4 classes
    song = write_wav(tmp_path / "song.wav", tone(1.0, 0.5), 22050)
    hashes = {}
    for cls in (0, 2):
        out = tmp_path / f"c{cls}.mp4"
        r = run_cli("render", song, "-o", out, "--model", ckpt, "--fps", "4", "--class", str(cls), "--quiet")
        assert r.returncode == 0, r.stderr
        hashes[cls] = frame_hashes(out)
        assert json.loads(out.with_suffix(".json").read_text())["config"]["class_idx"] == cls
    assert len(hashes[0]) == len(hashes[2]) == 4
    assert all(a != b for a, b in zip(hashes[0], hashes[2]))  # every frame: the label enters the mapping

    # A timeline whose sections have different classes; the first section's class 2 equals --class 2.
    timeline = tmp_path / "t.toml"
    timeline.write_text("crossfade = 0.25\n[[section]]\nstart = 0.0\nseed = 0\nkeyframes = 6\nclass = 2\n"
                        "[[section]]\nstart = 0.5\nseed = 0\nkeyframes = 6\nclass = 0\n")
    out = tmp_path / "t.mp4"
    r = run_cli("render", song, "-o", out, "--model", ckpt, "--fps", "4", "--timeline", timeline, "--quiet")
    assert r.returncode == 0, r.stderr
    mixed = frame_hashes(out)
    assert len(mixed) == 4
    assert mixed[0] == hashes[2][0] != hashes[0][0]  # the first section's frame 0: class 2's keyframe 0
