"""StyleGAN3's filtered leaky ReLU and the lowpass filters it applies, in pure jnp / numpy.

`filtered_lrelu` follows NVIDIA's reference path (`_filtered_lrelu_ref`): bias, upsample with a FIR
filter, leaky ReLU with gain, clamp, FIR filter and downsample. It is `bias_act` and `upfirdn2d`
composed, so it runs on one example `x [H, W, C]` (channels last) and batches with `jax.vmap`.

`design_lowpass_filter` designs the filters as the stylegan3 repository does at construction time
(`scipy.signal.firwin` with a Kaiser window; for R a radially symmetric jinc times a Kaiser window),
here in numpy alone: Kaiser window (`np.kaiser`), Kaiser's beta and attenuation formulas, and the
Bessel function J1 by its integral. Filters are static numpy float32 arrays.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from gvjax.ops.bias_act import bias_act
from gvjax.ops.fir import upfirdn2d

SQRT_2 = math.sqrt(2.0)

# --- filter design -------------------------------------------------------------------------------


def kaiser_attenuation(numtaps: int, width: float) -> float:
    """Attenuation (dB) of a Kaiser FIR filter of `numtaps` taps and transition `width` (fraction of Nyquist)."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(attenuation: float) -> float:
    """Kaiser window beta for a stopband `attenuation` in dB (Kaiser's empirical formula)."""
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation > 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def bessel_j1(x: np.ndarray, points: int = 256) -> np.ndarray:
    """Bessel function of the first kind of order 1, float64, for |x| < 150.

    `J1(x) = 1/(2 pi) * integral over one period of cos(t - x sin t) dt`, by the trapezoidal rule
    on `points` samples: exact to rounding for a periodic analytic integrand once `points` exceeds
    |x| by a margin (the aliasing terms are J_{1 +- k*points}(x)).
    """
    x = np.asarray(x, np.float64)
    if np.any(np.abs(x) >= 150):
        raise ValueError("bessel_j1 is accurate for |x| < 150")
    t = 2 * np.pi * np.arange(points) / points
    return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> np.ndarray | None:
    """Lowpass FIR taps as NVIDIA's `SynthesisLayer.design_lowpass_filter` designs them (float32).

    Args:
      numtaps: filter length; 1 means no filter (returns None).
      cutoff: cutoff frequency, in the units of `fs` (cycles per unit length).
      width: transition band width (twice the half-width), same units.
      fs: sampling rate.
      radial: a radially symmetric 2-D filter (jinc times a separable Kaiser window), else 1-D.

    Returns:
      None, `[numtaps]` (separable, equal to `scipy.signal.firwin(numtaps, cutoff, width=width,
      fs=fs)`: windowed sinc normalised to unit DC gain) or `[numtaps, numtaps]` (radial, sum 1).
    """
    if numtaps < 1:
        raise ValueError(f"a filter needs at least one tap, got {numtaps}")
    if numtaps == 1:
        return None
    beta = kaiser_beta(kaiser_attenuation(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        rel = cutoff / (fs / 2)  # cutoff relative to Nyquist
        f = rel * np.sinc(rel * m) * window
        return (f / f.sum()).astype(np.float32)
    if numtaps % 2:
        raise ValueError("a radial filter needs an even number of taps (r = 0 is not sampled)")
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = bessel_j1(2 * cutoff * np.pi * r) / (np.pi * r) * np.outer(window, window)
    return (f / f.sum()).astype(np.float32)


# --- the activation ------------------------------------------------------------------------------


def filtered_lrelu(
    x: jnp.ndarray,
    fu: np.ndarray | None,
    fd: np.ndarray | None,
    b: jnp.ndarray | None = None,
    *,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = SQRT_2,
    slope: float = 0.2,
    clamp: float | None = None,
) -> jnp.ndarray:
    """Bias, upsample, leaky ReLU, clamp, downsample: NVIDIA's `filtered_lrelu` (reference path).

    Args:
      x: `[H, W, C]` (extra leading axes allowed).
      fu: static upsampling filter, `[T]` (separable) or `[T, T]`, or None (no filter).
      fd: static downsampling filter, `[T]` or `[T, T]` (R's radial ones), or None.
      b: `[C]` bias, added before upsampling, or None.
      up: zeros inserted: `up - 1` after every sample; the up filter runs with gain `up**2`.
      down: every `down`-th sample of the down-filtered signal is kept, starting at 0.
      padding: `(x0, x1, y0, y1)` (or `p`, `(px, py)`) applied to the upsampled signal; negative crops.
      gain, slope: the activation is `where(v >= 0, v, slope * v) * gain` (slope 1: linear).
      clamp: clip the activation to [-clamp, clamp]; None disables.

    Returns:
      `[(H*up + y0 + y1 - (fu_h - 1) - (fd_h - 1) + down - 1) // down, (likewise along W), C]`,
      in x's dtype. The arithmetic runs in float32 whatever x's dtype (a bfloat16 sum over a radial
      filter's 144 taps would lose several percent); the casts fuse with the filter loops.
    """
    dtype, one = x.dtype, np.ones((1, 1), np.float32)
    x = bias_act(x.astype(jnp.float32), b)
    if fu is not None or up > 1 or any(np.atleast_1d(padding)):
        x = upfirdn2d(x, one if fu is None else fu, up=up, padding=padding, gain=up * up)
    x = bias_act(x, act="linear" if slope == 1 else "lrelu", alpha=slope, gain=gain, clamp=clamp)
    if fd is not None or down > 1:
        x = upfirdn2d(x, one if fd is None else fd, down=down)
    return x.astype(dtype)
