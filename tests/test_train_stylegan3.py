"""Training StyleGAN3: the same loop as StyleGAN2 (train/step.py), from NVIDIA's stylegan3 pickles.

The parts, against NVIDIA's formulas: the per-kind defaults of stylegan3's train.py, the blur
fade-in of D's inputs, the `magnitude_ema` update (checked by hand against the layers' sown input
mean squares), the filtered leaky ReLU's gradient, the discriminator a run starts from.

Whole runs through `gvjax train` (slow), from the StyleGAN3-T fixture `sg3t_micro.pkl` (its G,
G_ema and D) on 16 procedural fruit images at 32x32, batch 16, with `--lr 0.01 --gamma 10
--augment none` (OPTIONS) and otherwise the StyleGAN3 defaults. At the defaults this micro model
moves too slowly for 200 steps (measured x0.99 at batch 16, x0.86 at batch 8): its D has 3 channels
at 32x32 and its image is ToRGB's output times 0.25, so lr 0.0025 barely shifts the colours; the
options above reach x0.43.

* transfer: step 0 holds exactly the pickle's tensors (`sg3t_micro_state.npz`, written by
  NVIDIA's code), and the step-0 samples are the converted generator's images;
* learning: 200 steps bring G_ema's samples at least 2x closer to the training images (mean
  nearest-neighbour L2);
* magnitude EMAs: every layer's `magnitude_ema` moved from the pickle's value, and G_ema carries G's;
* resume: a run killed with SIGKILL mid-run and resumed reproduces, value for value, the losses of
  the uninterrupted run.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DATA
from test_train_runs import gvjax, kill_9_after_steps, sample_distances

from gvjax.convert import load_source
from gvjax.convert.nvidia_d import load_discriminator
from gvjax.errors import GvjaxError
from gvjax.models import stylegan3 as sg3
from gvjax.train.config import TrainConfig, model_kind
from gvjax.train.run import StartModel, fresh_d_config, read_log, start_model

SG3 = DATA / "stylegan3"
PKL = SG3 / "sg3t_micro.pkl"
STEPS = 200
BATCH = 16
OPTIONS = ("--lr", 0.01, "--gamma", 10, "--augment", "none")
LOSSES = ("loss_G", "loss_D", "loss_r1", "score_real", "score_fake", "augment_p")
BUFFERS = ("w_avg", "transform", "freqs", "phases", "magnitude_ema")


@pytest.fixture(scope="module")
def t_model():
    return load_source(PKL)


@pytest.fixture(scope="module")
def r_model():
    return load_source(SG3 / "sg3r_micro.pkl")


# --- the parts ----------------------------------------------------------------------------------


def test_defaults_follow_stylegan3_train_py(t_model, r_model):
    assert model_kind(t_model.config) == "stylegan3-t" and model_kind(r_model.config) == "stylegan3-r"
    r = TrainConfig(batch=32).resolve(32, "stylegan3-r")
    assert (r.g_lr, r.d_lr, r.pl_weight, r.style_mixing_prob, r.g_reg_interval) == (0.0025, 0.002, 0.0, 0.0, 0)
    assert (r.blur_init_sigma, r.blur_fade_kimg, r.blur_steps) == (10.0, 200.0, 6250)
    assert r.magnitude_ema_beta == 0.5 ** (32 / 20000) == r_model.config.magnitude_ema_beta  # what the fixture's train.py set
    assert r.ema_kimg == 10.0 and r.ema_rampup == 0.05 and r.r1_gamma == pytest.approx(0.0002 * 32**2 / 32)
    t = TrainConfig(batch=16).resolve(32, "stylegan3-t")
    assert t.blur_init_sigma == 0 and t.blur_steps == 0 and t.magnitude_ema_beta == 0.5 ** (16 / 20000)
    s2 = TrainConfig(batch=16).resolve(64)  # StyleGAN2 keeps stylegan2-ada-pytorch's
    assert (s2.pl_weight, s2.style_mixing_prob, s2.g_reg_interval, s2.blur_init_sigma, s2.magnitude_ema_beta) == (2.0, 0.9, 4, 0.0, None)
    assert TrainConfig(batch=16, style_mixing_prob=0.5).resolve(32, "stylegan3-t").style_mixing_prob == 0.5  # given wins
    with pytest.raises(GvjaxError, match="path-length regularisation is not supported for StyleGAN3"):
        TrainConfig(pl_weight=2.0).resolve(32, "stylegan3-t")


def test_cli_refuses_path_length_on_stylegan3(tmp_path):
    r = gvjax("train", tmp_path, "--from", PKL, "--out", tmp_path / "run", "--pl-weight", 2)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "not supported for StyleGAN3" in r.stderr and not (tmp_path / "run").exists()


def nvidia_blur(img, sigma):
    """stylegan3's loss.py blur, in numpy: separable taps exp2(-(i/sigma)^2), |i| <= floor(3 sigma), zero padding."""
    size = int(np.floor(sigma * 3))
    if size <= 0:
        return img
    f = np.exp2(-np.square(np.arange(-size, size + 1) / sigma))
    f = f / f.sum()
    out = np.pad(img.astype(np.float64), ((size, size), (size, size), (0, 0)))
    out = sum(f[k] * out[k : k + img.shape[0]] for k in range(len(f)))
    return sum(f[k] * out[:, k : k + img.shape[1]] for k in range(len(f))).astype(np.float32)


