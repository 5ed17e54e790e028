"""Convolutions of StyleGAN2: plain, up-sampling (transposed conv + FIR) and modulated.

One example at a time: activations are `x [H, W, C]` (channels last). Parameters keep
NVIDIA's weight layout `[C_out, C_in, kh, kw]`; the convolutions read an *arranged kernel*
(`arrange_kernel`): the same taps transposed to `[kh, kw, C_in, C_out]` (the layout XLA's
convolution wants), split into polyphase kernels for up-sampling, plus the per-tap sums of
squares that demodulation needs. Arranging is a pure function of the weight: in training it
runs inside the step (and gradients flow through it); for inference it runs once per model
(`gvjax.model.with_arranged_kernels`) instead of once per call.

Batch with `jax.vmap`: a per-example kernel (the 'grouped' modulated form) then becomes one
grouped convolution, a shared kernel (the 'shared' form) one dense convolution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gvjax.ops.fir import upfirdn2d
from gvjax.ops.winograd import winograd_conv3x3, winograd_kernel

MODCONV_FORMS = ("grouped", "shared")
_DIMS = ("NHWC", "HWIO", "NHWC")

ArrangedKernel = dict  # {'taps': [kh, kw, C_in, C_out] | {'winograd': ...} | {'phases': ...}, 'taps_sq': [C_in, C_out]}


def _conv(x, kernel, *, padding=0, lhs_dilation=1, stride=1, precision=None):
    """`x [H, W, C_in]` cross-correlated with `kernel [kh, kw, C_in, C_out]` -> `[H', W', C_out]`.

    A plain 1x1 kernel runs as a matmul over the channels: the same sums, and on XLA's CPU
    backend 6-10x faster than a convolution when C_out is small (ToRGB's 3 channels).
    """
    if kernel.shape[:2] == (1, 1) and padding == 0 and lhs_dilation == 1 and stride == 1:
        return lax.dot_general(x, kernel[0, 0].astype(x.dtype), (((2,), (0,)), ((), ())), precision=precision)
    y = lax.conv_general_dilated(
        x[None],
        kernel.astype(x.dtype),
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        lhs_dilation=(lhs_dilation, lhs_dilation),
        dimension_numbers=_DIMS,
        precision=precision,
    )
    return y[0]


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
    return _conv(
        x, jnp.transpose(w, (2, 3, 1, 0)), padding=padding, lhs_dilation=lhs_dilation, stride=stride, precision=precision
    )


def arrange_kernel(w: jnp.ndarray, *, up: int = 1, winograd: bool = False) -> ArrangedKernel:
    """The arrays a convolution with `w [C_out, C_in, k, k]` (and optional `up`-sampling) reads.

    Returns `{'taps': ..., 'taps_sq': [C_in, C_out]}` where `taps_sq` sums `w**2` over the
    k x k taps (for demodulation) and `taps` is
      - `[k, k, C_in, C_out]` when `up == 1` or `k == 1`;
      - `{'winograd': [4, 4, C_in, C_out]}` (`ops.winograd.winograd_kernel`) when `winograd`
        (3x3, `up == 1` only; the conv must use padding 1);
      - else the `up**2` polyphase kernels of the transposed convolution,
        `{'phases': [[r0s0, r0s1, ...], ...]}`, phase (r, s) being `w[..., r::up, s::up]`
        spatially flipped, `[ceil((k-r)/up), ceil((k-s)/up), C_in, C_out]`.
    Each is linear in `w` per (C_in, C_out) pair, so scaling `C_in` or `C_out` commutes with it.
    """
    k = w.shape[-1]
    taps_sq = sum_of_squares_over_taps(w)
    if winograd:
        if k != 3 or up != 1:
            raise ValueError(f"Winograd F(2x2, 3x3) needs a 3x3 kernel without resampling, got {k}x{k}, up={up}")
        return {"taps": {"winograd": winograd_kernel(jnp.transpose(w, (2, 3, 1, 0)))}, "taps_sq": taps_sq}
    if up == 1 or k == 1:
        return {"taps": jnp.transpose(w, (2, 3, 1, 0)), "taps_sq": taps_sq}
    phases = [
        [jnp.transpose(w[:, :, r::up, s::up][:, :, ::-1, ::-1], (2, 3, 1, 0)) for s in range(up)] for r in range(up)
    ]
    return {"taps": {"phases": phases}, "taps_sq": taps_sq}


def sum_of_squares_over_taps(w: jnp.ndarray) -> jnp.ndarray:
    """`sum_{kh, kw} w**2` of `w [C_out, C_in, kh, kw]`, as `[C_in, C_out]` float32 (demodulation's input)."""
    return jnp.transpose(jnp.sum(jnp.square(w.astype(jnp.float32)), axis=(2, 3)))


def scale_kernel(taps, in_scale: jnp.ndarray | None = None, out_scale: jnp.ndarray | None = None):
    """Arranged `taps` (any of `arrange_kernel`'s forms) times `in_scale [C_in]` and `out_scale [C_out]`."""

    def scale(t):
        if in_scale is not None:
            t = t * in_scale.astype(t.dtype)[None, None, :, None]
        if out_scale is not None:
            t = t * out_scale.astype(t.dtype)[None, None, None, :]
        return t

    return jax.tree.map(scale, taps)


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
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample does not up- and down-sample at once")
    if down > 1:
        return _conv2d_down(x, w, f, down, padding, precision)
    taps = arrange_kernel(w, up=up)["taps"]
    return conv2d_resample_arranged(x, taps, kernel_size=w.shape[-1], f=f, up=up, padding=padding, precision=precision)


def conv2d_resample_arranged(
    x: jnp.ndarray,
    taps,
    *,
    kernel_size: int,
    f: np.ndarray | None = None,
    up: int = 1,
    padding: int = 0,
    precision=None,
) -> jnp.ndarray:
    """`conv2d_resample` (no down-sampling) with the kernel already arranged: `taps` is
    `arrange_kernel(w, up=up)['taps']` for a `w [C_out, C_in, kernel_size, kernel_size]`."""
    k = kernel_size
    if isinstance(taps, dict) and "winograd" in taps:
        if up != 1 or padding != 1:
            raise ValueError(f"a Winograd kernel runs a 3x3 conv with padding 1, not up={up}, padding={padding}")
        return winograd_conv3x3(x, taps["winograd"], precision=precision)
    if up == 1:
        return _conv(x, taps, padding=padding, precision=precision)
    if f is None:
        raise ValueError("up-sampling needs a FIR filter")
    fw = f.shape[-1]
    p0 = padding + (fw + up - 1) // 2
    p1 = padding + (fw - up) // 2
    if k == 1:
        y = _conv(x, taps, precision=precision)
        return upfirdn2d(y, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
    p0 -= k - 1
    p1 -= k - up
    pt = max(min(-p0, -p1), 0)
    q0, q1 = p0 + pt, p1 + pt
    if pt == 0:
        y, extra = transposed_conv2d_polyphase(x, taps["phases"], up, k, precision=precision)
        return upfirdn2d(y, f, padding=(q0, q1 - extra, q0, q1 - extra), gain=up * up)
    # Padding this large crops into the transposed conv's border: use the zero-dilated form.
    flipped = _unphase(taps["phases"], up, k)
    y = _conv(x, flipped, padding=k - 1 - pt, lhs_dilation=up, precision=precision)
    return upfirdn2d(y, f, padding=(q0, q1, q0, q1), gain=up * up)


def _unphase(phases, up, k):
    """The flipped `[k, k, C_in, C_out]` kernel back from its polyphase pieces."""
    c_in, c_out = phases[0][0].shape[-2:]
    flipped = jnp.zeros((k, k, c_in, c_out), phases[0][0].dtype)
    for r in range(up):
        for s in range(up):
            # phase (r, s) = w[r::up, s::up] flipped; w's tap (r + up*i) is flipped tap k-1-r-up*i
            rows = (k - 1 - r - up * np.arange(phases[r][s].shape[0]))[::-1]
            cols = (k - 1 - s - up * np.arange(phases[r][s].shape[1]))[::-1]
            flipped = flipped.at[np.ix_(rows, cols)].set(phases[r][s])
    return flipped


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


def transposed_conv2d_polyphase(x: jnp.ndarray, phases, up: int, k: int, *, precision=None):
    """Transposed convolution (stride `up`, no padding) as `up**2` small dense convolutions.

    `x [H, W, C_in]`; `phases` is `arrange_kernel(w, up=up)['taps']['phases']` for the kernel
    `w [C_out, C_in, k, k]` of the equivalent up-sampling conv (torch's
    `conv_transpose2d(x, w.transpose(0, 1), stride=up)`). Output phase (r, s) holds the pixels
    `y[up*m + r, up*n + s]`, which only see the taps `w[..., r::up, s::up]`, so no multiply
    touches an inserted zero (a zero-dilated conv spends up**2 - 1 of every up**2 there).

    Returns `(y, extra)`: `y [Lh*up, Lw*up, C_out]` with `Lh = ceil(((H-1)*up + k) / up)` (and Lw
    from W), whose first `(H-1)*up + k` rows (`(W-1)*up + k` cols) are the transposed conv and the
    last `extra` rows and cols are zeros (`extra = ceil(k / up) * up - k`, the same for both).
    """
    h, wd = x.shape[0], x.shape[1]
    len_h, len_w = -(-((h - 1) * up + k) // up), -(-((wd - 1) * up + k) // up)
    rows = []
    for r in range(up):
        row = []
        for s in range(up):
            sub = phases[r][s]
            taps_h, taps_w = sub.shape[0], sub.shape[1]
            xp = jnp.pad(x, ((taps_h - 1, len_h - h), (taps_w - 1, len_w - wd), (0, 0)))
            row.append(_conv(xp, sub, precision=precision)[:len_h, :len_w])
        rows.append(jnp.stack(row, axis=2))  # [Lh, Lw, up(s), C]
    y = jnp.stack(rows, axis=1)  # [Lh, up(r), Lw, up(s), C]
    y = y.reshape(len_h * up, len_w * up, y.shape[-1])
    return y, len_h * up - ((h - 1) * up + k)


def demodulation_coefficients(weight: jnp.ndarray, styles: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """`1 / sqrt(sum_{i,kh,kw} (weight * styles_i)^2 + eps)`, `[C_out]`, from `weight [C_out, C_in, kh, kw]`, `styles [C_in]`."""
    return demodulation_from_taps_sq(sum_of_squares_over_taps(weight), styles, eps)


def demodulation_from_taps_sq(taps_sq: jnp.ndarray, styles: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """Demodulation coefficients `[C_out]` from `taps_sq [C_in, C_out]` (sum of w**2 over taps) and `styles [C_in]`."""
    return lax.rsqrt(jnp.dot(jnp.square(styles), taps_sq, precision=lax.Precision.HIGHEST) + eps)


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
    kernel: ArrangedKernel | None = None,
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
      form: 'grouped' modulates the kernel (a per-example kernel; grouped conv under vmap);
        'shared' scales x by the styles before and by the demodulation coefficients after a
        convolution with the shared kernel (one dense conv under vmap). Same math.
      kernel: `arrange_kernel(weight, up=up)`, precomputed; arranged here when None.

    Returns:
      `[H*up, W*up, C_out]`.
    """
    if form not in MODCONV_FORMS:
        raise ValueError(f"unknown modulated conv form {form!r}; expected one of {MODCONV_FORMS}")
    if kernel is None:
        kernel = arrange_kernel(weight.astype(jnp.float32), up=up)
    styles = styles.astype(jnp.float32)
    demod = demodulation_from_taps_sq(kernel["taps_sq"], styles) if demodulate else None
    conv = dict(kernel_size=weight.shape[-1], f=f, up=up, padding=padding, precision=precision)
    if form == "grouped":
        taps = scale_kernel(kernel["taps"], styles, demod)
        x = conv2d_resample_arranged(x, jax.tree.map(lambda t: t.astype(x.dtype), taps), **conv)
    else:
        x = x * styles.astype(x.dtype)[None, None, :]
        x = conv2d_resample_arranged(x, kernel["taps"], **conv)
        if demodulate:
            x = x * demod.astype(x.dtype)[None, None, :]
    if noise is not None:
        x = x + noise[:, :, None].astype(x.dtype)
    return x
