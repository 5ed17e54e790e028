"""Winograd F(2x2, 3x3): a 3x3, stride-1, pad-1 convolution with 16 multiplies per 2x2 output
tile instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

One example, channels last, as the rest of `gvjax.ops`. The kernel transform `G g G^T` is linear
in the taps and acts on each (C_in, C_out) pair separately, so per-channel scales (modulation,
demodulation) commute with it. Its error is float32 rounding (the transforms only add, subtract
and halve). It pays where the channel count is large and the image small (the elementwise
transforms cost memory passes, the 2.25x fewer multiplies save compute); see
`gvjax.model.use_winograd`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def winograd_kernel(taps: jnp.ndarray) -> jnp.ndarray:
    """`taps [3, 3, C_in, C_out]` -> `U = G g G^T`, `[4, 4, C_in, C_out]` (points 0, 1, -1, inf)."""

    def transform(g0, g1, g2):  # G @ [g0, g1, g2] along one axis
        return [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]

    rows = transform(taps[0], taps[1], taps[2])  # 4 x [3, C_in, C_out]
    return jnp.stack([jnp.stack(transform(r[0], r[1], r[2])) for r in rows])


def _input_transform(d0, d1, d2, d3):  # B^T @ [d0, d1, d2, d3] along one axis
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def winograd_conv3x3(x: jnp.ndarray, u: jnp.ndarray, *, precision=None) -> jnp.ndarray:
    """`x [H, W, C_in]` cross-correlated with the 3x3 kernel whose transform is `u`
    (`winograd_kernel`, `[4, 4, C_in, C_out]`), zero padding 1 -> `[H, W, C_out]`."""
    h, w, c = x.shape
    th, tw = -(-h // 2), -(-w // 2)
    xp = jnp.pad(x, ((1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))  # [2*th + 2, 2*tw + 2, C]
    # Input tile (i, j) covers rows 2i..2i+3, cols 2j..2j+3.
    rows = [xp[k : k + 2 * th : 2] for k in range(4)]  # 4 x [th, 2*tw + 2, C]
    v = []
    for r in _input_transform(*rows):
        cols = [r[:, k : k + 2 * tw : 2] for k in range(4)]  # 4 x [th, tw, C]
        v.extend(_input_transform(*cols))
    v = jnp.stack(v).reshape(16, th * tw, c).astype(x.dtype)
    m = lax.dot_general(v, u.reshape(16, c, -1).astype(x.dtype), (((2,), (1,)), ((0,), (0,))), precision=precision)
    m = m.reshape(4, 4, th, tw, -1)  # [u, v, tile row, tile col, C_out]

    def output_transform(m0, m1, m2, m3):  # A^T @ [m0, m1, m2, m3] along one axis
        return [m0 + m1 + m2, m1 - m2 - m3]

    t = output_transform(m[0], m[1], m[2], m[3])  # 2 x [4(v), th, tw, C_out]
    y = jnp.stack([jnp.stack(output_transform(ti[0], ti[1], ti[2], ti[3]), axis=2) for ti in t], axis=1)
    # y [th, 2(row in tile), tw, 2(col in tile), C_out]
    return y.reshape(2 * th, 2 * tw, -1)[:h, :w]