def test_blur_fade_in_is_nvidias(r_model):
    from gvjax.discriminator import init_d_variables
    from gvjax.train import step

    img = np.random.default_rng(0).uniform(-1, 1, (20, 20, 3)).astype(np.float32)
    for sigma in (10.0, 2.5, 0.7, 0.3, 0.0):
        ours = np.asarray(jax.jit(lambda x, s: step.blur(x, s, 10.0))(img, sigma))
        np.testing.assert_allclose(ours, nvidia_blur(img, sigma), atol=2e-6, err_msg=f"sigma {sigma}")
    nets = step.make_networks(r_model.config, fresh_d_config(r_model.config), TrainConfig(batch=32))
    assert [step.reg_flags(nets, s)[2] for s in (0, 6249, 6250)] == [True, True, False]  # blurred steps: a static variant
    sigmas = [float(step.blur_sigma(nets, jnp.int32(s))) for s in (0, 3125, 6250)]
    assert sigmas == pytest.approx([10.0, 5.0, 0.0])  # 10 * max(1 - kimg / 200, 0)
    # D sees the blurred images (here without augmentation: p = 0)
    d = init_d_variables(nets.d_config, jax.random.key(0))
    x = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    blurred = jax.jit(lambda d, x: step.run_discriminator(nets, d, x, 0.0, jax.random.key(0), jnp.float32(2.0)))(d["params"], x)
    direct = jax.jit(nets.disc.apply)(d, np.stack([nvidia_blur(e, 2.0) for e in x]))[:, 0]
    np.testing.assert_allclose(np.asarray(blurred), np.asarray(direct), rtol=1e-4, atol=1e-5)


def test_filtered_lrelu_gradient_is_autodiffs(t_model, r_model):
    """The hand-written VJP (fast on XLA:CPU) equals JAX's own gradient of `ops.filtered_lrelu`."""
    from gvjax import ops

    rng = np.random.default_rng(0)
    layers = sg3.synthesis_layout(t_model.config)[1]
    r_layers = sg3.synthesis_layout(r_model.config)[1]
    for spec in (layers[5], layers[13], r_layers[0]):  # up 4; margin crop (down 2); radial down filter
        fu, fd = sg3.layer_filters(spec)
        n = spec.in_size + spec.conv_kernel - 1
        x = jnp.asarray(rng.normal(size=(2, n, n, spec.out_channels)).astype(np.float32)) * 3
        b = jnp.asarray(rng.normal(size=(spec.out_channels,)).astype(np.float32))
        kw = dict(up=spec.up_factor, down=spec.down_factor, padding=spec.padding, gain=1.0 if spec.is_torgb else np.sqrt(2),
                  slope=1.0 if spec.is_torgb else 0.2, clamp=2.0)  # the clamp engages
        ref = ops.filtered_lrelu(x, fu, fd, b, **kw)
        ct = jnp.asarray(rng.normal(size=ref.shape).astype(np.float32))
        ours = sg3.filtered_lrelu_trainable(x, fu, fd, b, **kw)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
        grads = [jax.jit(jax.grad(lambda x, b, f=f: jnp.sum(f(x, fu, fd, b, **kw) * ct), argnums=(0, 1)))(x, b)
                 for f in (ops.filtered_lrelu, sg3.filtered_lrelu_trainable)]
        for a, c in zip(*grads):
            np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=0, atol=1e-5 * float(jnp.abs(a).max()), err_msg=spec.name)


