"""Fully connected layer with equalized learning rate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from gvjax.ops.bias_act import bias_act


def fully_connected(
    x: jnp.ndarray,
    weight: jnp.ndarray,
    bias: jnp.ndarray | None,
    *,
    weight_gain: float,
    bias_gain: float = 1.0,
    act: str = "linear",
    precision=lax.Precision.HIGHEST,
) -> jnp.ndarray:
    """`act(x @ (weight * weight_gain).T + bias * bias_gain)`.

    Args:
      x: `[in_features]`.
      weight: `[out_features, in_features]` raw (un-scaled) weight.
      bias: `[out_features]` raw bias, or None.
      weight_gain: runtime scale, `lr_multiplier / sqrt(in_features)`.
      bias_gain: runtime scale of the bias, `lr_multiplier`.
    """
    y = jnp.dot(weight * weight_gain, x, precision=precision)
    b = None if bias is None else bias * bias_gain
    return bias_act(y, b, act=act)


def normalize_2nd_moment(x: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """`x / sqrt(mean(x^2) + eps)` over the last axis."""
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def normal_init(shape: tuple[int, ...], scale: float = 1.0):
    """A Flax initializer: `key -> N(0, 1) * scale` float32 of `shape` (equalized-lr weights are
    stored at unit variance times 1 / lr_multiplier and scaled at run time)."""
    return lambda key: jax.random.normal(key, shape, jnp.float32) * scale
