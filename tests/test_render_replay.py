"""Renders that must repeat exactly: the channel-cluster cache, and `--from` with changed inputs.

Whole renders of a micro model through the real CLI (marked slow).
"""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from conftest import run_cli
from test_render import frame_hashes, tone

from gvjax.demo_audio import write_wav

pytestmark = pytest.mark.slow
SR = 22050

CLUSTER_TIMELINE = """
[[section]]
start = 0.0
seeds = {seeds}
[[section.warp]]
type = "channels"
resolution = 16
op = "ablate"
cluster = 0
clusters = 3
feature = "rms"
"""


def render(out, song, ckpt, *extra, cwd=None):
    """A render through the real CLI: in this process (the entry point's `_run`, fast), or as a
    subprocess when it must run in another folder (`cwd`)."""
    args = ["render", song, "-o", out, "--model", ckpt, "--quiet", "--fps", "6", *extra]
    if cwd is None:
        from gvjax.cli import _run

        assert _run([str(a) for a in args]) == 0
    else:
        r = run_cli(*args, cwd=cwd)
        assert r.returncode == 0, r.stderr
    return frame_hashes(out)


def test_cluster_cache_is_keyed_by_what_it_depends_on(tmp_path, nvidia_checkpoint):
    """A, then B (other keyframes, same cluster settings), then A again: A's frames, whatever the cache holds."""
    ckpt = nvidia_checkpoint("ada_micro_skip")
    song = write_wav(tmp_path / "song.wav", tone(1.5, 0.6), SR)
    (tmp_path / "a.toml").write_text(CLUSTER_TIMELINE.format(seeds=[1, 2, 3]))
    (tmp_path / "b.toml").write_text(CLUSTER_TIMELINE.format(seeds=[4, 5, 6]))
    cache = pathlib.Path(os.environ["GVJAX_CACHE_DIR"]) / "clusters"
    before = set(cache.glob("*.npy")) if cache.exists() else set()

    a = render(tmp_path / "a.mp4", song, ckpt, "--timeline", tmp_path / "a.toml")
    b = render(tmp_path / "b.mp4", song, ckpt, "--timeline", tmp_path / "b.toml")
    assert a != b
    entries = set(cache.glob("*.npy")) - before
    assert len(entries) == 2  # one entry per keyframe set: the key holds the keyframes
    a_again = render(tmp_path / "a2.mp4", song, ckpt, "--timeline", tmp_path / "a.toml")
    assert a_again == a

    # A damaged cache is recomputed, not fatal, and gives the same frames.
    for entry in entries:
        entry.write_bytes(b"not a numpy file")
    assert render(tmp_path / "a3.mp4", song, ckpt, "--timeline", tmp_path / "a.toml") == a
    readable = []
    for entry in entries:  # A's entry was recomputed and rewritten; B's is still the damaged one
        try:
            readable.append(np.load(entry, allow_pickle=False).shape)
        except ValueError:
            pass
    assert len(readable) == 1


def test_from_refuses_changed_inputs_by_name(tmp_path, nvidia_checkpoint):
    from gvjax.checkpoint import load_checkpoint, save_checkpoint

    ckpt = tmp_path / "model"
    shutil.copytree(nvidia_checkpoint("ada_micro_skip"), ckpt)
    song = write_wav(tmp_path / "song.wav", tone(1.5, 0.6), SR)
    timeline = tmp_path / "t.toml"
    timeline.write_text(CLUSTER_TIMELINE.format(seeds=[1, 2, 3]))
    first = render(tmp_path / "first.mp4", song, ckpt, "--timeline", timeline)
    record = tmp_path / "first.json"
    stored = json.loads(record.read_text())
    assert stored["timeline"]["toml"] == timeline.read_text()  # the content, not only the path

    def replay(name, *extra):
        return run_cli("render", "--from", record, "-o", tmp_path / name, "--quiet", *extra)

    # Unchanged: the same frames.
    r = replay("same.mp4")
    assert r.returncode == 0, r.stderr
    assert frame_hashes(tmp_path / "same.mp4") == first

    originals = {p: p.read_bytes() for p in (song, timeline)}

    def refused(what):
        r = replay("x.mp4")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"the {what}" in r.stderr and "changed since the render" in r.stderr, r.stderr
        assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.json").exists()

    write_wav(song, tone(1.5, 0.3, seed=5), SR)
    refused("song (song.wav)")
    song.write_bytes(originals[song])

    timeline.write_text(CLUSTER_TIMELINE.format(seeds=[7, 8, 9]))
    refused("timeline (t.toml)")
    timeline.write_bytes(originals[timeline])

    loaded = load_checkpoint(ckpt)
    variables = loaded.networks["G_ema"]
    variables["params"]["synthesis"]["b4"]["const"] = variables["params"]["synthesis"]["b4"]["const"] + 0.5
    save_checkpoint(ckpt, loaded.config, {"G_ema": variables}, provenance=loaded.provenance, force=True)
    refused("model")

    # --allow-changed renders the changed model and says so in the new record.
    r = replay("changed.mp4", "--allow-changed")
    assert r.returncode == 0, r.stderr
    new = json.loads((tmp_path / "changed.json").read_text())
    assert new["replayed_from"]["record"] == str(record)
    assert [c.split(" ")[1] for c in new["replayed_from"]["changed"]] == ["model"]
    assert frame_hashes(tmp_path / "changed.mp4") != first
    # A record of a replay replays too (its config and timeline are the same).
    assert new["config"] == stored["config"] and new["timeline"] == stored["timeline"]
