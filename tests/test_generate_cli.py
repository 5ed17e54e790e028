"""`gvjax generate` against PNGs and floats written by NVIDIA's own generate.py."""

import numpy as np
import pytest
from conftest import DATA, run_cli

from gvjax.errors import GvjaxError
from gvjax.generate import parse_seeds, z_for_seed
from gvjax.images import read_png

REF = DATA / "generate_ref"


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5,9") == [1, 5, 9]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad in ("a", "3-1", "1,,2", "-1"):
        with pytest.raises(GvjaxError):
            parse_seeds(bad)


def test_z_for_seed_is_numpy_randomstate():
    ref = np.load(REF / "skip_seeds.npz")
    for i, seed in enumerate(ref["seeds"]):
        np.testing.assert_array_equal(z_for_seed(int(seed), 32), ref["z"][i].astype(np.float32))


@pytest.mark.parametrize("fixture,ref,extra", [("ada_micro_skip", "skip", []), ("ada_micro_cond", "cond_class2", ["--class", "2"])])
def test_generate_matches_nvidia_generate_py(tmp_path, nvidia_checkpoint, fixture, ref, extra):
    ckpt = nvidia_checkpoint(fixture)
    out = tmp_path / "out"
    r = run_cli("generate", ckpt, "--seeds", "0-3", "--trunc", "0.7", "--noise-mode", "const", "--outdir", out, "--npy", *extra)
    assert r.returncode == 0, r.stderr
    floats = np.load(REF / f"{ref}_seeds.npz")["images"]
    for seed in range(4):
        ours = read_png(out / f"seed{seed:04d}.png").astype(int)
        theirs = read_png(REF / ref / f"seed{seed:04d}.png").astype(int)
        assert ours.shape == theirs.shape == (32, 32, 3)
        assert np.abs(ours - theirs).max() <= 1
        npy = np.load(out / f"seed{seed:04d}.npy")
        assert npy.dtype == np.float32 and npy.shape == (32, 32, 3)
        assert np.abs(npy - floats[seed]).max() <= 1e-4


SG3_REF = DATA.parent / "fixtures" / "stylegan3_gen_images"  # made by stylegan3's unmodified gen_images.py (README there)


@pytest.mark.parametrize("fixture", ["sg3t_micro", "sg3r_micro"])
@pytest.mark.parametrize("run,extra", [("plain", []), ("transform", ["--translate", "0.2,0.3", "--rotate", "10"])])
def test_generate_stylegan3_matches_gen_images_py(tmp_path, fixture, run, extra):
    from gvjax.cli import _run  # the entry point in-process (the StyleGAN2 cases above run it as a subprocess)

    out = tmp_path / "out"
    assert _run(["generate", str(DATA / "stylegan3" / f"{fixture}.pkl"), "--seeds", "0-3", "--trunc", "0.7", "--outdir", str(out), *extra]) == 0
    for seed in range(4):
        ours = read_png(out / f"seed{seed:04d}.png").astype(int)
        theirs = read_png(SG3_REF / fixture / run / f"seed{seed:04d}.png").astype(int)
        assert ours.shape == theirs.shape == (32, 32, 3)
        assert np.abs(ours - theirs).max() <= 1, (seed, np.abs(ours - theirs).max())
    if run == "transform":  # the camera moved: most seeds differ from the plain references by far more than 1 level
        moved = [np.abs(read_png(out / f"seed{s:04d}.png").astype(int) - read_png(SG3_REF / fixture / "plain" / f"seed{s:04d}.png").astype(int)).max() for s in range(4)]
        assert sum(m > 3 for m in moved) >= 2, moved


def test_generate_errors_are_one_line(tmp_path, nvidia_checkpoint):
    cases = [
        (["generate", tmp_path / "missing", "--outdir", tmp_path / "o"], "no such model"),
        (["generate", nvidia_checkpoint("ada_micro_cond"), "--outdir", tmp_path / "o"], "--class"),
        (["generate", "bundled", "--seeds", "x", "--outdir", tmp_path / "o"], "seeds"),
        (["generate", "bundled", "--noise-mode", "loud", "--outdir", tmp_path / "o"], "noise mode"),
    ]
    for args, needle in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], r.stderr
        assert "Traceback" not in r.stderr


def test_version_and_info():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("gvjax ")
    r = run_cli("info")
    assert r.returncode == 0 and "backend: cpu" in r.stdout and "jax" in r.stdout
