"""The training stage's parts, against mathematical properties and NVIDIA's formulas.

(Whole runs, through the `gvjax train` command, are in test_train_runs.py.)
"""

import io
import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_cli

from gvjax.errors import GvjaxError
from gvjax.train import augment as aug
from gvjax.train.config import TrainConfig
from gvjax.train.data import ImageDataset, Prefetcher, batch_indices, center_crop_resize
from gvjax.train.fruit import FRUITS, fruit_image
from gvjax.train.step import lazy_adam


def rand_img(seed=0, size=16, c=3):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (size, size, c)).astype(np.float32))


# --- augmentation -----------------------------------------------------------------------------------


def test_augment_with_p0_is_the_identity():
    x = rand_img()
    for k in range(5):
        np.testing.assert_array_equal(np.asarray(aug.augment(x, jax.random.key(k), 0.0)), np.asarray(x))


def test_each_augmentation_with_p1():
    x = rand_img(1)
    xs = np.asarray(x)
    flips = [np.asarray(aug.xflip(x, jax.random.key(k), 1.0)) for k in range(16)]
    assert all(np.array_equal(f, xs) or np.array_equal(f, xs[:, ::-1]) for f in flips)
    assert 2 <= sum(np.array_equal(f, xs[:, ::-1]) for f in flips) <= 14  # mirrored about half the time

    shifted = 0
    for k in range(8):
        y = np.asarray(aug.translate(x, jax.random.key(k), 1.0))
        # integer shift (|t| <= 2 px at 16x16): some interior window of y equals x moved by (dy, dx)
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(y[4:12, 4:12], xs[4 - dy : 12 - dy, 4 - dx : 12 - dx])]
        assert match, "translation is not an integer shift"
        shifted += match[0] != (0, 0)
    assert shifted >= 4

    y = np.asarray(aug.cutout(x, jax.random.key(3), 1.0))
    zeroed = (y == 0).all(axis=-1)
    rows, cols = np.nonzero(zeroed)
    assert zeroed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one rectangle:
    assert 4 <= rows.max() - rows.min() + 1 <= 8 and 4 <= cols.max() - cols.min() + 1 <= 8  # half the side, cropped at the border
    np.testing.assert_array_equal(y[~zeroed], xs[~zeroed])

    grey = jnp.full((4, 4, 3), 0.25, jnp.float32)
    y = np.asarray(aug.color(grey, jax.random.key(5), 1.0))
    assert np.allclose(y, y[0, 0, 0])  # grey stays grey: saturation acts about the luma axis
    assert not np.allclose(y, 0.25)


def test_augment_is_differentiable():
    x = rand_img(2)
    g = jax.grad(lambda x: jnp.sum(aug.augment(x, jax.random.key(0), 1.0) ** 2))(x)
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0


def test_ada_adjust_moves_p_by_a_fixed_step():
    step = 16 * 4 / (500 * 1000)
    assert float(aug.ada_adjust(jnp.float32(0.1), 0.8, target=0.6, batch=16, interval=4, ada_kimg=500)) == pytest.approx(0.1 + step)
    assert float(aug.ada_adjust(jnp.float32(0.1), 0.2, target=0.6, batch=16, interval=4, ada_kimg=500)) == pytest.approx(0.1 - step)
    assert float(aug.ada_adjust(jnp.float32(0.0), 0.2, target=0.6, batch=16, interval=4, ada_kimg=500)) == 0.0


# --- optimiser and schedule -------------------------------------------------------------------------


def test_lazy_adam_corrects_lr_and_betas():
    """NVIDIA: lr * r and betas ** r with r = interval / (interval + 1)."""
    r = 16 / 17
    opt = lazy_adam(0.0025, (0.0, 0.99), 1e-8, 16)
    p = jnp.zeros(3)
    g1, g2 = jnp.asarray([0.5, -2.0, 1.0]), jnp.asarray([1.0, 1.0, -3.0])
    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(p)
        u1, state = opt.update(g1, state)
        u2, state = opt.update(g2, state)
    # beta1 ** r = 0: the first moment is the gradient; the first step is -lr * r * sign(g)
    np.testing.assert_allclose(np.asarray(u1), -0.0025 * r * np.sign(np.asarray(g1)), rtol=1e-5)
    b2 = 0.99**r
    v = (b2 * (1 - b2) * np.asarray(g1) ** 2 + (1 - b2) * np.asarray(g2) ** 2) / (1 - b2**2)
    np.testing.assert_allclose(np.asarray(u2), -0.0025 * r * np.asarray(g2) / (np.sqrt(v) + 1e-8), rtol=1e-5)


