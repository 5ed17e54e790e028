"""Bias + activation with gain and clamp, NVIDIA's `bias_act` semantics."""

from __future__ import annotations

import math

import jax.numpy as jnp

# activation name -> (default gain)
ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}


def bias_act(
    x: jnp.ndarray,
    b: jnp.ndarray | None = None,
    *,
    act: str = "linear",
    alpha: float = 0.2,
    gain: float | None = None,
    clamp: float | None = None,
) -> jnp.ndarray:
    """`clamp(act(x + b) * gain)`.

    Args:
      x: `[..., C]`, channels last.
      b: `[C]` bias or None.
      act: 'linear' or 'lrelu' (leaky ReLU with slope `alpha`).
      gain: output scale; None takes the activation's default (1 or sqrt 2).
      clamp: clip the output to [-clamp, clamp]; None disables.
    """
    if act not in ACTIVATION_GAINS:
        raise ValueError(f"unknown activation {act!r}")
    if b is not None:
        x = x + jnp.reshape(b.astype(x.dtype), (1,) * (x.ndim - 1) + (-1,))
    if act == "lrelu":
        x = jnp.where(x >= 0, x, x * jnp.asarray(alpha, x.dtype))
    gain = ACTIVATION_GAINS[act] if gain is None else gain
    if gain != 1:
        x = x * jnp.asarray(gain, x.dtype)
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return x
