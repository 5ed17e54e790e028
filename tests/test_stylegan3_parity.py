"""Parity with NVIDIA's StyleGAN3 (T and R) generator and its discriminator on the micro fixtures.

`tests/data/stylegan3/` holds two randomised networks written by NVlabs/stylegan3 and the outputs its
code gives for fixed inputs (float32, CPU, batch 4); see its README. Each pickle is read the way users'
files are (`load_source`, restricted unpickler), and every key of `<name>_expected.npz` is compared:
max |ours - reference| <= 1e-4 (ws, intermediates, D logits) and <= 1e-5 on images (the README's
suggestion: the images are small, and the reference's own float32 noise is ~2e-7).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, activations, mapping_fn, nchw, nvidia_activation
from flax.traverse_util import flatten_dict

from gvjax import ops
from gvjax.convert import describe, load_source
from gvjax.convert import stylegan3 as convert_sg3
from gvjax.convert.nvidia_d import load_discriminator
from gvjax.convert.torch_io import load_torch_file
from gvjax.discriminator import Discriminator
from gvjax.errors import GvjaxError
from gvjax.ops.filtered_lrelu import bessel_j1
from gvjax.model import KERNELS, count_params, with_arranged_kernels
from gvjax.models import stylegan3 as sg3

DATA = pathlib.Path(__file__).parent / "data" / "stylegan3"
FIXTURES = ("sg3t_micro", "sg3r_micro")
IMAGE_ATOL = 1e-5
IMAGE_KEYS = ("img", "img_psi07", "img_transform", "img_transform_zoom", "img_wrand")
# README: parameters of G_ema (mapping, synthesis, input layer) and of D
PARAMS = {"sg3t_micro": (16481, 2112, 14369, 276, 7849), "sg3r_micro": (7641, 2112, 5529, 276, 1986)}


def load_expected(name):
    with np.load(DATA / f"{name}_expected.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def load_state(name, prefix):
    with np.load(DATA / f"{name}_state.npz") as npz:
        return {k[len(prefix):]: npz[k] for k in npz.files if k.startswith(prefix)}


def close(ours, ref, what, atol=ATOL):
    """max |ours - ref| <= atol, same shape; returns the error."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    err = float(np.abs(ours - ref).max())
    assert err <= atol, f"{what}: max |diff| {err:.3g} > {atol}"
    return err


@pytest.fixture(scope="module", params=FIXTURES)
def fixture(request):
    """(name, Checkpoint from the .pkl, meta, expected arrays)."""
    meta, expected = load_expected(request.param)
    return request.param, load_source(DATA / f"{request.param}.pkl"), meta, expected


def synthesis_fn(gen, variables):
    """jit(vmap): `(ws [N, num_ws, w_dim], transform [N, 3, 3])` -> images `[N, C, H, W]`."""
    return jax.jit(jax.vmap(lambda ws, t: gen.apply(variables, ws, transform=t, method="synthesize")))


def per_example(transform, n=4):
    return np.broadcast_to(np.asarray(transform, np.float32), (n, 3, 3))


# --- the layer table and the filters -----------------------------------------------------------------


def test_layout_is_nvidias(fixture):
    name, ckpt, meta, _ = fixture
    cfg = ckpt.config
    assert isinstance(cfg, sg3.StyleGAN3Config) and cfg.num_ws == meta["num_ws"] == 16
    assert sg3.stage_names(cfg) == ("input", *meta["layer_names"])
    input_spec, layers = sg3.synthesis_layout(cfg)
    ref_input, *ref_layers = meta["layers"]
    assert (input_spec.channels, input_spec.size, input_spec.sampling_rate, input_spec.bandwidth) == (
        ref_input["channels"], ref_input["size"], ref_input["sampling_rate"], ref_input["cutoff"])
    compared = 0
    for spec, ref in zip(layers, ref_layers, strict=True):
        for field, value in ref.items():
            if hasattr(spec, field):
                ours = getattr(spec, field)
                ours = list(ours) if isinstance(ours, tuple) else ours
                assert ours == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), (spec.name, field)
                compared += 1
        fu, fd = sg3.layer_filters(spec)
        assert (None if fu is None else list(fu.shape)) == ref["up_filter_shape"]
        assert (None if fd is None else list(fd.shape)) == ref["down_filter_shape"]
    assert compared >= 15 * 20
    assert cfg.use_radial_filters == (name == "sg3r_micro") and cfg.conv_kernel == (1 if name == "sg3r_micro" else 3)