def test_resolved_defaults_follow_nvidia():
    t = TrainConfig(batch=16).resolve(64)
    assert t.g_lr == t.d_lr == 0.0025
    assert t.r1_gamma == pytest.approx(0.0002 * 64**2 / 16)
    assert t.ema_kimg == pytest.approx(16 * 10 / 32)
    assert TrainConfig(batch=32).resolve(1024).g_lr == 0.002
    assert TrainConfig(batch=16, kimg=1).total_steps == 63
    assert TrainConfig.from_dict(t.to_dict()) == t


def test_a_blur_asked_of_stylegan2_fades_as_stylegan3_rs():
    assert TrainConfig(batch=16).resolve(64).blur_steps == 0  # StyleGAN2: no blur by default
    blurred = TrainConfig(batch=16, blur_init_sigma=4.0).resolve(64)
    assert (blurred.blur_init_sigma, blurred.blur_fade_kimg) == (4.0, 16 * 200 / 32)  # NVIDIA's R fade, batch * 200 / 32 kimg
    assert blurred.blur_steps == 100 * 1000 // 16
    assert TrainConfig(batch=16, blur_init_sigma=4.0, blur_fade_kimg=1.6).resolve(64).blur_steps == 100
    assert TrainConfig(batch=16, blur_init_sigma=0.0).resolve(32, "stylegan3-r").blur_steps == 0  # R's blur turned off


def test_ema_beta_ramps_up():
    from gvjax.config import GeneratorConfig
    from gvjax.discriminator import DiscriminatorConfig
    from gvjax.train.step import ema_beta, make_networks

    g = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8)
    nets = make_networks(g, DiscriminatorConfig.for_generator(g), TrainConfig(batch=16, ema_kimg=10, ema_rampup=0.05))
    assert float(ema_beta(nets, jnp.int32(0))) == 0.0  # G_ema = G at the start
    assert float(ema_beta(nets, jnp.int32(100))) == pytest.approx(0.5 ** (16 / (100 * 16 * 0.05)), rel=1e-6)
    assert float(ema_beta(nets, jnp.int32(10**6))) == pytest.approx(0.5 ** (16 / 10000), rel=1e-6)


def test_config_refuses_bad_values():
    with pytest.raises(GvjaxError, match="augmentation"):
        TrainConfig(augment=("rotate",))
    with pytest.raises(GvjaxError, match="batch"):
        TrainConfig(batch=0)


# --- data -------------------------------------------------------------------------------------------


def test_batch_order_is_a_seeded_permutation_per_epoch():
    n, b = 10, 4
    stream = np.concatenate([batch_indices(n, 7, s, b) for s in range(10)])  # 40 = 4 epochs
    for e in range(4):
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n))
    np.testing.assert_array_equal(batch_indices(n, 7, 6, b), stream[24:28])  # a pure function of the step
    assert not np.array_equal(stream[:n], np.concatenate([batch_indices(n, 8, s, b) for s in range(10)])[:n])


def _png(arr, mode=None):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_dataset_folder_and_zip_skip_corrupt_images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    wide = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)
    (folder / "a.png").write_bytes(_png(wide))
    (folder / "sub" / "b.jpg").write_bytes(_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))  # png bytes, .jpg name: Pillow reads it
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (folder / "d.png").write_bytes(_png(wide)[:60])  # truncated
    (folder / "notes.txt").write_text("ignored")
    ds = ImageDataset(folder, 8, 3)
    assert ds.names == ["a.png", "sub/b.jpg"] and sorted(ds.skipped) == ["c.png", "d.png"]
    assert ds.images.shape == (2, 8, 8, 3) and ds.images.dtype == np.uint8
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    dz = ImageDataset(zpath, 8, 3)
    assert dz.names == ds.names and dz.skipped == ds.skipped
    np.testing.assert_array_equal(dz.images, ds.images)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GvjaxError, match="no png"):
        ImageDataset(tmp_path / "empty", 8, 3)


