"""Parity with NVIDIA's stylegan2-ada-pytorch generator on the reference fixtures.

The expected arrays were computed by NVIDIA's code (float32, CPU); see
tests/data/stylegan2/README.md. Tolerance: max |ours - reference| <= 1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_expected, load_state

from gvjax.convert.nvidia import config_from_init_kwargs, variables_from_state_dict
from gvjax.model import Generator

ATOL = 1e-4


def nchw(img):
    return np.transpose(np.asarray(img), (0, 3, 1, 2))


def setup(name, modconv="grouped"):
    meta, expected = load_expected(name)
    config = config_from_init_kwargs(meta["G_init_kwargs"])
    variables = variables_from_state_dict(load_state(name, "G_ema."), config)
    return Generator(config, modconv=modconv), variables, expected


def mapping_fn(gen, variables, psi=1.0, cutoff=None, capture=False):
    def one(z, c):
        c = c if gen.config.c_dim else None
        return gen.apply(
            variables, z, c, truncation_psi=psi, truncation_cutoff=cutoff, method="map",
            capture_intermediates=capture, mutable=["intermediates"] if capture else False,
        )

    return jax.jit(jax.vmap(one))


def synthesis_fn(gen, variables, noise_mode="const", capture=False):
    def one(ws):
        return gen.apply(
            variables, ws, noise_mode=noise_mode, method="synthesize",
            capture_intermediates=capture, mutable=["intermediates"] if capture else False,
        )

    return jax.jit(jax.vmap(one))


def assert_close(ours, ref, what):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    err = np.abs(ours - ref).max()
    assert err <= ATOL, f"{what}: max |diff| {err:.3g} > {ATOL}"


def test_mapping_and_truncation(nvidia_fixture):
    gen, variables, e = setup(nvidia_fixture)
    np.testing.assert_array_equal(variables["buffers"]["mapping"]["w_avg"], e["w_avg"])
    assert_close(mapping_fn(gen, variables)(e["z"], e["c"]), e["ws"], "ws")
    assert_close(mapping_fn(gen, variables, 0.7)(e["z"], e["c"]), e["ws_psi07"], "ws_psi07")
    assert_close(mapping_fn(gen, variables, 0.7, 4)(e["z"], e["c"]), e["ws_psi07_cutoff4"], "ws_psi07_cutoff4")


@pytest.mark.parametrize("modconv", ["grouped", "shared"])
def test_images(nvidia_fixture, modconv):
    gen, variables, e = setup(nvidia_fixture, modconv)
    assert_close(nchw(synthesis_fn(gen, variables, "const")(e["ws"])), e["img_const"], "img_const")
    assert_close(nchw(synthesis_fn(gen, variables, "none")(e["ws"])), e["img_none"], "img_none")
    assert_close(nchw(synthesis_fn(gen, variables, "const")(e["ws_rand"])), e["img_wrand_const"], "img_wrand_const")
    # The whole generator, z -> image, with truncation.
    c = e["c"] if gen.config.c_dim else None
    full = jax.vmap(lambda z, c: gen.apply(variables, z, c, truncation_psi=0.7), in_axes=(0, None if c is None else 0))
    assert_close(nchw(full(e["z"], c)), e["img_psi07_const"], "img_psi07_const")


def test_ws_rand_is_per_layer_mapping(nvidia_fixture):
    """ws_rand[:, i] = mapping(z_wrand[i])[:, 0]: checks the inputs of the img_wrand_const case."""
    gen, variables, e = setup(nvidia_fixture)
    fn = mapping_fn(gen, variables)
    ours = np.stack([np.asarray(fn(e["z_wrand"][i], e["c"]))[:, 0] for i in range(e["z_wrand"].shape[0])], axis=1)
    assert_close(ours, e["ws_rand"], "ws_rand")


def _captured(tree, prefix=()):
    """Flatten flax's captured intermediates: {('synthesis','b4','conv1'): output}."""
    out = {}
    for key, value in tree.items():
        if key == "__call__":
            out[prefix] = value[0]
        elif isinstance(value, dict):
            out.update(_captured(value, prefix + (key,)))
    return out


def _our_activation(key, mapping_acts, synthesis_acts):
    """Our captured value for an `act.*` fixture key, in NCHW for images."""
    parts = tuple(key.split(".")[1:])  # drop 'act'
    if parts[0] == "mapping":
        return mapping_acts[parts]
    if parts[-1] in ("x", "img"):
        x, img = synthesis_acts[parts[:-1]]
        return nchw(x if parts[-1] == "x" else img)
    value = np.asarray(synthesis_acts[parts])
    return value if value.ndim == 2 else nchw(value)


@pytest.mark.parametrize("modconv", ["grouped", "shared"])
def test_every_intermediate(nvidia_fixture, modconv):
    gen, variables, e = setup(nvidia_fixture, modconv)
    _, mstate = mapping_fn(gen, variables, capture=True)(e["z"], e["c"])
    _, sstate = synthesis_fn(gen, variables, capture=True)(e["ws"])
    mapping_acts = {("mapping",) + k[1:]: np.asarray(v) for k, v in _captured(mstate["intermediates"]).items() if k}
    synthesis_acts = {("synthesis",) + k[1:]: v for k, v in _captured(sstate["intermediates"]).items() if k}
    act_keys = [k for k in e if k.startswith("act.")]
    assert len(act_keys) >= 20
    for key in act_keys:
        assert_close(_our_activation(key, mapping_acts, synthesis_acts), e[key], key)
