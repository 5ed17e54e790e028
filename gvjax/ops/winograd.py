"""Winograd F(2x2, 3x3): a 3x3, stride-1, pad-1 convolution with 16 multiplies per 2x2 output
tile instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

One example, channels last, as the rest of `gvjax.ops`. With the interpolation points
0, 1, -1, inf the transforms only add, subtract and halve, so the result agrees with a direct
convolution to float32 rounding. The kernel transform `G g G^T` acts on each (C_in, C_out) pair
separately, so per-channel scales (modulation, demodulation) commute with it.

It pays where the channels are many and the image small: the 16 GEMMs then run near the
machine's peak while the elementwise transforms are cheap. See `gvjax.model.use_winograd` and
`benchmarks/winograd.py`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def winograd_kernel(taps: jnp.ndarray) -> jnp.ndarray:
    """`taps [3, 3, C_in, C_out]` -> `U = G g G^T` as `[4 (v: column point), 4 (u: row point), C_in, C_out]`.

    Stored column point first because that is the order `winograd_conv3x3` builds its tiles in.
    """

    def transform(g0, g1, g2):  # G @ [g0, g1, g2] along one axis
        return [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]

    by_row = [transform(r[0], r[1], r[2]) for r in transform(taps[0], taps[1], taps[2])]  # [u][v]
    return jnp.stack([jnp.stack([by_row[u][v] for u in range(4)]) for v in range(4)])


def _input_transform(a: jnp.ndarray, axis: int) -> jnp.ndarray:
    """`B^T d` for every 4-window at stride 2 along `axis`: `[..., 2n + 2, ...]` -> `[4, ..., n, ...]`."""
    n = (a.shape[axis] - 2) // 2
    even = lax.slice_in_dim(a, 0, 2 * n + 1, 2, axis)  # d0 of window i, d2 of window i - 1
    odd = lax.slice_in_dim(a, 1, 2 * n + 2, 2, axis)  # d1 of window i, d3 of window i - 1
    d0, d2 = lax.slice_in_dim(even, 0, n, axis=axis), lax.slice_in_dim(even, 1, n + 1, axis=axis)
    d1, d3 = lax.slice_in_dim(odd, 0, n, axis=axis), lax.slice_in_dim(odd, 1, n + 1, axis=axis)
    return jnp.stack([d0 - d2, d1 + d2, d2 - d1, d1 - d3])


def _output_transform(m0, m1, m2, m3):  # A^T @ [m0, m1, m2, m3] along one axis
    return [m0 + m1 + m2, m1 - m2 - m3]


def winograd_conv3x3(x: jnp.ndarray, u: jnp.ndarray, *, precision=None) -> jnp.ndarray:
    """`x [H, W, C_in]` cross-correlated with the 3x3 kernel whose transform is `u`
    (`winograd_kernel`, `[4, 4, C_in, C_out]`), zero padding 1 -> `[H, W, C_out]`."""
    h, w, c = x.shape
    th, tw = -(-h // 2), -(-w // 2)  # tiles; tile (i, j) reads padded rows 2i..2i+3, cols 2j..2j+3
    xp = jnp.pad(x, ((1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))  # [2*th + 2, 2*tw + 2, C]
    v = _input_transform(_input_transform(xp, 0), 2)  # [4 (v), 4 (u), th, tw, C]
    v = v.reshape(16, th * tw, c).astype(x.dtype)
    m = lax.dot_general(v, u.reshape(16, c, -1).astype(x.dtype), (((2,), (1,)), ((0,), (0,))), precision=precision)
    m = m.reshape(4, 4, th, tw, -1)  # [v, u, tile row, tile col, C_out]
    by_col = _output_transform(m[0], m[1], m[2], m[3])  # [j][u] over v
    y = [_output_transform(*(by_col[j][k] for k in range(4))) for j in range(2)]  # [j][i] over u
    y = jnp.stack([jnp.stack([y[j][i] for j in range(2)], axis=2) for i in range(2)], axis=1)
    # y [th, 2 (row in tile), tw, 2 (col in tile), C_out]
    return y.reshape(2 * th, 2 * tw, -1)[:h, :w]