def test_center_crop_and_transparency():
    from PIL import Image

    arr = np.zeros((10, 30, 4), np.uint8)
    arr[:, 10:20] = (255, 0, 0, 255)  # opaque red square in the middle, transparent elsewhere
    out = center_crop_resize(Image.fromarray(arr, "RGBA"), 10, 3)
    assert out.shape == (10, 10, 3)
    assert (out == (255, 0, 0)).all()  # the centre crop is exactly the red square
    side = np.zeros((10, 10, 4), np.uint8)
    out = center_crop_resize(Image.fromarray(side, "RGBA"), 5, 3)
    assert (out == 255).all()  # transparency becomes white


def test_prefetcher_yields_the_batches_of_consecutive_steps(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(_png(np.full((4, 4, 3), i * 40, np.uint8)))
    ds = ImageDataset(folder, 4, 3)
    with Prefetcher(ds, seed=3, batch=2, start=7) as pf:
        for step in range(7, 12):
            s, images = pf.next()
            assert s == step
            np.testing.assert_array_equal(images, ds.images[batch_indices(5, 3, step, 2)])


# --- fruit ------------------------------------------------------------------------------------------


def test_fruit_images_are_deterministic_varied_and_on_white():
    a, kinds_a = fruit_image(32, 5, 0)
    b, kinds_b = fruit_image(32, 5, 0)
    np.testing.assert_array_equal(a, b)
    assert kinds_a == kinds_b
    images, kinds = zip(*(fruit_image(32, 5, i) for i in range(40)))
    images = np.stack(images)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    assert (images[:, 0, 0] >= 245).all() and (images[:, 0, -1] >= 245).all()  # white corners
    drawn = {k for ks in kinds for k in ks}
    assert len(drawn) >= 9 and drawn <= set(FRUITS)
    assert len({len(ks) for ks in kinds}) >= 2  # the count varies
    coloured = (np.abs(images.astype(int) - 255).sum(-1) > 60).mean(axis=(1, 2))
    assert (coloured > 0.03).all()  # every picture has fruit in it
    assert not np.array_equal(fruit_image(32, 6, 0)[0], a)


def test_dataset_fruit_command(tmp_path):
    out = tmp_path / "fruit"
    r = run_cli("dataset", "fruit", out, "--count", 5, "--res", 16, "--seed", 2)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"fruit{i:06d}.png" for i in range(5)] + ["labels.json"]
    from gvjax.images import read_png

    np.testing.assert_array_equal(read_png(out / "fruit000003.png"), fruit_image(16, 2, 3)[0])
    r = run_cli("dataset", "fruit", out, "--count", 5, "--res", 16)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "already exists" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["fruit"]  # no temporary folder left


def test_train_command_errors(tmp_path):
    r = run_cli("train", tmp_path, "--out", tmp_path / "run")
    assert r.returncode == 2 and "--from" in r.stderr and r.stderr.strip().count("\n") == 0
    r = run_cli("train", tmp_path / "nope", "--from", "bundled", "--out", tmp_path / "run")
    assert r.returncode == 2 and "no such dataset" in r.stderr
    r = run_cli("train", tmp_path, "--out", tmp_path / "run", "--resume")
    assert r.returncode == 2 and "no checkpoint" in r.stderr


# --- the bundled model ------------------------------------------------------------------------------


