"""Pure ops against independent formulations and mathematical properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gvjax import ops


def reference_upfirdn2d(x, f, up, down, pad, gain):
    """Direct definition in numpy: zero-insert, pad, true 2-D convolution with f * gain, subsample."""
    px0, px1, py0, py1 = pad
    h, w, c = x.shape
    z = np.zeros((h * up, w * up, c))
    z[::up, ::up] = x
    z = np.pad(z, ((max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
    z = z[max(-py0, 0) : z.shape[0] - max(-py1, 0), max(-px0, 0) : z.shape[1] - max(-px1, 0)]
    fh, fw = f.shape
    out = np.zeros((z.shape[0] - fh + 1, z.shape[1] - fw + 1, c))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            # convolution: flip the filter
            out[i, j] = np.einsum("abc,ab->c", z[i : i + fh, j : j + fw], f[::-1, ::-1] * gain)
    return out[::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad,gain",
    [(1, 1, (1, 2, 1, 2), 1.0), (2, 1, (2, 1, 2, 1), 4.0), (1, 2, (1, 1, 1, 1), 1.0), (2, 1, (-1, 0, 1, -1), 4.0)],
)
def test_upfirdn2d_matches_direct_definition(up, down, pad, gain):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    f = rng.standard_normal((4, 3)).astype(np.float32)  # asymmetric: catches a missing flip
    ours = ops.upfirdn2d(jnp.asarray(x), f, up=up, down=down, padding=pad, gain=gain)
    np.testing.assert_allclose(np.asarray(ours), reference_upfirdn2d(x, f, up, down, pad, gain), atol=1e-5)


@pytest.mark.parametrize(
    "up,down,pad,taps",
    [(2, 1, (10, 9, 10, 9), 12), (4, 1, (3, -2, 0, 5), 7), (1, 2, (5, 6, 6, 5), 12), (1, 4, (2, -1, 3, 3), 5), (2, 2, (1, 2, 2, 1), 4), (3, 1, (-2, -1, 4, 0), 6)],
)
def test_separable_polyphase_and_strided_paths_match_direct_definition(up, down, pad, taps):
    """The separable form computes only the products that meet real samples and kept outputs: it
    must equal zero insertion, a full 2-D convolution with the outer product, and subsampling."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 7, 2)).astype(np.float32)
    f = rng.standard_normal(taps).astype(np.float32)  # asymmetric
    ours = ops.upfirdn2d(jnp.asarray(x), f, up=up, down=down, padding=pad, gain=up * up)
    expected = reference_upfirdn2d(x, np.outer(f, f), up, down, pad, up * up)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)


def test_separable_filter_equals_its_outer_product():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((8, 8, 2)).astype(np.float32))
    f1, f2 = ops.setup_filter([1, 3, 3, 1], separable=True), ops.setup_filter([1, 3, 3, 1])
    np.testing.assert_allclose(f2, np.outer(f1, f1), atol=1e-7)
    assert abs(f2.sum() - 1) < 1e-6 and f2[0, 0] == pytest.approx(1 / 64)
    a = ops.upfirdn2d(x, f1, up=2, padding=(2, 1, 2, 1), gain=4)
    b = ops.upfirdn2d(x, f2, up=2, padding=(2, 1, 2, 1), gain=4)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_upsample2d_preserves_a_constant_image():
    x = jnp.full((5, 5, 1), 0.75, jnp.float32)
    y = ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1]))
    assert y.shape == (10, 10, 1)
    np.testing.assert_allclose(np.asarray(y)[2:-2, 2:-2], 0.75, atol=1e-6)  # away from the zero border


