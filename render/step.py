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
from jax.sharding import NamedSharding, PartitionSpec

from gvjax.config import GeneratorConfig
from gvjax.distributed import local_mesh
from gvjax.errors import GvjaxError
from gvjax.model import Generator, modconv_for_batch, with_arranged_kernels
from gvjax.spline import sample_spline
from gvjax.warps import WarpSpec, apply_warp, slitscan_batch, slitscan_history


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


def upscale_lanczos(img: jnp.ndarray, factor: int) -> jnp.ndarray:
    """`[h, w, C]` -> `[h*factor, w*factor, C]`, Lanczos-3 resampling (may overshoot [-1, 1] a little)."""
    h, w, c = img.shape
    return jax.image.resize(img, (h * factor, w * factor, c), method="lanczos3")


def upscale_nearest(img: jnp.ndarray, factor: int) -> jnp.ndarray:
    """`[h, w, C]` -> `[h*factor, w*factor, C]` by pixel repetition."""
    return jnp.repeat(jnp.repeat(img, factor, axis=0), factor, axis=1)


@dataclasses.dataclass(frozen=True)
class FrameSpec:
    """Static description of a rendered frame: output size, travel, noise, preview, warps."""

    width: int
    height: int
    spline_alpha: float = 0.5
    noise_mode: str = "const"
    preview_res: int | None = None
    fps: float = 30.0
    warps: tuple[WarpSpec, ...] = ()
    scale: int = 1


def check_preview(config: GeneratorConfig, preview_res: int | None) -> int | None:
    """Validate a preview resolution (None: full synthesis)."""
    if preview_res is None:
        return None
    if config.architecture != "skip":
        raise GvjaxError(f"--preview needs a 'skip' architecture model (this one is {config.architecture!r})")
    if preview_res not in config.block_resolutions:
        raise GvjaxError(f"preview resolution {preview_res} is not one of the model's {config.block_resolutions}")
    return preview_res


def check_warps(config: GeneratorConfig, warps: tuple[WarpSpec, ...]) -> None:
    """Every warp must sit at one of the model's block resolutions below the output."""
    for w in warps:
        if w.resolution not in config.block_resolutions[:-1]:
            raise GvjaxError(
                f"warp {w.kind!r} at resolution {w.resolution}: the model's blocks are {config.block_resolutions}; "
                "use one below the output resolution"
            )