def test_bundled_model_is_the_fruit_model_trained_here():
    from gvjax.bundled import BUNDLED_FILE, bundled_model
    from gvjax.generate import generate_images
    from gvjax.discriminator import DiscriminatorConfig
    from gvjax.train.bundled_config import BUNDLED_CONFIG

    ckpt = bundled_model()
    assert ckpt.config == BUNDLED_CONFIG
    assert DiscriminatorConfig.from_dict(ckpt.extra["D"]["config"]) == DiscriminatorConfig.for_generator(BUNDLED_CONFIG)
    assert BUNDLED_FILE.stat().st_size < 12 * 2**20  # a few MB inside the package
    record = ckpt.provenance["training"]
    assert record["steps"] * record["batch"] == round(record["kimg"] * 1000) and record["wall_seconds"] > 0
    assert any(c.startswith("gvjax train ") for c in record["commands"])
    imgs = np.stack([img for _, img in generate_images(ckpt.config, ckpt.variables, list(range(8)), noise_mode="const")])
    # trained on fruit on white: the corners of its pictures are light, their centres are not
    corners = np.concatenate([imgs[:, :4, :4], imgs[:, :4, -4:], imgs[:, -4:, :4], imgs[:, -4:, -4:]], axis=1)
    centre = imgs[:, 24:40, 24:40]
    assert corners.mean() > 0.6 and centre.mean() < corners.mean() - 0.3, (corners.mean(), centre.mean())


def test_bundled_training_record_adds_a_stage(tmp_path):
    """`bundled_config record`'s parts: a stage read from a run directory (steps and p from the log's
    last line, seconds from reals.png to the last checkpoint), and totals summed over the stages."""
    import os

    from gvjax.train.bundled_config import add_stage, stage_record

    run = tmp_path / "run"
    (run / "checkpoints" / "0").mkdir(parents=True)
    (run / "checkpoints" / "625").mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"batch": 16}, "data": {"images": 20000}}))
    (run / "log.jsonl").write_text("".join(json.dumps({"step": i, "augment_p": 0.1 * i}) + "\n" for i in (1, 2, 625)))
    (run / "reals.png").write_bytes(b"")
    os.utime(run / "reals.png", (1000.0, 1000.0))
    os.utime(run / "checkpoints" / "0", (1010.0, 1010.0))
    os.utime(run / "checkpoints" / "625", (1400.4, 1400.4))
    stage = stage_record(run)
    assert stage == {"kimg": 10.0, "steps": 625, "images": 20000, "final_augment_p": 62.5, "wall_seconds": 400}
    paused = stage_record(run, stopped="SIGTERM after its 10-kimg checkpoint", wall_seconds=350)
    assert paused == dict(stage, wall_seconds=350, stopped="SIGTERM after its 10-kimg checkpoint")
    forked = stage_record(run, at_step=2, wall_seconds=5)  # the next stage started from step 2's checkpoint
    assert forked == {"kimg": 0.032, "steps": 2, "images": 20000, "final_augment_p": 0.2, "wall_seconds": 5}
    with pytest.raises(ValueError, match="no step 3"):
        stage_record(run, at_step=3)

    first = {"batch": 16, "commands": ["a"], "kimg": 240.0, "steps": 15000, "wall_seconds": 7000, "final_augment_p": 0.28}
    two = add_stage(first, stage, ["b", "c"])  # a record from before stages were kept counts as one stage
    assert two["stages"] == [{"kimg": 240.0, "steps": 15000, "wall_seconds": 7000, "final_augment_p": 0.28}, stage]
    assert (two["commands"], two["steps"], two["kimg"], two["wall_seconds"], two["final_augment_p"], two["batch"]) == (
        ["a", "b", "c"], 15625, 250.0, 7400, 62.5, 16)
    three = add_stage(two, stage, ["d"])
    assert len(three["stages"]) == 3 and three["steps"] == 16250 and three["commands"][-1] == "d"