@pytest.mark.parametrize(
    "k, taps, padding",
    [(3, [1, 3, 3, 1], 1), (3, [1, 3, 3, 1], 0), (5, [1, 1], 0), (4, [1, 2, 1], 2)],
)
def test_upsampling_conv_equals_zero_insertion_then_conv(k, taps, padding):
    """NVIDIA's fast path (transposed conv + FIR) against its generic path (FIR up, flipped-kernel conv).

    (5, [1, 1], 0) crops into the transposed conv's border, the case that rebuilds the
    flipped kernel from its polyphase pieces."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((5, 5, 4)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((3, 4, k, k)).astype(np.float32))
    f = ops.setup_filter(taps)
    fast = ops.conv2d_resample(x, w, f=f, up=2, padding=padding)
    # generic: pad = [p + (fw+up-1)//2, p + (fw-up)//2], then conv with the flipped kernel
    fw = len(taps)
    p0, p1 = padding + (fw + 1) // 2, padding + (fw - 2) // 2
    up = ops.upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4)
    generic = ops.conv2d(up, w[:, :, ::-1, ::-1])
    assert fast.shape == generic.shape
    np.testing.assert_allclose(np.asarray(fast), np.asarray(generic), atol=1e-5)


def test_arranged_kernel_is_a_permutation_of_the_weight():
    """Each polyphase piece holds w's taps r::2, s::2 flipped, in [kh, kw, C_in, C_out]; taps_sq sums w**2."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    plain = ops.arrange_kernel(jnp.asarray(w))
    np.testing.assert_array_equal(np.asarray(plain["taps"])[1, 2, 0, 2], w[2, 0, 1, 2])
    np.testing.assert_allclose(np.asarray(plain["taps_sq"]), (w**2).sum(axis=(2, 3)).T, rtol=1e-6)
    phases = ops.arrange_kernel(jnp.asarray(w), up=2)["taps"]["phases"]
    assert [[p.shape[:2] for p in row] for row in phases] == [[(2, 2), (2, 1)], [(1, 2), (1, 1)]]
    # phase (0, 0) holds taps rows/cols {0, 2}, flipped: its [0, 0] is w's tap [2, 2]
    np.testing.assert_array_equal(np.asarray(phases[0][0])[0, 0, 1, 2], w[2, 1, 2, 2])
    np.testing.assert_array_equal(np.asarray(phases[0][1])[1, 0, 1, 2], w[2, 1, 0, 1])
    np.testing.assert_array_equal(np.asarray(phases[1][1])[0, 0], w[:, :, 1, 1].T)
    assert sum(p.size for row in phases for p in row) == w.size