def batch_fn(gen: Generator, spec: FrameSpec, masks: dict[int, np.ndarray]) -> Callable:
    """The batch step: a batch of per-frame parameters -> `(frames [B, H, W, 3] uint8, histories)`.

    Per-frame work (spline, synthesis, per-frame warps) is written for one frame and vmapped;
    slit-scan works on the batch plus the carried history of past frames.
    """
    cfg = gen.config
    final_res = spec.preview_res or cfg.img_resolution
    warps = [(k, w) for k, w in enumerate(spec.warps) if w.resolution < final_res]
    cuts = sorted({w.resolution for _, w in warps})

    def blocks(after, upto):
        def run(variables, ws, x, img, key):
            return gen.apply(variables, ws, x, img, after_res=after, upto_res=upto, noise_mode=spec.noise_mode, noise_key=key, method="run_blocks")

        return jax.vmap(run, in_axes=(None, 0, 0, 0, 0))

    def step(variables, kf_a, t_a, kf_b, t_b, fade, frame_index, strengths, histories, n_valid, first, base_key):
        sample = jax.vmap(lambda kf, t: sample_spline(kf, t, alpha=spec.spline_alpha), in_axes=(None, 0))
        ws_a, ws_b = sample(kf_a, t_a), sample(kf_b, t_b)
        ws = ws_a + fade[:, None, None] * (ws_b - ws_a)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base_key, frame_index) if spec.noise_mode == "random" else None
        seconds = frame_index.astype(jnp.float32) / spec.fps
        histories = dict(histories)
        x = img = None
        after = 0
        for res in cuts:
            x, img = blocks(after, res)(variables, ws, x, img, keys)
            for k, w in warps:
                if w.resolution != res:
                    continue
                s = strengths[:, k]  # float32: each warp casts what it blends with to the features' dtype
                if w.kind == "slitscan":
                    hist = jnp.where(first, slitscan_history(x[0], w.history), histories[k])
                    seq = jnp.concatenate([hist, x], axis=0)
                    x, _ = slitscan_batch(x, s, hist, delay=w.history, axis=w.p("axis"))
                    histories[k] = jax.lax.dynamic_slice_in_dim(seq, n_valid, w.history, axis=0)
                else:
                    warp_one = jax.vmap(lambda x, s, t, w=w, k=k: apply_warp(w, x, s, t, masks.get(k)))
                    x = jax.lax.cond(jnp.any(s != 0), lambda x: warp_one(x, s, seconds), lambda x: x, x)
            after = res
        _, img = blocks(after, final_res)(variables, ws, x, img, keys)
        if spec.preview_res is not None:
            img = jax.vmap(lambda i: upscale_nearest(i, cfg.img_resolution // spec.preview_res))(img)
        img = img.astype(jnp.float32)
        if spec.scale > 1:
            img = jax.vmap(lambda i: upscale_lanczos(i, spec.scale))(img)
        if img.shape[-1] == 1:
            img = jnp.broadcast_to(img, img.shape[:-1] + (3,))
        frames = jax.vmap(lambda i: fit_to_size(to_uint8(i[..., :3]), spec.width, spec.height))(img)
        return frames, histories

    return step


class RenderStep:
    """One compiled step for a render: per-frame parameters in, uint8 frames out.

    `__call__(kf_a, t_a, kf_b, t_b, fade, frame_index, strengths)`: keyframes `[N, num_ws,
    w_dim]` of the two blended sections, per-frame positions `t [b] in [0, 1)`, fade `[b]`
    (weight of b), frame indices `[b]` and warp strengths `[b, K]`, with b <= batch (padded
    here). Slit-scan histories are carried from call to call. The batch is rounded up to a
    multiple of the local device count and sharded over this process's devices; params are replicated. It
    compiles once per keyframe-count layout (`compilations` counts them).
    """

    def __init__(self, config: GeneratorConfig, variables: Any, spec: FrameSpec, *, batch: int, seed: int, dtype=jnp.float32, masks: dict[int, np.ndarray] | None = None):
        check_warps(config, spec.warps)
        mesh = local_mesh("frames")  # this process's devices: in a multi-process render each process has its own frames
        self.batch = -(-batch // mesh.size) * mesh.size
        self.spec = spec
        gen = Generator(config, modconv=modconv_for_batch(self.batch), dtype=dtype)
        self._rep = NamedSharding(mesh, PartitionSpec())
        per_frame = NamedSharding(mesh, PartitionSpec("frames"))
        rep = self._rep
        self._fn = jax.jit(
            batch_fn(gen, spec, masks or {}),
            in_shardings=(rep, rep, per_frame, rep, per_frame, per_frame, per_frame, per_frame, rep, rep, rep, rep),
            out_shardings=(per_frame, rep),
        )
        self._variables = jax.device_put(with_arranged_kernels(gen, variables), rep)
        self._key = jax.device_put(jax.random.key(seed), rep)
        r = config.block_resolutions
        self._histories = jax.device_put({
            k: jnp.zeros((w.history, w.resolution, w.resolution, config.channels(w.resolution)), dtype)
            for k, w in enumerate(spec.warps) if w.kind == "slitscan" and w.resolution < (spec.preview_res or r[-1])
        }, rep)
        self._first = True
        self.compilations = 0

    def __call__(self, kf_a, t_a, kf_b, t_b, fade, frame_index, strengths) -> jax.Array:
        n = len(t_a)
        if n > self.batch:
            raise ValueError(f"{n} frames do not fit a batch of {self.batch}")

        def pad(x, dtype):
            x = np.asarray(x, dtype)
            return np.concatenate([x, np.zeros((self.batch - n,) + x.shape[1:], dtype)])

        k = max(len(self.spec.warps), 1)
        strengths = np.zeros((n, k), np.float32) if not self.spec.warps else strengths
        before = self._fn._cache_size()
        frames, self._histories = self._fn(
            self._variables, jnp.asarray(kf_a, jnp.float32), pad(t_a, np.float32), jnp.asarray(kf_b, jnp.float32),
            pad(t_b, np.float32), pad(fade, np.float32), pad(frame_index, np.int32), pad(strengths, np.float32),
            self._histories, np.int32(n), np.bool_(self._first), self._key,
        )
        self._first = False
        self.compilations += self._fn._cache_size() - before
        return frames
