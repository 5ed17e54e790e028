"""StyleGAN3's Fourier-feature input: the transform of its frequencies and the features themselves.

One example at a time. Coordinates follow NVIDIA's `SynthesisInput`: x along the width first,
frequencies in cycles per unit length, the image spanning `size / sampling_rate` units. A transform
is a `[3, 3]` affine matrix acting on row vectors of frequencies; NVIDIA stores the *inverse* of the
transform wanted for the image (`gen_images.py`: `inv(make_transform(translate, angle))`).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

HIGHEST = lax.Precision.HIGHEST


def make_transform(translate: Sequence[float] = (0.0, 0.0), angle=0.0) -> np.ndarray:
    """`gen_images.py`'s `make_transform`: `[[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]]`, angle in degrees.

    Vectorised: `angle` and `translate = (tx, ty)` may be arrays of one shape `[...]` (then the result
    is `[..., 3, 3]`), float64. The synthesis input takes its inverse (`np.linalg.inv(make_transform(...))`).
    """
    a = np.radians(np.asarray(angle, np.float64))
    c, s = np.cos(a), np.sin(a)
    tx, ty = (np.broadcast_to(np.asarray(v, np.float64), a.shape) for v in translate)
    zero, one = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, s, tx], -1), np.stack([-s, c, ty], -1), np.stack([zero, zero, one], -1)], -2)


def learned_transform(t: jnp.ndarray, transform: jnp.ndarray) -> jnp.ndarray:
    """`m_r @ m_t @ transform`: the affine's rotation and translation, then the user's transform.

    Args:
      t: `[4]` raw affine output `(r_c, r_s, t_x, t_y)`; normalised so that `|(r_c, r_s)| = 1`.
      transform: `[3, 3]` the user-specified inverse transform (the identity by default).

    Returns:
      `[3, 3]` float32.
    """
    t = t.astype(jnp.float32)
    t = t / jnp.sqrt(jnp.sum(jnp.square(t[:2])))
    c, s, tx, ty = t[0], t[1], t[2], t[3]
    zero, one = jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32)
    m_r = jnp.stack([jnp.stack([c, -s, zero]), jnp.stack([s, c, zero]), jnp.stack([zero, zero, one])])
    m_t = jnp.stack([jnp.stack([one, zero, -tx]), jnp.stack([zero, one, -ty]), jnp.stack([zero, zero, one])])
    return jnp.matmul(jnp.matmul(m_r, m_t, precision=HIGHEST), transform.astype(jnp.float32), precision=HIGHEST)


def fourier_features(
    freqs: jnp.ndarray,
    phases: jnp.ndarray,
    transform: jnp.ndarray,
    *,
    size: int | tuple[int, int],
    sampling_rate: float,
    bandwidth: float,
) -> jnp.ndarray:
    """`sin(2 pi (grid . f + phase)) * amplitude` on a `size x size` (or `(rows, cols)`) grid: `[rows, cols, C]` float32.

    Args:
      freqs: `[C, 2]` frequencies (x, y), cycles per unit, inside the disc of radius `bandwidth`.
      phases: `[C]` phases, in cycles.
      transform: `[3, 3]` from `learned_transform`; frequencies become `freqs @ T[:2, :2]`, phases
        gain `freqs @ T[:2, 2]`.
      size: grid side in pixels, or `(rows, cols)`; pixel `j` of an axis of `n` sits at
        `(j + 0.5 - n / 2) / sampling_rate` (the grid is centred on the origin).
      sampling_rate: pixels per unit.
      bandwidth: frequencies beyond it are damped linearly to 0 at `sampling_rate / 2`.
    """
    freqs, phases = freqs.astype(jnp.float32), phases.astype(jnp.float32)
    phases = phases + jnp.matmul(freqs, transform[:2, 2], precision=HIGHEST)
    freqs = jnp.matmul(freqs, transform[:2, :2], precision=HIGHEST)
    norm = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1))
    amplitudes = jnp.clip(1 - (norm - bandwidth) / (sampling_rate / 2 - bandwidth), 0, 1)
    rows, cols = (size, size) if isinstance(size, (int, np.integer)) else size
    grid_y = jnp.asarray((np.arange(rows) + 0.5 - rows / 2) / sampling_rate, jnp.float32)
    grid_x = jnp.asarray((np.arange(cols) + 0.5 - cols / 2) / sampling_rate, jnp.float32)
    x = grid_x[None, :, None] * freqs[None, None, :, 0] + grid_y[:, None, None] * freqs[None, None, :, 1]
    x = jnp.sin((x + phases[None, None, :]) * (2 * np.pi))
    return x * amplitudes[None, None, :]
