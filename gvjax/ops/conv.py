"""Convolutions of StyleGAN2: plain, up-sampling (transposed conv + FIR) and modulated.

One example at a time: activations are `x [H, W, C]` (channels last), weights keep
NVIDIA's `[C_out, C_in, kh, kw]` layout. Batch with `jax.vmap`: a per-example weight
(the 'grouped' modulated form) then becomes one grouped convolution, a shared weight (the
'shared' form) one dense convolution over the whole batch.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from gvjax.ops.fir import upfirdn2d

MODCONV_FORMS = ("grouped", "shared")
_DIMS = ("NHWC", "OIHW", "NHWC")


def conv2d(
    x: jnp.ndarray,
    w: jnp.ndarray,
    *,
    padding: int = 0,
    lhs_dilation: int = 1,
    stride: int = 1,
    precision=None,
) -> jnp.ndarray:
    """Cross-correlation of `x [H, W, C_in]` with `w [C_out, C_in, kh, kw]` -> `[H', W', C_out]`.

    `lhs_dilation` inserts `lhs_dilation - 1` zeros between input pixels (transposed conv);
    `stride` keeps every `stride`-th output pixel (computing only those).
    """
    y = lax.conv_general_dilated(
        x[None],
        w.astype(x.dtype),
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        lhs_dilation=(lhs_dilation, lhs_dilation),
        dimension_numbers=_DIMS,
        precision=precision,
    )
    return y[0]


def conv2d_resample(
    x: jnp.ndarray,
    w: jnp.ndarray,
    *,
    f: np.ndarray | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    precision=None,
) -> jnp.ndarray:
    """Convolution with optional FIR up- or down-sampling, NVIDIA's `conv2d_resample`.

    Args:
      x: `[H, W, C_in]`.
      w: `[C_out, C_in, k, k]`, applied as cross-correlation when `up == 1`.
      f: static FIR filter `[fh, fw]` or separable `[T]` (needed when `up > 1` or `down > 1`).
      up: 1 or an integer factor.
      down: 1 or an integer factor (not together with `up > 1`).
      padding: symmetric padding of the convolution (k // 2 keeps the size).

    Returns:
      `[H * up, W * up, C_out]`, or `[H / down, W / down, C_out]`, when `padding == k // 2`.

    With `up > 1` a k x k kernel runs as a transposed convolution (stride `up`, i.e. the
    spatially flipped kernel over the zero-dilated input) followed by the FIR filter with
    gain `up**2`; a 1x1 kernel runs first and is then FIR up-sampled. With `down > 1` the
    input is padded and FIR filtered (gain 1), then convolved with stride `down`; a 1x1
    kernel runs after the FIR down-sampling. Either way the result equals filtering the
    (padded) convolution output and keeping every `down`-th pixel.
    """
    k = w.shape[-1]
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample does not up- and down-sample at once")
    if down > 1:
        return _conv2d_down(x, w, f, down, padding, precision)
    if up == 1:
        return conv2d(x, w, padding=padding, precision=precision)
    if f is None:
        raise ValueError("up-sampling needs a FIR filter")
    fw = f.shape[-1]
    p0 = padding + (fw + up - 1) // 2
    p1 = padding + (fw - up) // 2
    if k == 1:
        y = conv2d(x, w, precision=precision)
        return upfirdn2d(y, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
    p0 -= k - 1
    p1 -= k - up
    pt = max(min(-p0, -p1), 0)
    q0, q1 = p0 + pt, p1 + pt
    if pt == 0:
        y, extra = transposed_conv2d_polyphase(x, w, up, precision=precision)
        return upfirdn2d(y, f, padding=(q0, q1 - extra, q0, q1 - extra), gain=up * up)
    y = conv2d(x, w[:, :, ::-1, ::-1], padding=k - 1 - pt, lhs_dilation=up, precision=precision)
    return upfirdn2d(y, f, padding=(q0, q1, q0, q1), gain=up * up)


def _conv2d_down(x, w, f, down, padding, precision):
    """The `down > 1` case of `conv2d_resample`: FIR filter (gain 1), then a strided conv."""
    if f is None:
        raise ValueError("down-sampling needs a FIR filter")
    fw = f.shape[-1]
    p0 = padding + (fw - down + 1) // 2
    p1 = padding + (fw - down) // 2
    if w.shape[-1] == 1:
        y = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
        return conv2d(y, w, precision=precision)
    y = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return conv2d(y, w, stride=down, precision=precision)


def transposed_conv2d_polyphase(x: jnp.ndarray, w: jnp.ndarray, up: int, *, precision=None):
    """Transposed convolution (stride `up`, no padding) as `up**2` small dense convolutions.

    `x [H, W, C_in]`, `w [C_out, C_in, k, k]` (the kernel of the equivalent up-sampling conv,
    i.e. torch's `conv_transpose2d(x, w.transpose(0, 1), stride=up)`). Output phase (r, s) holds
    the pixels `y[up*m + r, up*n + s]`, which only see kernel taps `w[..., r::up, s::up]`, so no
    multiply touches an inserted zero (a zero-dilated conv spends up**2 - 1 of every up**2 there).

    Returns `(y, extra)`: `y [L*up, L*up, C_out]` with `L = ceil(((H-1)*up + k) / up)`, whose first
    `(H-1)*up + k` rows/cols are the transposed conv and the last `extra` are zeros.
    """
    k = w.shape[-1]
    h, wd = x.shape[0], x.shape[1]
    if h != wd:
        raise ValueError(f"polyphase transposed conv expects square features, got {h}x{wd}")
    length = -(-((h - 1) * up + k) // up)
    phases = []
    for r in range(up):
        row = []
        for s in range(up):
            sub = w[:, :, r::up, s::up][:, :, ::-1, ::-1]
            taps_h, taps_w = sub.shape[2], sub.shape[3]
            xp = jnp.pad(x, ((taps_h - 1, length - h), (taps_w - 1, length - h), (0, 0)))
            phase = conv2d(xp, sub, precision=precision)
            row.append(phase[:length, :length])
        phases.append(jnp.stack(row, axis=2))  # [L, L, up(s), C]
    y = jnp.stack(phases, axis=1)  # [L, up(r), L, up(s), C]
    y = y.reshape(length * up, length * up, y.shape[-1])
    return y, length * up - ((h - 1) * up + k)


def demodulation_coefficients(weight: jnp.ndarray, styles: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """`1 / sqrt(sum_{i,kh,kw} (weight * styles_i)^2 + eps)`, `[C_out]`, from `weight [C_out, C_in, kh, kw]`, `styles [C_in]`."""
    wsq = jnp.sum(jnp.square(weight), axis=(2, 3))  # [C_out, C_in]
    return lax.rsqrt(jnp.dot(wsq, jnp.square(styles), precision=lax.Precision.HIGHEST) + eps)


def modulated_conv2d(
    x: jnp.ndarray,
    weight: jnp.ndarray,
    styles: jnp.ndarray,
    *,
    noise: jnp.ndarray | None = None,
    up: int = 1,
    padding: int = 0,
    f: np.ndarray | None = None,
    demodulate: bool = True,
    form: str = "grouped",
    precision=None,
) -> jnp.ndarray:
    """StyleGAN2's modulated (and demodulated) convolution for one example.

    Args:
      x: `[H, W, C_in]` activations.
      weight: `[C_out, C_in, k, k]` raw weight.
      styles: `[C_in]` per-input-channel scales from the affine layer.
      noise: optional `[H*up, W*up]` (broadcast over channels), added after demodulation.
      up, padding, f: as in `conv2d_resample`.
      demodulate: normalise each output channel's modulated weight to unit L2 norm (eps 1e-8).
      form: 'grouped' modulates the weight (a per-example kernel; grouped conv under vmap);
        'shared' scales x by the styles before and by the demodulation coefficients after a
        convolution with the shared weight (one dense conv under vmap). Same math.

    Returns:
      `[H*up, W*up, C_out]`.
    """
    if form not in MODCONV_FORMS:
        raise ValueError(f"unknown modulated conv form {form!r}; expected one of {MODCONV_FORMS}")
    styles = styles.astype(jnp.float32)
    weight = weight.astype(jnp.float32)
    if form == "grouped":
        w = weight * styles[None, :, None, None]
        if demodulate:
            w = w * lax.rsqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3)) + 1e-8)[:, None, None, None]
        x = conv2d_resample(x, w.astype(x.dtype), f=f, up=up, padding=padding, precision=precision)
    else:
        x = x * styles.astype(x.dtype)[None, None, :]
        x = conv2d_resample(x, weight.astype(x.dtype), f=f, up=up, padding=padding, precision=precision)
        if demodulate:
            x = x * demodulation_coefficients(weight, styles).astype(x.dtype)[None, None, :]
    if noise is not None:
        x = x + noise[:, :, None].astype(x.dtype)
    return x