def test_a_widened_generator_draws_the_same_images():
    """`gvjax.model.widen_generator`: more channels at 8 and 16 px (channel_base 128 -> 256),
    the old entries kept, the new ones fresh; images equal within float32 rounding (demodulated
    convs ignore the smaller weight gain; ToRGB's old weights are rescaled), shapes those of the
    wide config, and the new channels' own weights fresh (not zero), so training can use them."""
    import dataclasses

    from flax.traverse_util import flatten_dict

    from gvjax.config import GeneratorConfig
    from gvjax.model import Generator, init_variables, variable_shapes
    from gvjax.model import widen_generator

    narrow = GeneratorConfig(z_dim=32, w_dim=32, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=32, architecture="skip")
    wide = dataclasses.replace(narrow, channel_base=256)
    variables = jax.device_get(init_variables(narrow, jax.random.key(0)))
    # a trained-looking generator: biases and ToRGB far from their init, so a wrong rescale would show
    variables = jax.tree.map(lambda x: x + 0.3 * np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype), variables)
    widened = widen_generator(variables, narrow, wide, jax.random.key(7))
    assert jax.tree.map(lambda x: x.shape, widened) == jax.tree.map(lambda x: x.shape, variable_shapes(wide))
    z = jax.random.normal(jax.random.key(3), (4, narrow.z_dim))

    def images(cfg, v):
        return np.asarray(jax.jit(jax.vmap(lambda z: Generator(cfg).apply(v, z, truncation_psi=0.7)))(z))

    before, after = images(narrow, variables), images(wide, widened)
    assert np.abs(after - before).max() < 1e-5 * max(1.0, np.abs(before).max())
    conv = flatten_dict(widened["params"], sep=".")["synthesis.b16.conv1.weight"]  # [16, 16, 3, 3], was [8, 8, 3, 3]
    old = flatten_dict(variables["params"], sep=".")["synthesis.b16.conv1.weight"]
    np.testing.assert_array_equal(conv[:8, :8], old)
    assert (conv[:8, 8:] == 0).all() and np.abs(conv[8:]).min() > 0  # new inputs silent for old outputs; new outputs fresh
    torgb = flatten_dict(widened["params"], sep=".")["synthesis.b16.torgb.weight"]
    np.testing.assert_allclose(torgb[:, :8], flatten_dict(variables["params"], sep=".")["synthesis.b16.torgb.weight"] * np.sqrt(2), rtol=1e-6)
    with pytest.raises(ValueError, match="only in channel_base"):
        widen_generator(variables, narrow, dataclasses.replace(wide, w_dim=64), jax.random.key(7))


def test_a_widened_discriminator_gives_the_same_logits():
    """`gvjax.discriminator.widen_discriminator`: channel_base 128 -> 256 doubles the channels at
    16 and 8 px (the 4x4 head keeps 32); logits equal within float32 rounding on trained-looking
    weights (every conv's old weights take the fan-in correction, a wrong one would show), the
    new channels' own weights fresh; a changed head is refused."""
    import dataclasses

    from flax.traverse_util import flatten_dict

    from gvjax.discriminator import Discriminator, DiscriminatorConfig, d_variable_shapes, init_d_variables, widen_discriminator

    narrow = DiscriminatorConfig(img_resolution=16, channel_base=128, channel_max=32)
    wide = dataclasses.replace(narrow, channel_base=256)
    assert [narrow.channels(r) for r in (16, 8, 4)] == [8, 16, 32] and [wide.channels(r) for r in (16, 8, 4)] == [16, 32, 32]
    variables = jax.device_get(init_d_variables(narrow, jax.random.key(0)))
    variables = jax.tree.map(lambda x: x + 0.3 * np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype), variables)
    widened = widen_discriminator(variables, narrow, wide, jax.random.key(7))
    assert jax.tree.map(lambda x: x.shape, widened) == jax.tree.map(lambda x: x.shape, d_variable_shapes(wide))
    img = jax.random.uniform(jax.random.key(3), (8, 16, 16, 3), minval=-1, maxval=1)
    before = np.asarray(jax.jit(Discriminator(narrow).apply)(variables, img))
    after = np.asarray(jax.jit(Discriminator(wide).apply)(widened, img))
    assert np.abs(before).max() > 0.1 and np.abs(after - before).max() < 1e-5 * np.abs(before).max()
    conv = flatten_dict(widened["params"], sep=".")["b8.conv0.weight"]  # [32, 32, 3, 3], was [16, 16, 3, 3]
    old = flatten_dict(variables["params"], sep=".")["b8.conv0.weight"]
    np.testing.assert_allclose(conv[:16, :16], old * np.sqrt(2), rtol=1e-6)
    assert (conv[:16, 16:] == 0).all() and np.abs(conv[16:]).min() > 0
    with pytest.raises(ValueError, match="same channels at 4x4"):
        widen_discriminator(variables, narrow, dataclasses.replace(narrow, channel_base=512, channel_max=64), jax.random.key(7))


