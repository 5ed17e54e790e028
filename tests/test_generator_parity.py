"""Parity with NVIDIA's stylegan2-ada-pytorch generator on the reference fixtures.

The expected arrays were computed by NVIDIA's code (float32, CPU); see
tests/data/stylegan2/README.md. Tolerance: max |ours - reference| <= 1e-4.
"""

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from conftest import activations, assert_close, load_expected, load_state, mapping_fn, nchw, nvidia_activation, synthesis_fn

from gvjax.convert.nvidia import config_from_init_kwargs, variables_from_state_dict
from gvjax.model import KERNELS, Generator, with_arranged_kernels


def setup(name, modconv="grouped", winograd=None):
    meta, expected = load_expected(name)
    config = config_from_init_kwargs(meta["G_init_kwargs"])
    variables = variables_from_state_dict(load_state(name, "G_ema."), config)
    return Generator(config, modconv=modconv, winograd=winograd), variables, expected


def test_mapping_and_truncation(nvidia_fixture):
    gen, variables, e = setup(nvidia_fixture)
    np.testing.assert_array_equal(variables["buffers"]["mapping"]["w_avg"], e["w_avg"])
    assert_close(mapping_fn(gen, variables)(e["z"], e["c"]), e["ws"], "ws")
    assert_close(mapping_fn(gen, variables, 0.7)(e["z"], e["c"]), e["ws_psi07"], "ws_psi07")
    assert_close(mapping_fn(gen, variables, 0.7, 4)(e["z"], e["c"]), e["ws_psi07_cutoff4"], "ws_psi07_cutoff4")


# The three conv choices, two values each, in 4 runs that hold every pair of values (a pairwise
# covering array); each fixture runs all 4, so each conv path meets each architecture.
CONV_PATHS = [("grouped", False, False), ("grouped", True, True), ("shared", True, False), ("shared", False, True)]


@pytest.mark.parametrize(
    "modconv, arranged, winograd", CONV_PATHS,
    ids=[f"{m}-{'winograd' if w else 'direct'}-{'arranged' if a else 'in-call'}" for m, a, w in CONV_PATHS],
)
def test_images(nvidia_fixture, modconv, arranged, winograd):
    """Every conv path: grouped or shared modulated convolution, kernels arranged in the call
    (training) or once (inference), 3x3 convs direct or Winograd F(2x2, 3x3) (forced on every
    3x3 same-resolution conv, b4 included)."""
    gen, variables, e = setup(nvidia_fixture, modconv, winograd)
    if arranged:  # the conv kernels arranged once, as render and generate run
        variables = with_arranged_kernels(gen, variables)
        names = lambda tree: list(flatten_dict(tree, sep="/"))  # a list (polyphase pieces) is one leaf
        conv_weights = [n for n in names(variables["params"]["synthesis"]) if n.endswith("/weight") and "affine" not in n]
        arranged_sq = [n for n in names(variables[KERNELS]["synthesis"]) if n.endswith("/taps_sq")]
        assert sorted(n[: -len("/taps_sq")] for n in arranged_sq) == sorted(conv_weights)
        winograd_kernels = [n for n in names(variables[KERNELS]["synthesis"]) if n.endswith("/taps/winograd")]
        expected = [f"b{r}/conv1/weight" for r in gen.config.block_resolutions] if winograd else []
        assert sorted(n[: -len("/taps/winograd")] for n in winograd_kernels) == sorted(expected)
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


@pytest.mark.parametrize("modconv", ["grouped", "shared"])
def test_every_intermediate(nvidia_fixture, modconv):
    gen, variables, e = setup(nvidia_fixture, modconv)
    mapping_acts, synthesis_acts = activations(gen, variables, e["z"], e["c"], e["ws"])
    act_keys = [k for k in e if k.startswith("act.")]
    assert len(act_keys) >= 20
    for key in act_keys:
        assert_close(nvidia_activation(key, mapping_acts, synthesis_acts), e[key], key)
