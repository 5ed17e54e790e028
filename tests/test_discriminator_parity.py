"""Parity with NVIDIA's stylegan2-ada-pytorch discriminator on the reference fixtures.

`d_logits_real = D(d_img_real, c)` and `d_logits_gen = D(img_const, c)` were computed by
NVIDIA's code (float32, CPU, batch 4, mbstd group 4); see tests/data/stylegan2/README.md.
Tolerance: max |ours - reference| <= 1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, load_expected, load_state

from gvjax.convert.nvidia_d import d_config_from_init_kwargs, d_variables_from_state_dict, load_discriminator
from gvjax.convert.nvidia import nest
from gvjax.discriminator import Discriminator, DiscriminatorConfig, count_params, d_variable_shapes, minibatch_stddev
from gvjax.errors import GvjaxError


def nhwc(img):
    return np.transpose(np.asarray(img), (0, 2, 3, 1))


def setup(name):
    meta, expected = load_expected(name)
    config = d_config_from_init_kwargs(meta["D_init_kwargs"])
    variables = d_variables_from_state_dict(load_state(name, "D."), config)
    return Discriminator(config), variables, expected


def test_logits(nvidia_fixture):
    d, variables, e = setup(nvidia_fixture)
    c = jnp.asarray(e["c"]) if d.config.c_dim else None
    run = jax.jit(lambda img: d.apply(variables, img, c))
    assert_close(run(nhwc(e["d_img_real"])), e["d_logits_real"], "d_logits_real")
    assert_close(run(nhwc(e["img_const"])), e["d_logits_gen"], "d_logits_gen")


def test_param_counts_match_nvidia():
    # README of the fixtures: D has 54,889 parameters (skip/resnet), 64,520 (cond).
    for name, count in (("ada_micro_skip", 54889), ("ada_micro_resnet", 54889), ("ada_micro_cond", 64520)):
        meta, _ = load_expected(name)
        assert count_params(d_variable_shapes(d_config_from_init_kwargs(meta["D_init_kwargs"]))["params"]) == count


def test_converted_raw_network_loads_through_the_table():
    """What `gvjax convert` stores for D (raw state nested by NVIDIA's names) gives the same variables."""
    meta, e = load_expected("ada_micro_cond")
    state = load_state("ada_micro_cond", "D.")
    raw = nest(state, {k for k in state if k.endswith("resample_filter")})
    info = {"class_name": "Discriminator", "init_kwargs": meta["D_init_kwargs"], "format": "nvidia-pkl"}
    config, variables = load_discriminator(raw, info)
    assert config.c_dim == 4 and config.mapped_label_dim == 32 and config.mbstd_group_size == 4
    d = Discriminator(config)
    assert_close(d.apply(variables, nhwc(e["d_img_real"]), jnp.asarray(e["c"])), e["d_logits_real"], "d_logits_real")
    with pytest.raises(GvjaxError, match="rosinality"):
        load_discriminator(raw, {**info, "format": "rosinality-pt"})


def test_wrong_filter_or_shape_is_refused():
    meta, _ = load_expected("ada_micro_skip")
    config = d_config_from_init_kwargs(meta["D_init_kwargs"])
    state = load_state("ada_micro_skip", "D.")
    bad = dict(state, **{"b8.conv0.resample_filter": state["b8.conv0.resample_filter"] * 2})
    with pytest.raises(GvjaxError, match="FIR filter"):
        d_variables_from_state_dict(bad, config)
    bad = dict(state, **{"b8.conv0.weight": state["b8.conv0.weight"][:, :16]})
    with pytest.raises(GvjaxError, match="shape"):
        d_variables_from_state_dict(bad, config)
    with pytest.raises(GvjaxError, match="unexpected"):
        d_variables_from_state_dict(dict(state, **{"b8.torgb.weight": state["b8.conv0.weight"]}), config)
    with pytest.raises(GvjaxError, match="architecture"):
        DiscriminatorConfig(img_resolution=32, architecture="skip")


def test_minibatch_stddev_groups_follow_nvidia():
    """Example i joins group i mod (N/G); each group's feature is its mean stddev."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 3, 4)).astype(np.float32)
    y = np.asarray(minibatch_stddev(jnp.asarray(x), 4))
    assert y.shape == (8, 3, 3, 5)
    np.testing.assert_array_equal(y[..., :4], x)
    for i in range(8):
        members = x[i % 2 :: 2]  # the 4 examples of group i mod 2
        np.testing.assert_allclose(y[i, :, :, 4], np.sqrt(members.var(axis=0) + 1e-8).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        minibatch_stddev(jnp.asarray(x[:6]), 4)