def test_oversample_repeats_one_species(tmp_path):
    """`bundled_config oversample`: every picture once, the chosen species' `times` times (same
    bytes), labels for each; the counts it returns are those of its labels file."""
    from gvjax.train.bundled_config import oversample
    from gvjax.train.fruit import write_fruit_dataset

    write_fruit_dataset(tmp_path / "data", count=12, resolution=16, seed=0, labels=True)
    labels = json.loads((tmp_path / "data" / "labels.json").read_text())
    kind = labels["labels"]["fruit000000.png"]
    name = labels["species"][kind]
    n = sum(k == kind for k in labels["labels"].values())
    counts = oversample(tmp_path / "data", tmp_path / "more", name, 3)
    pngs = sorted(p.name for p in (tmp_path / "more").glob("*.png"))
    assert len(pngs) == 12 + 2 * n and counts[name] == 3 * n and sum(counts.values()) == len(pngs)
    assert (tmp_path / "more" / "fruit000000_3.png").read_bytes() == (tmp_path / "data" / "fruit000000.png").read_bytes()
    more = json.loads((tmp_path / "more" / "labels.json").read_text())
    assert sorted(more["labels"]) == pngs and more["fruits"]["fruit000000_2.png"] == labels["fruits"]["fruit000000.png"]
    with pytest.raises(ValueError, match="no species 'mango'"):
        oversample(tmp_path / "data", tmp_path / "none", "mango", 2)


def test_bundled_export_keeps_g_ema_and_d_for_training_on(tmp_path):
    """export_npz -> read_npz_model round trip: G_ema and D come back bit for bit, G is left out,
    and `start_model` continues from that D instead of a fresh one."""
    from flax.traverse_util import flatten_dict

    from gvjax.bundled import read_npz_model
    from gvjax.checkpoint import Checkpoint, save_checkpoint
    from gvjax.config import GeneratorConfig
    from gvjax.discriminator import DiscriminatorConfig, init_d_variables
    from gvjax.model import init_variables
    from gvjax.train.bundled_config import export_npz
    from gvjax.train.run import start_model

    g_config = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=32, channel_max=8)
    d_config = DiscriminatorConfig.for_generator(g_config)
    g_ema = jax.device_get(init_variables(g_config, jax.random.key(1)))
    g = jax.device_get(init_variables(g_config, jax.random.key(2)))
    d = jax.device_get(init_d_variables(d_config, jax.random.key(3)))
    d_info = {"format": "gvjax", "class_name": "gvjax.discriminator.Discriminator", "config": d_config.to_dict()}
    save_checkpoint(tmp_path / "model", g_config, {"G_ema": g_ema, "G": g, "D": d}, provenance={"source": "test"}, extra={"D": d_info})
    export_npz(str(tmp_path / "model"), str(tmp_path / "m.npz"), {"kimg": 1.0})

    config, networks, meta = read_npz_model(tmp_path / "m.npz")
    assert config == g_config, (config, g_config)
    assert set(networks) == {"G_ema", "D"} and meta["D"] == d_info and meta["record"] == {"kimg": 1.0}
    def same(a, b):
        a, b = flatten_dict(a, sep="/"), flatten_dict(b, sep="/")
        return set(a) == set(b) and all(np.array_equal(a[k], np.asarray(b[k])) for k in b)

    assert same(networks["G_ema"], g_ema) and same(networks["D"], d)
    ckpt = Checkpoint(config, networks, {"source": "test"}, {"D": meta["D"]})
    start = start_model(ckpt, "m.npz", warn=pytest.fail)
    assert start.d_config == d_config and same(start.d, d)