def test_designed_filters_equal_the_pickled_buffers():
    """Our numpy design (Kaiser-windowed sinc; jinc for R's radial down filters) = scipy's, stored in float32."""
    worst = 0.0
    for name in FIXTURES:
        meta, _ = load_expected(name)
        state = load_state(name, "G_ema.")
        _, layers = sg3.synthesis_layout(load_source(DATA / f"{name}.pkl").config)
        radial = 0
        for spec in layers:
            for which, designed in zip(("up_filter", "down_filter"), sg3.layer_filters(spec)):
                key = f"synthesis.{spec.name}.{which}"
                if designed is None:
                    assert key not in state
                    continue
                radial += designed.ndim == 2
                worst = max(worst, close(designed, state[key], key, atol=1e-6))
        assert radial == (12 if name == "sg3r_micro" else 0)
    assert worst <= 1e-6


def test_bessel_j1_and_kaiser_against_known_values():
    # J1 zeros and values from Abramowitz & Stegun table 9.1 / 9.5
    x = np.array([1.0, 2.0, 5.0, 3.8317059702075123, 7.0155866698156187, 30.0])
    ref = np.array([0.4400505857449335, 0.5767248077568734, -0.3275791375914652, 0.0, 0.0, -0.1187510626166229])
    np.testing.assert_allclose(bessel_j1(x), ref, atol=1e-14)
    f = ops.design_lowpass_filter(12, 2.0, 12.0, 32.0)
    assert f.shape == (12,) and abs(float(f.sum()) - 1) < 1e-6 and np.array_equal(f, f[::-1])
    assert ops.design_lowpass_filter(1, 2.0, 12.0, 32.0) is None


# --- conversion -------------------------------------------------------------------------------------


def test_conversion_keeps_every_tensor(fixture):
    name, ckpt, _, _ = fixture
    for net in ("G_ema", "G"):
        state = load_state(name, f"{net}.")
        ours = {".".join(k): v for coll in ("params", "buffers") for k, v in flatten_dict(ckpt.networks[net][coll]).items()}
        filters = {k for k in state if k.endswith(("up_filter", "down_filter"))}
        assert set(ours) == set(state) - filters
        for key, value in ours.items():
            np.testing.assert_array_equal(value, state[key], err_msg=f"{net}.{key}")
    assert not np.array_equal(ckpt.networks["G"]["params"]["synthesis"]["L3_36_12"]["weight"],
                              ckpt.networks["G_ema"]["params"]["synthesis"]["L3_36_12"]["weight"])
    total, mapping, synthesis, input_layer, d_params = PARAMS[name]
    params = ckpt.networks["G_ema"]["params"]
    assert (count_params(params), count_params(params["mapping"]), count_params(params["synthesis"]),
            count_params(params["synthesis"]["input"])) == (total, mapping, synthesis, input_layer)
    assert count_params(ckpt.networks["D"]["params"]) == d_params
    shapes = sg3.variable_shapes(ckpt.config)
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(np.shape, ckpt.networks["G_ema"])
    prov = ckpt.provenance
    assert prov["format"] == convert_sg3.FORMAT and prov["class_name"] == "training.networks_stylegan3.Generator"
    assert prov["kind"] == ("R" if name == "sg3r_micro" else "T") and prov["networks"] == ["D", "G", "G_ema"]
    info = describe(ckpt, prov["format"])
    assert list(info["channels"]) == list(sg3.stage_names(ckpt.config)[1:]) and info["channels"]["L5_52_10"] == 10
    assert info["parameters"] == {"D": d_params, "G": total, "G_ema": total}


def test_config_round_trips_through_json(fixture):
    cfg = fixture[1].config
    assert sg3.StyleGAN3Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(GvjaxError, match="unknown StyleGAN3 generator config keys: fancy"):
        sg3.StyleGAN3Config.from_dict({**cfg.to_dict(), "fancy": 1})
    with pytest.raises(GvjaxError, match="num_critical must be < num_layers"):
        sg3.StyleGAN3Config(num_layers=2, num_critical=2)
    with pytest.raises(GvjaxError, match="power of two"):
        sg3.StyleGAN3Config(img_resolution=48)


# --- the generator ----------------------------------------------------------------------------------


def test_mapping_and_truncation(fixture):
    _, ckpt, _, e = fixture
    gen, variables = sg3.Generator(ckpt.config), ckpt.variables
    np.testing.assert_array_equal(variables["buffers"]["mapping"]["w_avg"], e["w_avg"])
    close(mapping_fn(gen, variables)(e["z"], e["c"]), e["ws"], "ws")
    close(mapping_fn(gen, variables, 0.7)(e["z"], e["c"]), e["ws_psi07"], "ws_psi07")
    close(mapping_fn(gen, variables, 0.7, 8)(e["z"], e["c"]), e["ws_psi07_cutoff"], "ws_psi07_cutoff")
    fn = mapping_fn(gen, variables)
    ws_rand = np.stack([np.asarray(fn(e["z_wrand"][i], e["c"]))[:, 0] for i in range(16)], axis=1)
    close(ws_rand, e["ws_rand"], "ws_rand")


