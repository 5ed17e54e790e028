"""Synthesis in pieces, random noise, and bfloat16 compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_expected, load_state

from gvjax.convert.nvidia import config_from_init_kwargs, variables_from_state_dict
from gvjax.model import Generator


def fixture_generator(name, **kwargs):
    meta, expected = load_expected(name)
    config = config_from_init_kwargs(meta["G_init_kwargs"])
    return Generator(config, **kwargs), variables_from_state_dict(load_state(name, "G_ema."), config), expected


def synthesize(gen, variables, ws, **kwargs):
    return gen.apply(variables, ws, method="synthesize", **kwargs)


def run_blocks(gen, variables, ws, x=None, img=None, **kwargs):
    return gen.apply(variables, ws, x, img, method="run_blocks", **kwargs)


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_split_at_every_block_equals_whole(nvidia_fixture, noise_mode):
    gen, variables, e = fixture_generator(nvidia_fixture)
    ws = jnp.asarray(e["ws"][0])
    key = jax.random.key(7) if noise_mode == "random" else None
    whole = jax.jit(lambda ws: synthesize(gen, variables, ws, noise_mode=noise_mode, noise_key=key))(ws)
    for cut in gen.config.block_resolutions[:-1]:
        @jax.jit
        def split(ws):
            x, img = run_blocks(gen, variables, ws, upto_res=cut, noise_mode=noise_mode, noise_key=key)
            assert x.shape == (cut, cut, gen.config.channels(cut))
            _, img = run_blocks(gen, variables, ws, x, img, after_res=cut, noise_mode=noise_mode, noise_key=key)
            return img

        diff = float(jnp.abs(split(ws) - whole).max())
        assert diff <= 1e-6, f"cut at {cut}: {diff}"


def test_split_lets_features_be_changed(nvidia_fixture):
    """Changing x at the cut changes the image (the resumed blocks really use the given x)."""
    gen, variables, e = fixture_generator(nvidia_fixture)
    ws = jnp.asarray(e["ws"][0])
    x, img = jax.jit(lambda ws: run_blocks(gen, variables, ws, upto_res=16))(ws)
    rest = jax.jit(lambda ws, x, img: run_blocks(gen, variables, ws, x, img, after_res=16)[1])
    a, b = rest(ws, x, img), rest(ws, jnp.flip(x, axis=1), img)
    assert float(jnp.abs(a - b).max()) > 1e-2


def _random_noise(gen, variables, ws, key):
    img, state = gen.apply(
        variables, ws, method="synthesize", noise_mode="random", noise_key=key, mutable=["intermediates"]
    )
    return img, state["intermediates"]


def _layer_noises(intermediates, params):
    """{(block, layer): unit noise [R, R]}: each layer's random noise divided by its noise_strength."""
    out = {}
    syn = intermediates["synthesis"]
    for block, layers in syn.items():
        for layer, sown in layers.items():
            strength = params["synthesis"][block][layer]["noise_strength"]
            out[(block, layer)] = np.asarray(sown["random_noise"][0]) / float(strength)
    return out


def test_random_noise_is_reproducible_and_key_dependent():
    gen, variables, e = fixture_generator("ada_micro_skip")
    ws = jnp.asarray(e["ws"][0])
    img_a, _ = _random_noise(gen, variables, ws, jax.random.key(1))
    img_a2, _ = _random_noise(gen, variables, ws, jax.random.key(1))
    img_b, _ = _random_noise(gen, variables, ws, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(img_a), np.asarray(img_a2))
    assert float(jnp.abs(img_a - img_b).mean()) > 1e-3
    const = synthesize(gen, variables, ws, noise_mode="const")
    assert float(jnp.abs(img_a - const).mean()) > 1e-3


def test_random_noise_is_standard_normal_and_independent_per_layer():
    gen, variables, e = fixture_generator("ada_micro_skip")
    ws = jnp.asarray(e["ws"][0])
    samples = []
    for seed in range(8):
        _, inter = _random_noise(gen, variables, ws, jax.random.key(seed))
        noises = _layer_noises(inter, variables["params"])
        assert len(noises) == gen.config.num_ws - 1  # one noise input per conv layer
        samples.append(noises)
    allv = np.concatenate([n.ravel() for s in samples for n in s.values()])
    n = allv.size
    assert abs(allv.mean()) < 5 / np.sqrt(n)
    assert abs(allv.std() - 1) < 5 * np.sqrt(0.5 / n)
    assert abs(np.mean(allv**4) - 3) < 0.2  # kurtosis of a normal
    # Two layers of the same resolution draw independent noise.
    a = np.concatenate([s[("b32", "conv0")].ravel() for s in samples])
    b = np.concatenate([s[("b32", "conv1")].ravel() for s in samples])
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)


def test_bfloat16_compute_keeps_float32_params_and_is_close(nvidia_fixture):
    gen32, variables, e = fixture_generator(nvidia_fixture)
    gen16, _, _ = fixture_generator(nvidia_fixture, dtype=jnp.bfloat16)
    ws = jnp.asarray(e["ws"])
    f32 = jax.jit(jax.vmap(lambda w: synthesize(gen32, variables, w)))(ws)
    bf16 = jax.jit(jax.vmap(lambda w: synthesize(gen16, variables, w)))(ws)
    assert bf16.dtype == jnp.float32  # images come back as float32
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(variables))
    peak = float(jnp.abs(f32).max())
    psnr = 10 * np.log10(peak**2 / float(jnp.mean((bf16 - f32) ** 2)))
    assert 20 < psnr < 80, psnr  # bf16 has 8 mantissa bits: close, but not float32-exact


def test_conv_clamp_bounds_every_layer():
    """conv_clamp c: SynthesisLayer outputs within c * gain, ToRGB within c; None leaves them free."""
    import dataclasses

    from gvjax.config import GeneratorConfig
    from gvjax.model import init_variables

    base = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16, architecture="resnet")
    variables = init_variables(base, jax.random.key(3))
    ws = jax.random.normal(jax.random.key(4), (base.num_ws, base.w_dim)) * 3.0

    def outputs(config):
        run = jax.jit(lambda: Generator(config).apply(variables, ws, method="synthesize", capture_intermediates=True, mutable=["intermediates"]))
        syn = run()[1]["intermediates"]["synthesis"]
        return {(b, l): np.asarray(v["__call__"][0]) for b, layers in syn.items() if b.startswith("b") for l, v in layers.items() if l in ("conv0", "conv1", "torgb", "skip")}

    free = outputs(base)
    clamp = 0.05
    clamped = outputs(dataclasses.replace(base, conv_clamp=clamp))
    assert max(np.abs(v).max() for v in free.values()) > 4 * clamp  # clamping is not a no-op here
    for (block, layer), value in clamped.items():
        if layer == "skip":  # NVIDIA's resnet skip layer has no clamp: it sees the unclamped input
            continue
        # resnet: conv1 runs with gain sqrt(0.5), so its clamp is c * sqrt(0.5)
        bound = clamp * (np.sqrt(0.5) if layer == "conv1" and block != "b4" else 1.0)
        assert np.abs(value).max() <= bound + 1e-6, (block, layer)
        assert np.abs(value).max() >= 0.5 * bound, (block, layer)  # and it is reached
    assert any(np.abs(v).max() > clamp for (b, l), v in clamped.items() if l == "skip")
