"""The render step: per-frame parameters in, uint8 frames out, through one jitted, vmapped call.

`frame_fn` renders ONE frame from its position `t` on the keyframe loop; `RenderStep`
vmaps it over a batch, compiles it once (static shapes: the last batch is padded) and
shards the batch over the local devices when there are several.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError
from gvjax.model import Generator, modconv_for_batch
from gvjax.spline import sample_spline


def to_uint8(img: jnp.ndarray) -> jnp.ndarray:
    """`[H, W, C]` float about [-1, 1] -> uint8, as `gvjax.images.to_uint8` (NVIDIA's mapping)."""
    return jnp.clip(img * 127.5 + 128, 0, 255).astype(jnp.uint8)


def fit_to_size(frame: jnp.ndarray, width: int, height: int) -> jnp.ndarray:
    """Centre-crop or black-pad `[H, W, 3]` uint8 to `[height, width, 3]` (no scaling)."""
    h, w = frame.shape[:2]

    def axis(x, have, want, ax):
        if want < have:
            start = (have - want) // 2
            return jax.lax.slice_in_dim(x, start, start + want, axis=ax)
        if want > have:
            before = (want - have) // 2
            pad = [(0, 0)] * x.ndim
            pad[ax] = (before, want - have - before)
            return jnp.pad(x, pad)
        return x

    return axis(axis(frame, h, height, 0), w, width, 1)


def upscale_nearest(img: jnp.ndarray, factor: int) -> jnp.ndarray:
    """`[h, w, C]` -> `[h*factor, w*factor, C]` by pixel repetition."""
    return jnp.repeat(jnp.repeat(img, factor, axis=0), factor, axis=1)


@dataclasses.dataclass(frozen=True)
class FrameSpec:
    """Static description of a rendered frame."""

    width: int
    height: int
    spline_alpha: float = 0.5
    noise_mode: str = "const"
    preview_res: int | None = None


def check_preview(config: GeneratorConfig, preview_res: int | None) -> int | None:
    """Validate a preview resolution (None: full synthesis)."""
    if preview_res is None:
        return None
    if config.architecture != "skip":
        raise GvjaxError(f"--preview needs a 'skip' architecture model (this one is {config.architecture!r})")
    if preview_res not in config.block_resolutions:
        raise GvjaxError(f"preview resolution {preview_res} is not one of the model's {config.block_resolutions}")
    return preview_res


def frame_fn(gen: Generator, spec: FrameSpec) -> Callable:
    """`(variables, keyframes [N, num_ws, w_dim], t: float in [0, 1), frame_index, base_key) -> [H, W, 3] uint8`."""
    cfg = gen.config

    def frame(variables, keyframes, t, frame_index, base_key):
        ws = sample_spline(keyframes, t, alpha=spec.spline_alpha)
        key = jax.random.fold_in(base_key, frame_index) if spec.noise_mode == "random" else None
        if spec.preview_res is None:
            img = gen.apply(variables, ws, noise_mode=spec.noise_mode, noise_key=key, method="synthesize")
        else:
            _, img = gen.apply(
                variables, ws, upto_res=spec.preview_res, noise_mode=spec.noise_mode, noise_key=key, method="run_blocks"
            )
            img = upscale_nearest(img, cfg.img_resolution // spec.preview_res)
        img = img.astype(jnp.float32)
        if img.shape[-1] == 1:
            img = jnp.broadcast_to(img, img.shape[:-1] + (3,))
        return fit_to_size(to_uint8(img[..., :3]), spec.width, spec.height)

    return frame


class RenderStep:
    """One compiled step: `(t [B], frame_index [B]) -> frames [B, H, W, 3]` uint8 (numpy).

    The batch is rounded up to a multiple of the device count and sharded over the devices
    (`jax.sharding`); params and keyframes are replicated. Compiles once per render.
    """

    def __init__(self, config: GeneratorConfig, variables: Any, keyframes: np.ndarray, spec: FrameSpec, *, batch: int, seed: int, dtype=jnp.float32):
        devices = jax.devices()
        self.batch = -(-batch // len(devices)) * len(devices)
        gen = Generator(config, modconv=modconv_for_batch(self.batch), dtype=dtype)
        one = frame_fn(gen, spec)
        batched = jax.vmap(one, in_axes=(None, None, 0, 0, None))
        mesh = Mesh(np.array(devices), ("frames",))
        replicated = NamedSharding(mesh, PartitionSpec())
        per_frame = NamedSharding(mesh, PartitionSpec("frames"))
        self._per_frame = per_frame
        self._fn = jax.jit(
            batched,
            in_shardings=(replicated, replicated, per_frame, per_frame, replicated),
            out_shardings=per_frame,
        )
        self._variables = jax.device_put(variables, replicated)
        self._keyframes = jax.device_put(jnp.asarray(keyframes, jnp.float32), replicated)
        self._key = jax.device_put(jax.random.key(seed), replicated)
        self.compilations = 0

    def __call__(self, t: np.ndarray, frame_index: np.ndarray) -> jax.Array:
        """Dispatch a batch (`len(t) <= batch`, padded here); returns the device array of all `batch` frames."""
        n = len(t)
        if n > self.batch:
            raise ValueError(f"{n} frames do not fit a batch of {self.batch}")
        t = np.concatenate([np.asarray(t, np.float32), np.zeros(self.batch - n, np.float32)])
        idx = np.concatenate([np.asarray(frame_index, np.int32), np.zeros(self.batch - n, np.int32)])
        before = self._fn._cache_size()
        out = self._fn(self._variables, self._keyframes, t, idx, self._key)
        self.compilations += self._fn._cache_size() - before
        return out