@pytest.mark.parametrize("modconv, arranged", [("grouped", False), ("shared", True)], ids=["grouped-in-call", "shared-arranged"])
def test_images(fixture, modconv, arranged):
    """img, truncated, two transforms (rotation + translation; and a zoom that damps out-of-band
    frequencies) and an independent w per layer, through one jitted synthesis; z -> image too."""
    _, ckpt, meta, e = fixture
    gen, variables = sg3.Generator(ckpt.config, modconv=modconv), ckpt.variables
    if arranged:
        variables = with_arranged_kernels(gen, variables)
        assert len(flatten_dict(variables[KERNELS]["synthesis"])) == 2 * 15  # taps and taps_sq of every layer
    run = synthesis_fn(gen, variables)
    identity = per_example(np.eye(3))
    close(nchw(run(e["ws"], identity)), e["img"], "img", IMAGE_ATOL)
    close(nchw(run(e["ws_psi07"], identity)), e["img_psi07"], "img_psi07", IMAGE_ATOL)
    close(nchw(run(e["ws_rand"], identity)), e["img_wrand"], "img_wrand", IMAGE_ATOL)
    np.testing.assert_allclose(e["transform"], np.linalg.inv(ops.make_transform((0.1, -0.2), 17)), atol=1e-6)
    close(nchw(run(e["ws"], per_example(e["transform"]))), e["img_transform"], "img_transform", IMAGE_ATOL)
    close(nchw(run(e["ws"], per_example(e["transform_zoom"]))), e["img_transform_zoom"], "img_transform_zoom", IMAGE_ATOL)
    if not arranged:  # the whole generator, z -> image with truncation, and the stored transform as default
        full = jax.jit(jax.vmap(lambda z: gen.apply(variables, z, truncation_psi=0.7)))
        close(nchw(full(e["z"])), e["img_psi07"], "G(z, psi=0.7)", IMAGE_ATOL)


def test_every_intermediate(fixture):
    """Every `act.*` key: mapping layers, the input's affine and features, each layer's styles and output."""
    _, ckpt, meta, e = fixture
    gen = sg3.Generator(ckpt.config)
    mapping_acts, synthesis_acts = activations(gen, ckpt.variables, e["z"], e["c"], e["ws"])
    keys = [k for k in e if k.startswith("act.")]
    assert len(keys) == 2 + 2 + 2 * 15
    for key in keys:
        close(nvidia_activation(key, mapping_acts, synthesis_acts)[:1], e[key], key)


def test_every_key_is_compared(fixture):
    _, _, _, e = fixture
    inputs = {"z", "c", "w_avg", "transform", "transform_zoom", "z_wrand", "ws_rand", "d_img_real"}
    outputs = {"ws", "ws_psi07", "ws_psi07_cutoff", *IMAGE_KEYS, "d_logits_real", "d_logits_gen"}
    assert set(e) == inputs | outputs | {k for k in e if k.startswith("act.")}
    assert len(e) == 52


def test_run_layers_in_pieces_equals_synthesis(fixture):
    _, ckpt, _, e = fixture
    gen, variables = sg3.Generator(ckpt.config), ckpt.variables
    ws, transform = jnp.asarray(e["ws"][0]), jnp.asarray(e["transform"], jnp.float32)
    n = len(sg3.stage_names(ckpt.config))

    def pieces(ws, transform):
        x = gen.apply(variables, ws, start=0, stop=1, transform=transform, method="run_layers")
        x = gen.apply(variables, ws, x, start=1, stop=7, method="run_layers")
        return gen.apply(variables, ws, x, start=7, stop=n, method="run_layers")

    split = jax.jit(pieces)(ws, transform)
    np.testing.assert_allclose(split, e["img_transform"][0].transpose(1, 2, 0), atol=IMAGE_ATOL)
    with pytest.raises(ValueError, match="starts from no carry"):
        gen.apply(variables, ws, start=1, stop=2, method="run_layers")
    cfg = ckpt.config
    assert [sg3.stage_index(cfg, s) for s in ("input", "L0", "L5_52_10", "L14", 7)] == [0, 1, 6, 15, 7]
    for bad in ("L15", "L5_36_12", 16, -1, True, "torgb"):
        with pytest.raises(GvjaxError, match=r"no StyleGAN3 stage .*: expected 'input', L0 \.\.\. L14 \(or 0 \.\.\. 15\)"):
            sg3.stage_index(cfg, bad)


