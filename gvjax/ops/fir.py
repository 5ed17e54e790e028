"""FIR filtering with up/down-sampling: `upfirdn2d`, NVIDIA's semantics, in pure jnp.

Arrays are channels-last, one example: `x [H, W, C]` (extra leading axes are allowed and
untouched). Filters are static numpy arrays, so the filter taps are unrolled into a few
shifted multiply-adds that XLA fuses into one loop.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax


def setup_filter(taps: Sequence[float], *, normalize: bool = True, separable: bool = False) -> np.ndarray:
    """FIR filter from 1-D taps.

    Returns `[T]` if `separable`, else the outer product `[T, T]`; normalised to sum 1.
    `setup_filter([1, 3, 3, 1])` equals NVIDIA's `resample_filter` buffer.
    """
    f = np.asarray(taps, dtype=np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"FIR taps must be a non-empty 1-D sequence, got shape {f.shape}")
    if not separable:
        f = np.outer(f, f)
    if normalize:
        f = f / f.sum()
    return f.astype(np.float32)


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _correlate(x: jnp.ndarray, taps: np.ndarray, axis: int) -> jnp.ndarray:
    """Valid-mode 1-D correlation of `x` with static `taps` along `axis`."""
    n = x.shape[axis] - taps.size + 1
    out = None
    for k, t in enumerate(taps.tolist()):
        term = lax.slice_in_dim(x, k, k + n, axis=axis) * jnp.asarray(t, x.dtype)
        out = term if out is None else out + term
    return out


def upfirdn2d(
    x: jnp.ndarray,
    f: np.ndarray,
    *,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> jnp.ndarray:
    """Upsample (zero insertion), pad/crop, FIR filter, downsample.

    Args:
      x: `[..., H, W, C]`.
      f: static filter, `[fh, fw]` (2-D) or `[T]` (separable, applied along H and W).
      up, down: integer factors, the same along H and W.
      padding: `p`, `(px, py)` or `(px0, px1, py0, py1)`; negative values crop.
      flip_filter: False convolves (like NVIDIA's default), True correlates.
      gain: overall scaling; the filter is multiplied by `gain ** (f.ndim / 2)`.

    Returns:
      `[..., (H*up + py0 + py1 - fh + 1) // down, (W*up + px0 + px1 - fw + 1) // down, C]`
      (rounded up, as strided slicing does).
    """
    f = np.asarray(f, dtype=np.float64)
    px0, px1, py0, py1 = _parse_padding(padding)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = np.flip(f)
    zero = jnp.zeros((), x.dtype)
    cfg = [(0, 0, 0)] * x.ndim
    cfg[-3] = (py0, py1 + up - 1, up - 1)
    cfg[-2] = (px0, px1 + up - 1, up - 1)
    x = lax.pad(x, zero, cfg)
    if f.ndim == 1:
        x = _correlate(_correlate(x, f, axis=x.ndim - 3), f, axis=x.ndim - 2)
    else:
        fh, fw = f.shape
        out_h, out_w = x.shape[-3] - fh + 1, x.shape[-2] - fw + 1
        acc = None
        for i in range(fh):
            for j in range(fw):
                window = x[..., i : i + out_h, j : j + out_w, :]
                term = window * jnp.asarray(f[i, j], x.dtype)
                acc = term if acc is None else acc + term
        x = acc
    if down > 1:
        x = x[..., ::down, ::down, :]
    return x


def upsample2d(x: jnp.ndarray, f: np.ndarray, *, up: int = 2, gain: float = 1.0) -> jnp.ndarray:
    """Upsample `[..., H, W, C]` to `[..., H*up, W*up, C]` with FIR filter `f` (NVIDIA's upsample2d)."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=gain * up * up)


def downsample2d(x: jnp.ndarray, f: np.ndarray, *, down: int = 2, gain: float = 1.0) -> jnp.ndarray:
    """Downsample `[..., H, W, C]` to `[..., H/down, W/down, C]` with FIR filter `f` (NVIDIA's downsample2d)."""
    fw = f.shape[-1]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1), gain=gain)
