"""Differentiable augmentation with ADA's adaptive probability, for everything D sees.

Pure functions of one image `[H, W, C]` (values about [-1, 1]) and an explicit key; batch
with `jax.vmap` over keys. Each augmentation fires independently with probability `p`, and
its parameters follow NVIDIA's ADA pipeline (training/augment.py):

* 'xflip': mirror left-right with probability 1/2;
* 'translate': integer shift by `round(u * size)`, u ~ U(-0.125, 0.125) per axis, reflect padding;
* 'color': brightness `+ N(0, 0.2)`, contrast `* 2^N(0, 0.5)`, saturation `2^N(0, 1)` about the
  luma axis (three independent draws, each with probability p);
* 'cutout': zero a square of half the image's side at a uniform centre.

Every output is a differentiable function of the input image (flips, slices and affine
colour maps), so gradients reach G through it, and R1 is taken w.r.t. the un-augmented reals.

`blur` is the blur fade-in of StyleGAN3-R training (applied before the augmentations).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

AUGMENTS = ("xflip", "translate", "color", "cutout")
XINT_MAX = 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0
CUTOUT_SIZE = 0.5


def _fires(key, p) -> jnp.ndarray:
    return jax.random.uniform(key, ()) < p


def xflip(img: jnp.ndarray, key: jax.Array, p) -> jnp.ndarray:
    """Mirror `img [H, W, C]` left-right with probability p / 2."""
    k1, k2 = jax.random.split(key)
    flip = _fires(k1, p) & (jax.random.uniform(k2, ()) < 0.5)
    return jnp.where(flip, img[:, ::-1], img)


def translate(img: jnp.ndarray, key: jax.Array, p) -> jnp.ndarray:
    """Shift `img [H, W, C]` by whole pixels (up to 1/8 of its size), reflecting at the borders."""
    h, w, _ = img.shape
    k1, k2 = jax.random.split(key)
    u = jax.random.uniform(k2, (2,), minval=-XINT_MAX, maxval=XINT_MAX)
    u = jnp.where(_fires(k1, p), u, 0.0)
    ty, tx = jnp.round(u[0] * h).astype(jnp.int32), jnp.round(u[1] * w).astype(jnp.int32)
    py, px = int(h * XINT_MAX + 1), int(w * XINT_MAX + 1)
    padded = jnp.pad(img, ((py, py), (px, px), (0, 0)), mode="reflect")
    return lax.dynamic_slice(padded, (py - ty, px - tx, jnp.int32(0)), img.shape)


def color(img: jnp.ndarray, key: jax.Array, p) -> jnp.ndarray:
    """Brightness, contrast and (for RGB) saturation, each with probability p."""
    kb, kbp, kc, kcp, ks, ksp = jax.random.split(key, 6)
    img = jnp.where(_fires(kbp, p), img + jax.random.normal(kb, ()) * BRIGHTNESS_STD, img)
    img = jnp.where(_fires(kcp, p), img * jnp.exp2(jax.random.normal(kc, ()) * CONTRAST_STD), img)
    if img.shape[-1] == 3:
        s = jnp.exp2(jax.random.normal(ks, ()) * SATURATION_STD)
        luma = jnp.mean(img, axis=-1, keepdims=True)  # projection on the axis (1, 1, 1) / sqrt(3)
        img = jnp.where(_fires(ksp, p), luma + (img - luma) * s, img)
    return img


def cutout(img: jnp.ndarray, key: jax.Array, p) -> jnp.ndarray:
    """Zero a square of side `CUTOUT_SIZE * size` centred uniformly in the image, with probability p."""
    h, w, _ = img.shape
    k1, k2 = jax.random.split(key)
    size = jnp.where(_fires(k1, p), CUTOUT_SIZE, 0.0)
    centre = jax.random.uniform(k2, (2,))
    ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
    xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
    keep_y = jnp.abs(ys - centre[0]) >= size / 2
    keep_x = jnp.abs(xs - centre[1]) >= size / 2
    mask = (keep_y[:, None] | keep_x[None, :]).astype(img.dtype)
    return img * mask[:, :, None]


_FUNCS = {"xflip": xflip, "translate": translate, "color": color, "cutout": cutout}


def augment(img: jnp.ndarray, key: jax.Array, p, enabled: tuple[str, ...] = AUGMENTS) -> jnp.ndarray:
    """Apply the `enabled` augmentations (in ADA's order: geometric, colour, cutout) to `img [H, W, C]`."""
    keys = jax.random.split(key, len(AUGMENTS))
    for name, k in zip(AUGMENTS, keys):
        if name in enabled:
            img = _FUNCS[name](img, k, p)
    return img


def augment_batch(imgs: jnp.ndarray, key: jax.Array, p, enabled: tuple[str, ...] = AUGMENTS) -> jnp.ndarray:
    """`augment` on each image of `imgs [N, H, W, C]` with its own key."""
    if not enabled:
        return imgs
    keys = jax.random.split(key, imgs.shape[0])
    return jax.vmap(lambda x, k: augment(x, k, p, enabled))(imgs, keys)


def blur(img: jnp.ndarray, sigma, max_sigma: float) -> jnp.ndarray:
    """Gaussian blur of `img [H, W, C]` as NVIDIA's loss blurs what D sees (training/loss.py of stylegan3).

    Separable taps `2 ** -(i / sigma) ** 2` for `|i| <= floor(3 sigma)`, normalised to sum 1, along H
    and W, with zero padding (the output has the input's size). `sigma` may be traced; the static
    `max_sigma` sizes the filter, and the taps beyond `floor(3 sigma)` are 0, so the result is that of
    the smaller filter. Below sigma 1/3 the filter is one tap: the identity.
    """
    radius = math.floor(max_sigma * 3)
    if radius < 1:
        return img
    i = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    taps = jnp.where(jnp.abs(i) <= jnp.floor(sigma * 3), jnp.exp2(-jnp.square(i / jnp.maximum(sigma, 1e-8))), 0.0)
    taps = (taps / jnp.sum(taps)).astype(img.dtype)
    c = img.shape[-1]
    x = img[None]
    for kernel_shape in ((2 * radius + 1, 1, 1, c), (1, 2 * radius + 1, 1, c)):
        kernel = jnp.broadcast_to(taps.reshape(kernel_shape[:2] + (1, 1)), kernel_shape)
        x = lax.conv_general_dilated(
            x, kernel, window_strides=(1, 1), padding=((kernel_shape[0] // 2,) * 2, (kernel_shape[1] // 2,) * 2),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c, precision=lax.Precision.HIGHEST,
        )
    return x[0]


def ada_adjust(p, sign_mean, *, target: float, batch: int, interval: int, ada_kimg: float):
    """ADA's update of p from r_t = mean sign of D's real logits: one step of fixed size towards target, p >= 0."""
    step = batch * interval / (ada_kimg * 1000)
    return jnp.clip(p + jnp.sign(sign_mean - target) * step, 0.0, 1.0)
