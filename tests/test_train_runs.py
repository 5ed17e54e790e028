"""Whole training runs through `gvjax train`, on 16 procedural fruit images at 32x32.

Every run starts from the NVIDIA fixture pickle `ada_micro_skip.pkl` (its G, G_ema and D) with
the default options (path length, R1, style mixing, augmentation with ADA), batch 16. The runs
share one XLA compilation through a persistent compilation cache in a temporary directory,
so only the first pays for it (the 2-device run compiles its own program).

* learning: 60 steps bring G_ema's samples closer to the training images (mean
  nearest-neighbour L2 falls);
* resume: a run killed with SIGKILL mid-run and resumed continues the step counter and
  reproduces, value for value, the losses of the uninterrupted run;
* transfer: step 0 holds exactly the pickle's weights, and the step-0 samples are the
  converted generator's;
* devices: the first step (every phase: G main, path length, D main, R1) sharded over 2 (forced
  host) devices gives the same losses;
* processes: two processes joined by jax.distributed give that step's losses and weights.

The device and process runs take one step: it has every phase (steps 2-4 only leave some out), and
each further step variant costs a compile (40-70 s here), not more coverage.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import STYLEGAN2, load_state

from gvjax.checkpoint import load_checkpoint
from gvjax.generate import generate_images
from gvjax.train.data import ImageDataset, to_float
from gvjax.train.run import grid_z, read_log, sample_fn

PKL = STYLEGAN2 / "ada_micro_skip.pkl"
STEPS = 60
BATCH = 16
pytestmark = pytest.mark.slow  # whole training runs

LOSSES = ("loss_G", "loss_D", "loss_r1", "pl_penalty", "score_real", "score_fake", "augment_p")


def gvjax(*args, env_extra=None, timeout=900, wait=True):
    env = dict(os.environ, **(env_extra or {}))
    cmd = [sys.executable, "-m", "gvjax", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    env = {"JAX_COMPILATION_CACHE_DIR": str(root / "jax-cache")}
    r = gvjax("dataset", "fruit", root / "data", "--count", 16, "--res", 32, "--seed", 0, env_extra=env)
    assert r.returncode == 0, r.stderr
    return root, env


def train_args(root, out, kimg, *extra):
    return ("train", root / "data", "--from", PKL, "--out", out, "--kimg", kimg, "--batch", BATCH, *extra)


@pytest.fixture(scope="module")
def full_run(workspace):
    """The uninterrupted 60-step run (0.96 kimg), checkpoints every 20 steps (0.32 kimg), samples every 50."""
    root, env = workspace
    out = root / "full"
    r = gvjax(*train_args(root, out, STEPS * BATCH / 1000, "--snap", 0.32, "--sample-kimg", 0.8), env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def nearest_neighbour_l2(samples, train):
    """Mean over samples of the L2 distance to the closest training image (float images in [-1, 1])."""
    s, t = samples.reshape(len(samples), -1), train.reshape(len(train), -1)
    return float(np.sqrt(((s[:, None] - t[None]) ** 2).sum(-1)).min(1).mean())


def sample_distances(data_dir, run_dir):
    """`(d0, d1, model)`: the mean nearest-neighbour L2 of a run's 16 G_ema samples (seeds of the
    sample grid) to the 32x32 training images, at step 0 (`fakes_init.npy`) and at the end (`model/`)."""
    train = to_float(ImageDataset(data_dir, 32, 3).images)
    before = np.load(run_dir / "fakes_init.npy")
    ckpt = load_checkpoint(run_dir / "model")
    after = np.asarray(sample_fn(ckpt.config)(ckpt.variables, grid_z(ckpt.config, (4, 4))))
    d0, d1 = nearest_neighbour_l2(before, train), nearest_neighbour_l2(after, train)
    print(f"mean nearest-neighbour L2: at the start {d0:.2f}, at the end {d1:.2f} (x{d1 / d0:.3f})")
    return d0, d1, ckpt


def test_learning_brings_samples_closer_to_the_data(workspace, full_run):
    root, _ = workspace
    d0, d1, _ = sample_distances(root / "data", full_run)
    # measured (2-core CPU): 150.4 -> 57.5 (x0.38) at step 50, 32.1 (x0.21) at 100, 18.1 (x0.12) at 300
    assert d1 < 0.5 * d0
    log = read_log(full_run)
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert all(np.isfinite(r["loss_G"]) and np.isfinite(r["loss_D"]) for r in log)
    assert sum(r["loss_r1"] is not None for r in log) == STEPS // 16 + 1  # lazy R1: steps 0, 16, ...
    assert sum(r["pl_penalty"] is not None for r in log) == STEPS // 4  # lazy path length: every 4th
    assert log[-1]["augment_p"] > 0  # ADA raised p (D over-confident on 16 images)
    assert (full_run / "fakes000050.png").exists() and (full_run / "fakes000060.png").exists()
    assert sorted(int(p.name) for p in (full_run / "checkpoints").iterdir()) == [20, 40, 60]  # keep 3 of 0, 20, 40, 60


def kill_9_after_steps(proc, out, steps: int) -> None:
    """SIGKILL the training process `proc` once its log in `out` has `steps` lines (it must still run)."""
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if len(read_log(out)) >= steps:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_resume_after_kill_9_continues_exactly(workspace, full_run):
    root, env = workspace
    out = root / "killed"
    proc = gvjax(*train_args(root, out, STEPS * BATCH / 1000, "--snap", 0.16), env_extra=env, wait=False)
    kill_9_after_steps(proc, out, 15)  # past the checkpoint at step 10
    killed_at = len(read_log(out))
    assert killed_at >= 15
    r = gvjax("train", root / "data", "--out", out, "--resume", "--kimg", 40 * BATCH / 1000, env_extra=env)  # R1 again at 33
    assert r.returncode == 0, r.stdout + r.stderr
    resumed_from = int(r.stdout.split("resumed ")[1].split("at step ")[1].split()[0])
    assert 10 <= resumed_from <= killed_at and resumed_from % 10 == 0
    log, ref = read_log(out), read_log(full_run)
    assert [row["step"] for row in log] == list(range(1, 41))  # no gap, no repeat
    for ours, theirs in zip(log, ref[:40]):
        for key in LOSSES:
            assert ours[key] == theirs[key], f"step {ours['step']}: {key} {ours[key]} != {theirs[key]}"
    # a resume at the run's --kimg trains nothing, says so, and writes model/ at that step
    r = gvjax("train", root / "data", "--out", out, "--resume", "--kimg", 40 * BATCH / 1000, env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the run is at step 40 (0.64 kimg), its --kimg: no steps to train; wrote" in r.stdout, r.stdout
    assert read_log(out) == log and load_checkpoint(out / "model").provenance["step"] == 40


def test_transfer_starts_from_the_converted_weights(workspace):
    import orbax.checkpoint as ocp

    root, env = workspace
    out = root / "transfer"
    r = gvjax(*train_args(root, out, 2 * BATCH / 1000, "--snap", 1), env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    step0 = ocp.StandardCheckpointer().restore((out / "checkpoints" / "0" / "default").absolute())
    assert int(step0["step"]) == 0
    # G, G_ema and D at step 0 are the pickle's tensors, bit for bit (G differs from G_ema there).
    for prefix, name in (("G.", "G"), ("G_ema.", "G_ema"), ("D.", "D")):
        for key, value in load_state("ada_micro_skip", prefix).items():
            if key.endswith("resample_filter"):
                continue
            *path, leaf = key.split(".")
            tree = step0[name]
            node = tree["buffers"] if key in ("mapping.w_avg",) or key.endswith("noise_const") else tree["params"]
            for k in path:
                node = node[k]
            np.testing.assert_array_equal(np.asarray(node[leaf]), value, err_msg=f"{name}.{key}")
    # The step-0 samples are the converted generator's images of seeds 0..15 (noise const).
    from gvjax.convert import load_source

    ckpt = load_source(PKL)
    expected = np.stack([img for _, img in generate_images(ckpt.config, ckpt.variables, list(range(16)), noise_mode="const")])
    np.testing.assert_allclose(np.load(out / "fakes_init.npy"), expected, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def two_device_run(workspace):
    """The full run's first step (all four phases) with the batch sharded over 2 (forced host) devices of one process."""
    root, env = workspace
    out = root / "two-devices"
    r = gvjax(*train_args(root, out, BATCH / 1000), env_extra=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_two_devices_give_the_same_losses(full_run, two_device_run):
    out = two_device_run
    assert len(json.loads((out / "config.json").read_text())["devices"]) == 2
    log = read_log(out)
    assert [row["step"] for row in log] == [1]
    # Same random draws (replicated), same math; only the order of float sums differs.
    for ours, theirs in zip(log, read_log(full_run)[:1]):
        for key in ("loss_G", "loss_D", "score_real", "score_fake", "pl_penalty", "loss_r1"):
            assert ours[key] is not None and theirs[key] is not None  # step 1 runs every phase
            assert abs(ours[key] - theirs[key]) <= 1e-4 * max(1.0, abs(theirs[key])), f"step {ours['step']}: {key} {ours[key]} vs {theirs[key]}"


def test_two_processes_train_as_one_process(workspace, two_device_run):
    """Two `gvjax train` processes joined by jax.distributed on 127.0.0.1, one CPU device each,
    against one process with two devices: the same global batch split the same way, so the
    same losses and weights within float32 rounding (measured: identical)."""
    import socket

    root, env = workspace
    out = root / "two-processes"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [gvjax(*train_args(root, out, BATCH / 1000), "--coordinator", f"127.0.0.1:{port}", "--num-processes", 2,
                   "--process-id", i, env_extra=env, wait=False) for i in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert f"wrote {out / 'model'}" in outputs[0] and "process 1: trained 1 step " in outputs[1]
    assert len(json.loads((out / "config.json").read_text())["devices"]) == 2
    ours, theirs = read_log(out), read_log(two_device_run)
    assert [row["step"] for row in ours] == [row["step"] for row in theirs] == [1]
    for a, b in zip(ours, theirs):
        for key in ("loss_G", "loss_D", "score_real", "score_fake", "pl_penalty", "loss_r1"):
            assert a[key] is not None and b[key] is not None
            assert abs(a[key] - b[key]) <= 1e-6 * max(1.0, abs(b[key])), f"step {a['step']}: {key} {a[key]} vs {b[key]}"
    mine = load_checkpoint(out / "model", ("G_ema", "G", "D")).networks
    single = load_checkpoint(two_device_run / "model", ("G_ema", "G", "D")).networks
    for name in ("G_ema", "G", "D"):
        for a, b in zip(jax.tree.leaves(mine[name]), jax.tree.leaves(single[name])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_a_trained_model_starts_the_next_run(full_run):
    """`--from RUN/model`: G_ema, G and the gvjax-written D come back as the run left them."""
    import orbax.checkpoint as ocp

    from gvjax.cli import _training_start
    from gvjax.discriminator import DiscriminatorConfig

    start = _training_start(str(full_run / "model"))
    meta = json.loads((full_run / "config.json").read_text())
    assert start.d_config == DiscriminatorConfig.from_dict(meta["discriminator"])
    last = ocp.StandardCheckpointer().restore((full_run / "checkpoints" / str(STEPS) / "default").absolute())
    for name, tree in (("G_ema", start.g_ema), ("G", start.g), ("D", start.d)):
        assert jax.tree.structure(tree["params"]) == jax.tree.structure(last[name]["params"])
        for a, b in zip(jax.tree.leaves(tree["params"]), jax.tree.leaves(last[name]["params"])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    from gvjax.config import GeneratorConfig

    assert start.g_config == GeneratorConfig.from_dict(meta["generator"])