def test_magnitude_ema_update_is_the_lerp_of_the_batch_mean_square(t_model):
    """One Dmain G pass: each layer's new `magnitude_ema` = lerp(mean over the batch of its input's x², old, beta),
    with x² from the layers' sown `input_mean_square` in a forward pass of the new buffers; Gmain leaves them."""
    from gvjax.train import step

    nets = step.make_networks(t_model.config, fresh_d_config(t_model.config), TrainConfig(batch=4, magnitude_ema_beta=0.75))
    g = t_model.networks["G"]
    z = jnp.asarray(np.random.default_rng(3).standard_normal((4, t_model.config.z_dim)).astype(np.float32))
    img, ws, buffers = jax.jit(lambda g, z: step.run_generator(nets, g, z, jax.random.key(0), "Dmain"))(g, z)
    _, _, unchanged = jax.jit(lambda g, z: step.run_generator(nets, g, z, jax.random.key(0), "Gmain"))(g, z)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), unchanged, g["buffers"]))

    new = {**g, "buffers": buffers}
    plain, state = jax.jit(jax.vmap(lambda w: nets.gen.apply(new, w, method="synthesize", mutable=["intermediates"])))(ws)
    np.testing.assert_allclose(np.asarray(img), np.asarray(plain), rtol=0, atol=1e-5)  # the pass used the new gains
    sown = state["intermediates"]["synthesis"]
    layers = sg3.stage_names(t_model.config)[1:]
    toward = 0
    for name in layers:
        m = float(np.mean(sown[name]["input_mean_square"][0]))  # [N] per-example means -> batch mean
        old = float(g["buffers"]["synthesis"][name]["magnitude_ema"])
        got = float(buffers["synthesis"][name]["magnitude_ema"])
        assert got == pytest.approx(m + 0.75 * (old - m), rel=1e-5), name
        toward += abs(got - m) < abs(old - m) and np.sign(got - old) == np.sign(m - old)
    assert toward == len(layers)  # every layer moved towards its batch statistic
    w_mean = np.mean(np.asarray(jax.jit(jax.vmap(lambda z: nets.gen.apply(g, z, method="map")))(z))[:, 0], axis=0)
    w_avg, beta = np.asarray(g["buffers"]["mapping"]["w_avg"]), t_model.config.w_avg_beta
    np.testing.assert_allclose(np.asarray(buffers["mapping"]["w_avg"]), w_mean + beta * (w_avg - w_mean), rtol=1e-5, atol=1e-6)


def test_the_discriminator_a_run_starts_from(t_model, r_model):
    start = start_model(t_model, "sg3t_micro.pkl", load_d=load_discriminator)
    assert isinstance(start, StartModel) and start.d_config == load_discriminator(t_model.networks["D"], t_model.extra["D"])[0]
    assert start.g is t_model.networks["G"] and start.g_ema is t_model.networks["G_ema"]
    warnings = []
    no_loader = start_model(t_model, "x", load_d=None, warn=warnings.append)
    assert no_loader.d is None and "fresh discriminator" in warnings[0]
    # A fresh D is stylegan3's train.py's: the StyleGAN2 D with --cbase/--cmax (R doubled G's, not D's),
    # as the fixtures' own Ds were built.
    for model in (t_model, r_model):
        fresh, pickled = fresh_d_config(model.config), start_model(model, "", load_d=load_discriminator).d_config
        same = ("img_resolution", "img_channels", "c_dim", "architecture", "channel_base", "channel_max", "conv_clamp", "mbstd_group_size")
        assert [getattr(fresh, k) for k in same] == [getattr(pickled, k) for k in same]
    assert fresh_d_config(r_model.config).channel_base == r_model.config.channel_base // 2 == 48


# --- whole runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-sg3")
    r = gvjax("dataset", "fruit", root / "data", "--count", 16, "--res", 32, "--seed", 0)
    assert r.returncode == 0, r.stderr
    return root


def train_args(root, out, steps, *extra):
    return ("train", root / "data", "--from", PKL, "--out", out, "--kimg", steps * BATCH / 1000, "--batch", BATCH, *OPTIONS, *extra)