def reference_correlate(x, w, pad):
    """Direct definition in numpy: zero-pad `x [H, W, C_in]` by `pad`, cross-correlate with `w [O, I, k, k]`."""
    z = np.pad(x.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)))
    k = w.shape[-1]
    out = np.zeros((z.shape[0] - k + 1, z.shape[1] - k + 1, w.shape[0]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.einsum("abc,ocab->o", z[i : i + k, j : j + k], w)
    return out


@pytest.mark.parametrize("k", [1, 3])
def test_downsampling_conv_matches_direct_definition(k):
    """NVIDIA's down-sampling conv_resample (FIR first, then strided conv) against its generic form:
    pad by `k // 2 + (fw - 2 + 1) // 2`, `k // 2 + (fw - 2) // 2`, plain conv, then FIR filter and keep every 2nd pixel."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 8, 4)).astype(np.float32)
    w = rng.standard_normal((3, 4, k, k)).astype(np.float32)
    f = rng.standard_normal((4, 4)).astype(np.float32)  # asymmetric: catches a flip in either step
    ours = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), f=f, down=2, padding=k // 2)
    p = k // 2
    p0, p1 = p + (4 - 2 + 1) // 2, p + (4 - 2) // 2
    padded = np.pad(x, ((p0, p1), (p0, p1), (0, 0)))
    y = reference_correlate(padded, w, 0)
    expected = reference_upfirdn2d(y, f, 1, 2, (0, 0, 0, 0), 1.0)
    assert ours.shape == (4, 4, 3) == expected.shape
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4)


def test_downsample2d_preserves_a_constant_image():
    x = jnp.full((8, 8, 2), -0.5, jnp.float32)
    y = ops.downsample2d(x, ops.setup_filter([1, 3, 3, 1]))
    assert y.shape == (4, 4, 2)
    np.testing.assert_allclose(np.asarray(y)[1:-1, 1:-1], -0.5, atol=1e-6)  # away from the zero border


def test_bias_act_hand_computed():
    x = jnp.asarray([[-2.0, 0.5], [1.0, -0.25]])
    b = jnp.asarray([1.0, -1.0])
    np.testing.assert_allclose(
        np.asarray(ops.bias_act(x, b, act="lrelu")),
        np.sqrt(2) * np.array([[-0.2, -0.1], [2.0, -0.25]]),
        atol=1e-6,
    )
    np.testing.assert_allclose(np.asarray(ops.bias_act(x * 100, act="lrelu", clamp=5.0)).max(), 5.0)


@pytest.mark.parametrize("up", [1, 2])
def test_modconv_forms_agree_and_demodulation_normalises(up):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 6, 5)).astype(np.float32))
    weight = jnp.asarray(rng.standard_normal((4, 5, 3, 3)).astype(np.float32))
    styles = jnp.asarray(rng.uniform(0.5, 2, 5).astype(np.float32))
    noise = jnp.asarray(rng.standard_normal((6 * up, 6 * up)).astype(np.float32))
    f = ops.setup_filter([1, 3, 3, 1], separable=True)
    kw = dict(noise=noise, up=up, padding=1, f=f)
    grouped = ops.modulated_conv2d(x, weight, styles, form="grouped", **kw)
    shared = ops.modulated_conv2d(x, weight, styles, form="shared", **kw)
    np.testing.assert_allclose(np.asarray(grouped), np.asarray(shared), atol=1e-5)
    # Demodulation: scaling all styles leaves the output unchanged.
    scaled = ops.modulated_conv2d(x, weight, styles * 3.0, form="grouped", **kw)
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(grouped), atol=1e-5)
    # The modulated, demodulated kernel has unit norm per output channel.
    w = weight * styles[None, :, None, None]
    d = ops.demodulation_coefficients(weight, styles)
    np.testing.assert_allclose(np.asarray(jnp.sqrt(jnp.sum((w * d[:, None, None, None]) ** 2, axis=(1, 2, 3)))), 1, atol=1e-5)


def test_modconv_forms_batch_into_grouped_and_dense_convolutions():
    """Under vmap, 'grouped' lowers to a grouped conv and 'shared' to one dense conv."""
    x = jnp.ones((4, 8, 8, 16))
    weight = jnp.ones((16, 16, 3, 3))
    styles = jnp.ones((4, 16))

    def hlo(form):
        fn = jax.vmap(lambda x, s: ops.modulated_conv2d(x, weight, s, padding=1, form=form))
        return jax.jit(fn).lower(x, styles).as_text()

    assert "feature_group_count = 4" in hlo("grouped")
    assert "feature_group_count = 1 " in hlo("shared") and "feature_group_count = 4" not in hlo("shared")


def test_fully_connected_equalized_lr():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(8).astype(np.float32)
    w = rng.standard_normal((3, 8)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    y = ops.fully_connected(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b), weight_gain=0.01 / np.sqrt(8), bias_gain=0.01)
    np.testing.assert_allclose(np.asarray(y), (w * 0.01 / np.sqrt(8)) @ x + 0.01 * b, rtol=1e-5)
    z = ops.normalize_2nd_moment(jnp.asarray(x))
    assert float(jnp.mean(z**2)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("h, w", [(4, 4), (5, 7), (8, 6), (1, 3)])
def test_winograd_conv_equals_direct_definition(h, w):
    """F(2x2, 3x3) against the float64 definition, odd sizes included (the last tile is cropped)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((h, w, 6)).astype(np.float32)
    weight = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    taps = ops.arrange_kernel(jnp.asarray(weight), winograd=True)["taps"]
    ours = ops.conv2d_resample_arranged(jnp.asarray(x), taps, kernel_size=3, padding=1, precision="highest")
    expected = reference_correlate(x, weight, 1)
    assert ours.shape == expected.shape == (h, w, 5)
    # float32 rounding of sums of 54 products of size ~1: direct convs land within ~1e-5 too
    np.testing.assert_allclose(np.asarray(ours), expected, atol=2e-5)


def test_winograd_kernel_hand_computed():
    """U = G g G^T for one (C_in, C_out) pair: corner U[0, 0] = g[0, 0]; U[1, 1] = sum(g) / 4."""
    g = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    u = np.asarray(ops.arrange_kernel(jnp.asarray(g), winograd=True)["taps"]["winograd"])[:, :, 0, 0]
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    np.testing.assert_allclose(u, (G @ g[0, 0] @ G.T).T, atol=1e-6)  # stored [column point, row point]
    assert u[0, 0] == 0 and u[1, 1] == pytest.approx(36 / 4) and u[3, 3] == 8


@pytest.mark.parametrize("form", ["grouped", "shared"])
def test_winograd_modulated_conv_and_its_gradient_match_direct(form):
    """Modulation and demodulation scale the transformed kernel like the taps; training differentiates through it."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((6, 6, 5)).astype(np.float32))
    weight = jnp.asarray(rng.standard_normal((4, 5, 3, 3)).astype(np.float32))
    styles = jnp.asarray(rng.uniform(0.5, 2, 5).astype(np.float32))

    def loss(weight, styles, winograd):
        kernel = ops.arrange_kernel(weight, winograd=winograd)
        y = ops.modulated_conv2d(x, weight, styles, padding=1, form=form, kernel=kernel, precision="highest")
        return jnp.sum(jnp.sin(y))

    for argnum in (0, 1):
        direct = jax.grad(loss, argnum)(weight, styles, False)
        winograd = jax.grad(loss, argnum)(weight, styles, True)
        np.testing.assert_allclose(np.asarray(winograd), np.asarray(direct), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(loss(weight, styles, True)), float(loss(weight, styles, False)), rtol=1e-5)
