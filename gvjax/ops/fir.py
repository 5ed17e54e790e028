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


def _fir_axis(x: jnp.ndarray, taps: np.ndarray, axis: int, up: int, down: int, p0: int, p1: int) -> jnp.ndarray:
    """One axis of `upfirdn2d`: zero-stuff by `up`, pad `(p0, p1)` (negative crops), correlate with the
    static `taps`, keep every `down`-th sample. Only products with real samples are formed: with
    `up > 1` the output is computed phase by phase from the taps that meet a sample (polyphase), with
    `down > 1` only the kept outputs are computed (strided slices). The sums run over the taps in the
    same order as the plain form, which only adds the zeros it skips here, so the results agree.
    """
    n = x.shape[axis]
    t = taps.size
    length = n * up + p0 + p1 - t + 1  # outputs of the filter before the down step
    kept = -(-length // down)
    zero = jnp.zeros((), x.dtype)
    if up == 1:
        cfg = [(0, 0, 0)] * x.ndim
        cfg[axis] = (p0, p1, 0)
        xp = lax.pad(x, zero, cfg)
        out = None
        for k, tap in enumerate(taps.tolist()):
            term = lax.slice_in_dim(xp, k, k + down * (kept - 1) + 1, stride=down, axis=axis) * jnp.asarray(tap, x.dtype)
            out = term if out is None else out + term
        return out
    if down == 1:
        # y[up*j + r] = sum_k taps[k] * u[up*j + r + k], where u[m] = x[(m - p0) / up] when that is a whole index
        per_phase = -(-length // up)
        margin = t + abs(p0) + abs(p1) + up
        cfg = [(0, 0, 0)] * x.ndim
        cfg[axis] = (margin, margin + per_phase, 0)
        xp = lax.pad(x, zero, cfg)
        phases = []
        for r in range(up):
            acc = None
            for k, tap in enumerate(taps.tolist()):
                if (r + k - p0) % up:
                    continue  # this tap only ever meets inserted zeros in phase r
                first = (r + k - p0) // up + margin
                term = lax.slice_in_dim(xp, first, first + per_phase, axis=axis) * jnp.asarray(tap, x.dtype)
                acc = term if acc is None else acc + term
            if acc is None:
                shape = list(x.shape)
                shape[axis] = per_phase
                acc = jnp.zeros(shape, x.dtype)
            phases.append(acc)
        y = jnp.stack(phases, axis=axis + 1)
        shape = list(x.shape)
        shape[axis] = per_phase * up
        return lax.slice_in_dim(y.reshape(shape), 0, length, axis=axis)
    cfg = [(0, 0, 0)] * x.ndim  # both: zero-stuff, then the strided form
    cfg[axis] = (p0, p1 + up - 1, up - 1)
    return _fir_axis(lax.pad(x, zero, cfg), taps, axis, 1, down, 0, 0)


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
    """Upsample (zero insertion), pad/crop, FIR filter, downsample (NVIDIA's `upfirdn2d`).

    Args:
      x: `[..., H, W, C]`.
      f: static filter, `[fh, fw]` (2-D) or `[T]` (separable, applied along H and W).
      up, down: integer factors, the same along H and W.
      padding: `p`, `(px, py)` or `(px0, px1, py0, py1)`; negative values crop.
      flip_filter: False convolves (like NVIDIA's default), True correlates.
      gain: overall scaling; the filter is multiplied by `gain ** (f.ndim / 2)`.

    Returns:
      `[..., (H*up + py0 + py1 - fh + 1) // down, (W*up + px0 + px1 - fw + 1) // down, C]`
      (rounded up, as strided slicing does). No multiply touches an inserted zero or an output
      the down step drops (see `_fir_axis`), except for 2-D filters with `up > 1`.
    """
    f = np.asarray(f, dtype=np.float64)
    px0, px1, py0, py1 = _parse_padding(padding)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = np.flip(f)
    h_axis, w_axis = x.ndim - 3, x.ndim - 2
    if f.ndim == 1:
        return _fir_axis(_fir_axis(x, f, h_axis, up, down, py0, py1), f, w_axis, up, down, px0, px1)
    zero = jnp.zeros((), x.dtype)
    cfg = [(0, 0, 0)] * x.ndim
    cfg[h_axis] = (py0, py1 + up - 1, up - 1)
    cfg[w_axis] = (px0, px1 + up - 1, up - 1)
    x = lax.pad(x, zero, cfg)
    fh, fw = f.shape
    out_h, out_w = -(-(x.shape[h_axis] - fh + 1) // down), -(-(x.shape[w_axis] - fw + 1) // down)
    acc = None
    for i in range(fh):
        for j in range(fw):  # only the kept outputs: a strided window per tap
            window = lax.slice_in_dim(x, i, i + down * (out_h - 1) + 1, stride=down, axis=h_axis)
            window = lax.slice_in_dim(window, j, j + down * (out_w - 1) + 1, stride=down, axis=w_axis)
            term = window * jnp.asarray(f[i, j], x.dtype)
            acc = term if acc is None else acc + term
    return acc


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


def widen(x, shape: tuple[int, int]):
    """`[h, w, ...]` -> `[H, W, ...]` (H >= h, W >= w) by mirrored tiling around the centre.

    The input sits in the middle (offset `(H - h) // 2`, `(W - w) // 2`); outside it the rows and
    columns repeat as reflections (`..., 1, 0 | 0, 1, ..., w-1 | w-1, w-2, ...`), so there is
    no seam. The identity when `shape == (h, w)`. Static shapes (indices are numpy).
    """
    out = x
    for axis, (have, want) in enumerate(zip(x.shape[:2], shape)):
        if want == have:
            continue
        if want < have:
            raise ValueError(f"widen: cannot shrink axis {axis} from {have} to {want}")
        j = np.arange(want) - (want - have) // 2
        period = np.mod(j, 2 * have)
        out = jnp.take(out, np.where(period < have, period, 2 * have - 1 - period), axis=axis)
    return out
