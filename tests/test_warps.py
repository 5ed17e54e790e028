"""Feature warps: identities, hand-computed cases, slit-scan across batches, compile count, audio drive."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gvjax import warps as W
from gvjax.errors import GvjaxError

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((16, 16, 5)).astype(np.float32))
MASK = np.array([1, 0, 1, 0, 1], np.float32)


def every_warp():
    for kind in W.WARP_PARAMS:
        if kind == "slitscan":
            continue
        params = {"fraction": 0.5} if kind == "channels" else {}
        yield W.WarpSpec.make(kind, 16, **params)


@pytest.mark.parametrize("spec", list(every_warp()), ids=lambda s: s.kind)
@pytest.mark.parametrize("boundary", W.BOUNDARIES)
def test_strength_zero_is_identity(spec, boundary):
    spec = W.WarpSpec(spec.kind, spec.resolution, spec.params, boundary)
    out = W.apply_warp(spec, X, jnp.float32(0.0), jnp.float32(1.3), MASK)
    assert float(jnp.abs(out - X).max()) <= 1e-6
    moved = W.apply_warp(spec, X, jnp.float32(0.7), jnp.float32(1.3), MASK)
    assert float(jnp.abs(moved - X).max()) > 1e-3  # and it does something at strength 0.7


@pytest.mark.parametrize("spec", list(every_warp()), ids=lambda s: s.kind)
def test_warps_jit_vmap_and_differentiate(spec):
    fn = jax.jit(jax.vmap(lambda x, s: W.apply_warp(spec, x, s, jnp.float32(0.5), MASK)))
    out = fn(jnp.stack([X, X]), jnp.asarray([0.0, 0.5], jnp.float32))
    assert out.shape == (2,) + X.shape
    g = jax.grad(lambda s: jnp.sum(W.apply_warp(spec, X, s, jnp.float32(0.5), MASK) ** 2))(jnp.float32(0.3))
    assert np.isfinite(float(g))


def test_rotate_360_is_close_to_identity_and_90_is_rot90():
    full = W.rotate(X, jnp.float32(1.0), degrees=360.0)
    assert float(jnp.abs(full - X).max()) < 1e-3
    quarter = W.rotate(X, jnp.float32(1.0), degrees=90.0)
    # rotating a square by 90 degrees about its centre is an exact pixel permutation: rot90
    candidates = [float(jnp.abs(quarter - jnp.rot90(X, k=k, axes=(0, 1))).max()) for k in (1, -1)]
    assert min(candidates) < 1e-4, candidates


def test_strips_with_one_strip_equal_translate():
    for boundary in W.BOUNDARIES:
        a = W.strips(X, jnp.float32(0.6), count=1, shift=0.25, boundary=boundary)
        b = W.translate(X, jnp.float32(0.6), dx=0.0, dy=0.25, boundary=boundary)
        assert float(jnp.abs(a - b).max()) <= 1e-6


def test_translate_one_pixel_wrap_is_roll():
    out = W.translate(X, jnp.float32(1.0), dx=1 / 16, dy=0.0, boundary="wrap")
    np.testing.assert_allclose(np.asarray(out), np.roll(np.asarray(X), 1, axis=1), atol=1e-6)


def test_zoom_factor_one_is_identity_and_flip_full_is_flip():
    assert float(jnp.abs(W.zoom(X, jnp.float32(0.8), factor=1.0) - X).max()) <= 1e-6
    np.testing.assert_allclose(np.asarray(W.flip(X, jnp.float32(1.0))), np.asarray(X)[:, ::-1], atol=1e-6)


def test_channel_ops_touch_only_the_mask():
    for op in W.CHANNEL_OPS:
        out = np.asarray(W.channel_op(X, jnp.float32(1.0), MASK, op=op, factor=3.0))
        np.testing.assert_array_equal(out[..., MASK == 0], np.asarray(X)[..., MASK == 0])
    inv = np.asarray(W.channel_op(X, jnp.float32(1.0), MASK, op="invert"))
    np.testing.assert_allclose(inv[..., 0], -np.asarray(X)[..., 0], atol=1e-6)


def test_channel_masks_and_clusters():
    assert W.channel_mask(6, channels=(1, 4)).tolist() == [0, 1, 0, 0, 1, 0]
    assert W.channel_mask(10, fraction=0.3, seed=1).sum() == 3
    # two groups of channels that co-vary: k-means separates them
    base = RNG.standard_normal((4, 8, 8, 2))
    feats = np.concatenate([base[..., :1] + 0.01 * RNG.standard_normal((4, 8, 8, 3)), base[..., 1:] + 0.01 * RNG.standard_normal((4, 8, 8, 3))], axis=-1)
    labels = W.cluster_channels(feats, 2, seed=0)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]


def test_slitscan_rows_come_from_the_past():
    frames = jnp.asarray(np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((10, 5, 3, 2), np.float32))
    hist = W.slitscan_history(frames[0], 4)
    out, new_hist = W.slitscan_batch(frames, jnp.ones(10), hist, delay=4)
    # frame 9, row i comes from frame 9 - 4 * i / 4 = 9 - i; frame 2, row 4 from frame max(2 - 4, 0) = 0
    np.testing.assert_allclose(np.asarray(out[9, :, 0, 0]), [9, 8, 7, 6, 5])
    np.testing.assert_allclose(np.asarray(out[2, :, 0, 0]), [2, 1, 0, 0, 0])
    np.testing.assert_allclose(np.asarray(new_hist[:, 0, 0, 0]), [6, 7, 8, 9])
    same, _ = W.slitscan_batch(frames, jnp.zeros(10), hist, delay=4)
    assert float(jnp.abs(same - frames).max()) == 0.0


def test_unknown_warp_and_parameter_are_refused():
    with pytest.raises(GvjaxError, match="unknown warp"):
        W.WarpSpec.make("melt", 16)
    with pytest.raises(GvjaxError, match="no parameter 'angle'"):
        W.WarpSpec.make("rotate", 16, angle=3)