@pytest.fixture(scope="module")
def full_run(workspace):
    """The uninterrupted 200-step run; checkpoints every 50 steps, all five kept (step 0 included)."""
    out = workspace / "full"
    r = gvjax(*train_args(workspace, out, STEPS, "--snap", 50 * BATCH / 1000, "--sample-kimg", 100 * BATCH / 1000, "--keep", 5))
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def restore(run, step):
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore((run / "checkpoints" / str(step) / "default").absolute())


@pytest.mark.slow
def test_a_run_starts_from_exactly_the_pickled_weights(full_run):
    step0 = restore(full_run, 0)
    assert int(step0["step"]) == 0
    with np.load(SG3 / "sg3t_micro_state.npz") as npz:  # NVIDIA's tensors, read without torch
        state = {k: npz[k] for k in npz.files}
    compared = set()
    for key, value in state.items():
        name, rest = key.split(".", 1)
        if rest.endswith(("up_filter", "down_filter", "resample_filter")):
            continue  # designed from the config, not stored
        *path, leaf = rest.split(".")
        node = step0[name]["buffers" if leaf in BUFFERS else "params"]
        for k in path:
            node = node[k]
        np.testing.assert_array_equal(np.asarray(node[leaf]), value, err_msg=key)
        compared.add(name)
    assert compared == {"G_ema", "G", "D"}
    assert not np.array_equal(step0["G"]["params"]["synthesis"]["L0_36_12"]["weight"], step0["G_ema"]["params"]["synthesis"]["L0_36_12"]["weight"])
    from gvjax.generate import generate_images

    ckpt = load_source(PKL)
    expected = np.stack([img for _, img in generate_images(ckpt.config, ckpt.variables, list(range(16)), noise_mode="const")])
    np.testing.assert_allclose(np.load(full_run / "fakes_init.npy"), expected, atol=1e-5, rtol=0)
    meta = json.loads((full_run / "config.json").read_text())
    assert meta["family"] == "stylegan3" and meta["kind"] == "stylegan3-t" and meta["from"]["D"] == "given"
    resolved = meta["resolved"]
    assert (resolved["pl_weight"], resolved["style_mixing_prob"], resolved["g_reg_interval"]) == (0.0, 0.0, 0)
    assert resolved["magnitude_ema_beta"] == 0.5 ** (BATCH / 20000) and resolved["g_lr"] == resolved["d_lr"] == 0.01


@pytest.mark.slow
def test_learning_brings_samples_closer_to_the_data(workspace, full_run):
    d0, d1, ckpt = sample_distances(workspace / "data", full_run)
    assert isinstance(ckpt.config, sg3.StyleGAN3Config)
    assert d1 < 0.5 * d0
    log = read_log(full_run)
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    assert all(r["pl_penalty"] is None for r in log)  # no path length for StyleGAN3
    assert sum(r["loss_r1"] is not None for r in log) == STEPS // 16 + 1


@pytest.mark.slow
def test_magnitude_emas_are_tracked_in_a_run(full_run):
    first, last = restore(full_run, 0), restore(full_run, STEPS)
    layers = sg3.stage_names(load_source(PKL).config)[1:]
    for name in layers:
        before = float(first["G"]["buffers"]["synthesis"][name]["magnitude_ema"])
        after = float(last["G"]["buffers"]["synthesis"][name]["magnitude_ema"])
        assert after != before, name
        assert float(last["G_ema"]["buffers"]["synthesis"][name]["magnitude_ema"]) == after  # G_ema copies G's buffers


@pytest.mark.slow
def test_resume_after_kill_9_continues_exactly(workspace, full_run):
    out = workspace / "killed"
    proc = gvjax(*train_args(workspace, out, STEPS, "--snap", 5 * BATCH / 1000), wait=False)
    kill_9_after_steps(proc, out, 7)  # past the checkpoint at step 5
    killed_at = len(read_log(out))
    r = gvjax("train", workspace / "data", "--out", out, "--resume", "--kimg", 20 * BATCH / 1000)
    assert r.returncode == 0, r.stdout + r.stderr
    resumed_from = int(r.stdout.split("resumed ")[1].split("at step ")[1].split()[0])
    assert 5 <= resumed_from <= killed_at and resumed_from % 5 == 0
    log, ref = read_log(out), read_log(full_run)
    assert [row["step"] for row in log] == list(range(1, 21))
    for ours, theirs in zip(log, ref[:20]):
        for key in LOSSES:
            assert ours[key] == theirs[key], f"step {ours['step']}: {key} {ours[key]} != {theirs[key]}"