def test_bfloat16_compute_stays_close(fixture):
    """bf16 synthesis (params float32, filters accumulated in float32): max error 0.6% of the image's
    range on both fixtures (StyleGAN2's bf16 path: 0.8% on ada_micro_skip)."""
    _, ckpt, _, e = fixture
    gen = sg3.Generator(ckpt.config, dtype=jnp.bfloat16)
    img = np.asarray(synthesis_fn(gen, ckpt.variables)(e["ws"], per_example(np.eye(3))))
    assert img.dtype == np.float32 and np.isfinite(img).all()
    err = np.abs(nchw(img) - e["img"]).max()
    assert err < 0.02 * np.abs(e["img"]).max(), err


def test_fresh_generator_runs_and_starts_at_the_identity_transform():
    cfg = sg3.StyleGAN3Config(z_dim=8, w_dim=8, img_resolution=16, channel_base=64, channel_max=8, num_layers=4, num_critical=1,
                              conv_kernel=1, use_radial_filters=True)
    variables = sg3.init_variables(cfg, jax.random.key(1))
    assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda s: s.shape, sg3.variable_shapes(cfg))
    affine = variables["params"]["synthesis"]["input"]["affine"]
    np.testing.assert_array_equal(affine["weight"], 0)
    np.testing.assert_array_equal(affine["bias"], [1, 0, 0, 0])
    buffers = variables["buffers"]["synthesis"]
    assert np.all(np.linalg.norm(buffers["input"]["freqs"], axis=1) <= sg3.synthesis_layout(cfg)[0].bandwidth)
    assert np.all(np.abs(buffers["input"]["phases"]) <= 0.5)
    np.testing.assert_array_equal(buffers["input"]["transform"], np.eye(3))
    img = jax.jit(sg3.Generator(cfg).apply)(variables, jnp.ones((8,), jnp.float32))
    assert img.shape == (16, 16, 3) and np.isfinite(np.asarray(img)).all()


# --- the discriminator -------------------------------------------------------------------------------


def test_discriminator_logits(fixture):
    _, ckpt, _, e = fixture
    config, variables = load_discriminator(ckpt.networks["D"], ckpt.extra["D"])
    assert config.architecture == "resnet" and config.conv_clamp == 256
    d = Discriminator(config)
    run = jax.jit(lambda img: d.apply(variables, img, None))
    close(run(np.transpose(e["d_img_real"], (0, 2, 3, 1))), e["d_logits_real"], "d_logits_real")
    close(run(np.transpose(e["img"], (0, 2, 3, 1))), e["d_logits_gen"], "d_logits_gen")


# --- refusals ---------------------------------------------------------------------------------------


def _pickled_g_ema():
    return load_torch_file(DATA / "sg3t_micro.pkl")["G_ema"]


def test_a_different_filter_is_refused():
    g = _pickled_g_ema()
    layer = g.state["_modules"]["synthesis"].state["_modules"]["L3_36_12"].state
    layer["_buffers"]["down_filter"] = np.asarray(layer["_buffers"]["down_filter"]) * 1.01
    with pytest.raises(GvjaxError, match=r"StyleGAN3-T network .* is not supported in this form: synthesis\.L3_36_12\.down_filter is not the lowpass filter"):
        convert_sg3.read_generator(g, "G_ema")


def test_a_layer_the_config_does_not_reproduce_is_refused():
    g = _pickled_g_ema()
    g.state["_modules"]["synthesis"].state["_modules"]["L5_52_10"].state["padding"] = [-6, -9, -6, -8]
    with pytest.raises(GvjaxError, match=r"L5_52_10\.padding is \[-6, -9, -6, -8\], its config implies \(-6, -9, -6, -9\)"):
        convert_sg3.read_generator(g, "G_ema")
    g = _pickled_g_ema()
    g.state["_modules"]["synthesis"].state["margin_size"] = 8
    with pytest.raises(GvjaxError, match=r"layers \['L0_36_12', .*\] differ from the \['L0_32_12'"):
        convert_sg3.read_generator(g, "G_ema")


def test_an_unexpected_tensor_is_refused():
    g = _pickled_g_ema()
    layer = g.state["_modules"]["synthesis"].state["_modules"]["L3_36_12"].state
    layer["_buffers"]["noise_const"] = np.zeros((36, 36), np.float32)
    with pytest.raises(GvjaxError, match=r"unexpected tensor 'synthesis\.L3_36_12\.noise_const'"):
        convert_sg3.read_generator(g, "G_ema")
