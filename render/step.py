"""The render step: per-frame parameters in, uint8 frames out, through one jitted, vmapped call.

The step is written for ONE frame (its position `t` on the keyframe loop, its warp strengths,
its family inputs) and vmapped over a batch; `RenderStep` compiles it once (static shapes: the
last batch is padded) and shards the batch over the local devices when there are several. It
works for every model family through `gvjax.models`: synthesis is cut after the stages the
warps name, never at family-specific places.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from gvjax import models
from gvjax.distributed import local_mesh
from gvjax.errors import GvjaxError
from gvjax.model import modconv_for_batch, with_arranged_kernels
from gvjax.render.config import MAX_SCALE
from gvjax.spline import sample_spline
from gvjax.warps import WarpSpec, apply_warp, camera_transforms, slitscan_batch, slitscan_history


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


def resolve_fill(fill: str, config: Any, size: tuple[int, int] | None) -> str:
    """The concrete `--fill` of a render: 'auto' is 'widen' for a non-square `size` on a model that
    widens (StyleGAN2 and StyleGAN3 do), else 'pad'. 'widen' on a model that cannot is a one-line GvjaxError."""
    square = size is None or size[0] == size[1]
    if fill == "auto":
        return "widen" if not square and models.widens(config) else "pad"
    if fill == "widen" and not models.widens(config):
        raise GvjaxError(f"--fill widen needs a model whose synthesis widens; a {models.family_of(config)} model does not: use --fill crop or pad")
    return fill


def fill_scale(fill: str, resolution: int, size: tuple[int, int]) -> int:
    """The `--scale` a fill takes when none is given: 'crop' scales the model's side up to the
    frame's longer side (so the square covers it), 'pad' keeps 1, and 'widen' takes the whole factor
    just below or just above the frame's shorter side, whichever draws the fewest pixels that the
    crop then cuts (a 1024 model at 1920x1080: 1, drawing 1280 x 2048, not 2, drawing 2048 x 2048)."""
    def whole(scale: int) -> int:  # a --scale the CLI accepts: 1..MAX_SCALE
        return max(1, min(MAX_SCALE, scale))

    if fill == "crop":
        return whole(-(-max(size) // resolution))
    if fill != "widen":
        return 1
    width, height = size
    short = min(size)
    candidates = sorted({whole(short // resolution), whole(-(-short // resolution))}, reverse=True)

    def drawn(scale):
        rows, cols = widen_canvas(resolution, scale, width, height)
        return (resolution * scale) ** 2 * rows * cols

    return min(candidates, key=drawn)  # ties: the larger scale (fewer pixels to synthesise)


def widen_canvas(resolution: int, scale: int, width: int, height: int) -> tuple[int, int]:
    """The canvas `(rows, cols)`, in quarters of the square (4 x 4 as trained: StyleGAN2's constant
    input), whose scaled image covers `width x height`: the model draws `resolution * rows / 4`
    rows, `* scale` on screen; the small rest is centre-cropped."""
    side = resolution * scale

    def cells(pixels):
        return max(4, -(-4 * pixels // side))

    return cells(height), cells(width)


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
    canvas: tuple[int, int] = (4, 4)  # rows x cols in quarters of the square (StyleGAN2: its constant input; see widen_canvas)


def check_preview(config: Any, preview_res: int | None) -> int | None:
    """Validate a preview resolution (None: full synthesis); the family says whether it can preview."""
    if preview_res is None:
        return None
    models.preview_stage(config, preview_res)
    return preview_res


def check_warps(config: Any, warps: tuple[WarpSpec, ...]) -> tuple[int | None, ...]:
    """The stage each warp cuts after (None for an input warp), checked against the model.

    A feature warp must cut before the model's last stage; the camera needs a family with a
    `transform` input (StyleGAN3). Anything else is a one-line GvjaxError naming the warp.
    """
    names = models.stage_names(config)
    inputs = models.frame_inputs_names(config)
    stages = []
    for w in warps:
        if w.is_input_warp:
            if "transform" not in inputs:
                raise GvjaxError(f"warp {w.kind!r} moves StyleGAN3's Fourier input; this {models.family_of(config)} model has none")
            stages.append(None)
            continue
        try:
            stage = models.cut_stage(config, resolution=w.resolution, layer=w.layer)
        except GvjaxError as e:
            raise GvjaxError(f"warp {w.kind!r}: {e}") from None
        if stage >= len(names) - 1:
            raise GvjaxError(
                f"warp {w.kind!r} at {w.where}: that is the model's last stage ({names[-1]}); cut before it: {', '.join(names[:-1])}"
            )
        stages.append(stage)
    return tuple(stages)


def frame_input_plan(config: Any, variables: Any, warps: tuple[WarpSpec, ...], strengths: np.ndarray, fps: float) -> dict[str, np.ndarray]:
    """The family's per-frame synthesis inputs for every frame of a render: `name -> [n, ...]`.

    `strengths [n, K]` are the warps' per-frame strengths. StyleGAN3's `transform` is the model's
    stored one composed with every camera warp's (`gvjax.warps.camera_transforms`), which
    integrates the strength from frame 0, so it is computed for the whole render at once.
    """
    n = len(strengths)
    plan = {name: np.broadcast_to(np.asarray(v, np.float32), (n,) + np.shape(v)).copy() for name, v in models.frame_inputs(config, variables).items()}
    for k, w in enumerate(warps):
        if w.kind == "camera":
            plan["transform"] = np.matmul(plan["transform"], camera_transforms(w, strengths[:, k], fps)).astype(np.float32)
    return plan


def last_stage(config: Any, spec: FrameSpec) -> int:
    """The last synthesis stage a frame runs: the preview's, else the model's last (warps cut before it)."""
    return models.preview_stage(config, spec.preview_res) if spec.preview_res is not None else len(models.stage_names(config)) - 1


def batch_fn(gen: Any, spec: FrameSpec, masks: dict[int, np.ndarray], stages: tuple[int | None, ...], on_trace: Callable[[], None] = lambda: None) -> Callable:
    """The batch step: `(variables, keyframes, frames, histories, n_valid, first, key)` ->
    `(uint8 frames [B, H, W, 3], histories)`.

    `keyframes = {'a', 'b'}`: `[N, num_ws, w_dim]` of the two blended sections; `frames`: one dict of
    per-frame arrays `[B, ...]` (`t_a`, `t_b`, `fade`, `index`, `strengths [B, K]`, and the family's
    inputs such as StyleGAN3's `transform [B, 3, 3]`). Per-frame work (spline, synthesis, per-frame
    warps) is written for one frame and vmapped; slit-scan works on the batch plus the carried
    history of past frames. `on_trace` is called each time the step is traced (= compiled).
    """
    cfg = gen.config
    last = last_stage(cfg, spec)
    warps = [(k, w, st) for k, (w, st) in enumerate(zip(spec.warps, stages)) if st is not None and st < last]
    cuts = sorted({st for _, _, st in warps})
    input_names = tuple(sorted(models.frame_inputs_names(cfg)))

    def stages_fn(start, stop):
        def run(variables, ws, carry, key, inputs):
            return gen.apply(variables, ws, carry, start=start, stop=stop, noise_mode=spec.noise_mode, noise_key=key, **inputs, method="run_stages")

        return jax.vmap(run, in_axes=(None, 0, 0, 0, 0))

    def step(variables, keyframes, frames, histories, n_valid, first, base_key):
        on_trace()
        sample = jax.vmap(lambda kf, t: sample_spline(kf, t, alpha=spec.spline_alpha), in_axes=(None, 0))
        ws_a, ws_b = sample(keyframes["a"], frames["t_a"]), sample(keyframes["b"], frames["t_b"])
        ws = ws_a + frames["fade"][:, None, None] * (ws_b - ws_a)
        index, strengths = frames["index"], frames["strengths"]
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base_key, index) if spec.noise_mode == "random" else None
        inputs = {name: frames[name] for name in input_names}
        seconds = index.astype(jnp.float32) / spec.fps
        histories = dict(histories)
        carry, done = None, 0
        for stage in cuts:
            carry = stages_fn(done, stage + 1)(variables, ws, carry, keys, inputs)
            x = carry["x"]
            for k, w, st in warps:
                if st != stage:
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
            carry = {**carry, "x": x}
            done = stage + 1
        img = stages_fn(done, last + 1)(variables, ws, carry, keys, inputs)["img"]
        if spec.preview_res is not None:  # the skip image of an earlier block
            img = jax.vmap(lambda i: upscale_nearest(i, cfg.img_resolution // spec.preview_res))(img)
        img = img.astype(jnp.float32)
        if spec.scale > 1:
            img = jax.vmap(lambda i: upscale_lanczos(i, spec.scale))(img)
        if img.shape[-1] == 1:
            img = jnp.broadcast_to(img, img.shape[:-1] + (3,))
        out = jax.vmap(lambda i: fit_to_size(to_uint8(i[..., :3]), spec.width, spec.height))(img)
        return out, histories

    return step


class RenderStep:
    """One compiled step for a render: per-frame parameters in, uint8 frames out.

    `__call__(kf_a, t_a, kf_b, t_b, fade, frame_index, strengths, inputs=None)`: keyframes `[N,
    num_ws, w_dim]` of the two blended sections, per-frame positions `t [b] in [0, 1)`, fade `[b]`
    (weight of b), frame indices `[b]`, warp strengths `[b, K]` and the family's per-frame inputs
    (`inputs`: name -> `[b, ...]`, e.g. from `frame_input_plan`; None: the model's defaults), with
    b <= batch (padded here). They travel as one dict, sharded along frames over this process's
    devices (the batch is rounded up to a multiple of their count); params are replicated.
    Slit-scan histories are carried from call to call. It compiles once per keyframe-count layout;
    `compilations` counts the traces.
    """

    def __init__(self, config: Any, variables: Any, spec: FrameSpec, *, batch: int, seed: int, dtype=jnp.float32, masks: dict[int, np.ndarray] | None = None):
        stages = check_warps(config, spec.warps)
        check_preview(config, spec.preview_res)
        mesh = local_mesh("frames")  # this process's devices: in a multi-process render each process has its own frames
        self.batch = -(-batch // mesh.size) * mesh.size
        self.spec = spec
        self.compilations = 0
        widened = {"canvas": spec.canvas} if spec.canvas != (4, 4) else {}
        gen = models.generator(config, modconv=modconv_for_batch(self.batch), dtype=dtype, **widened)
        self._defaults = {name: np.asarray(v, np.float32) for name, v in models.frame_inputs(config, variables).items()}
        rep = NamedSharding(mesh, PartitionSpec())
        per_frame = NamedSharding(mesh, PartitionSpec("frames"))

        def traced():
            self.compilations += 1

        self._fn = jax.jit(
            batch_fn(gen, spec, masks or {}, stages, traced),
            in_shardings=(rep, rep, per_frame, rep, rep, rep, rep),  # a sharding for a dict applies to each of its arrays
            out_shardings=(per_frame, rep),
        )
        self._variables = jax.device_put(with_arranged_kernels(gen, variables), rep)
        self._key = jax.device_put(jax.random.key(seed), rep)
        last = last_stage(config, spec)
        ws = jax.ShapeDtypeStruct((config.num_ws, config.w_dim), jnp.float32)
        inputs = {name: jax.ShapeDtypeStruct(v.shape, v.dtype) for name, v in self._defaults.items()}

        def features(stage):
            run = lambda ws, inputs: gen.apply(variables, ws, stop=stage + 1, **inputs, method="run_stages")["x"]
            return jax.eval_shape(run, ws, inputs)

        slitscans = {k: (w.history, features(st)) for k, (w, st) in enumerate(zip(spec.warps, stages)) if w.kind == "slitscan" and st < last}
        self._histories = jax.device_put({k: jnp.zeros((n,) + x.shape, x.dtype) for k, (n, x) in slitscans.items()}, rep)
        self._first = True

    def __call__(self, kf_a, t_a, kf_b, t_b, fade, frame_index, strengths, inputs: dict | None = None) -> jax.Array:
        n = len(t_a)
        if n > self.batch:
            raise ValueError(f"{n} frames do not fit a batch of {self.batch}")

        def pad(x, dtype):
            x = np.asarray(x, dtype)
            return np.concatenate([x, np.zeros((self.batch - n,) + x.shape[1:], dtype)])

        k = max(len(self.spec.warps), 1)
        strengths = np.zeros((n, k), np.float32) if not self.spec.warps else strengths
        inputs = inputs or {name: np.broadcast_to(v, (n,) + v.shape) for name, v in self._defaults.items()}
        frames = {"t_a": pad(t_a, np.float32), "t_b": pad(t_b, np.float32), "fade": pad(fade, np.float32),
                  "index": pad(frame_index, np.int32), "strengths": pad(strengths, np.float32),
                  **{name: pad(inputs[name], np.float32) for name in self._defaults}}
        keyframes = {"a": jnp.asarray(kf_a, jnp.float32), "b": jnp.asarray(kf_b, jnp.float32)}
        out, self._histories = self._fn(self._variables, keyframes, frames, self._histories, np.int32(n), np.bool_(self._first), self._key)
        self._first = False
        return out
