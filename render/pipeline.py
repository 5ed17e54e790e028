"""Song + model -> video: audio features, keyframes, motion, the compiled step, ffmpeg, OUT.json."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import json
import math
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gvjax.audio import audio_duration, compute_features, peak_gain
from gvjax.checkpoint import Checkpoint
from gvjax.distributed import ProcessLost, gather_bytes, process_range, sync
from gvjax.errors import GvjaxError, check_interrupt, interrupts_between_batches
from gvjax.generate import label_vector
from gvjax import models
from gvjax.precision import describe as describe_precision, jax_dtype
from gvjax.outputs import VIDEO_FORMATS, sha256_file, check_file_output, check_record_output, check_video_output, new_sibling, remove, replace_into
from gvjax.spline import keyframes_from_npy, keyframes_from_seeds
from gvjax.warps import channel_mask, cluster_channels

from gvjax.render.config import SPLINE_ALPHAS, RenderConfig
from gvjax.render.step import FrameSpec, RenderStep, check_preview, check_warps, frame_input_plan, resolve_fill, widen_canvas
from gvjax.render.timeline import Section, Timeline, parse_timeline_text, plan_frames, read_timeline_source
from gvjax.render.segments import (
    PARTIAL_SUFFIX, SegmentWriter, concat_segments, finished_segments, partial_dir, process_partial_dir, read_manifest, segment_path,
    start_partial,
)
from gvjax.render.video import mux_audio

PACKAGES = ("gvjax", "jax", "jaxlib", "flax", "numpy", "librosa", "imageio-ffmpeg")


class RenderInterrupted(GvjaxError):
    """Ctrl-C during a render; the frames done so far were saved as a playable video."""

    exit_code = 130


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """What a render wrote: the video, its record, and how many frames of how many."""

    video: pathlib.Path
    record: pathlib.Path
    frames: int
    total_frames: int
    seconds: float
    loop_frames_per_s: float  # steady state: frames after the first batch (which compiles) per second
    part: tuple[int, int] | None = None  # [first, last) frames this process rendered, in a multi-process run


def variables_digest(variables: Any) -> str:
    """sha256 over every array of a variables tree (paths, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0], key=lambda kv: jax.tree_util.keystr(kv[0])):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{arr.dtype}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def section_keyframes(section: Section, ckpt: Checkpoint, keyframes_npy: str | None = None, class_idx: int | None = None) -> np.ndarray:
    """`[N, num_ws, w_dim]` keyframes of a section: from a `.npy`, or seeds through mapping + truncation.

    A conditional model maps with the one-hot label of the section's class (else `class_idx`),
    so sections of different classes cross-fade like any two sections.
    """
    gcfg = ckpt.config
    if keyframes_npy:
        return keyframes_from_npy(keyframes_npy, num_ws=gcfg.num_ws, w_dim=gcfg.w_dim)
    chosen = section.class_idx if section.class_idx is not None else class_idx
    if gcfg.c_dim == 0 and chosen is not None:
        raise GvjaxError("--class (or a timeline's class) needs a conditional model; this one is unconditional")
    try:
        c = label_vector(gcfg, chosen)
    except GvjaxError as e:
        raise GvjaxError(str(e).replace("pass --class N", "pass --class N or set class = N in the timeline's sections")) from None
    gen = models.generator(gcfg)
    map_fn = jax.jit(lambda z: gen.apply(ckpt.variables, z, c, truncation_psi=section.truncation_psi, method="map"))
    return keyframes_from_seeds(section.keyframe_seeds(), map_fn, z_dim=gcfg.z_dim)


def default_timeline(cfg: RenderConfig) -> Timeline:
    """The one-section timeline of a render without --timeline: travel only, from cfg's options."""
    return Timeline((Section(
        start=0.0, seeds=cfg.keyframe_seeds, keyframes=cfg.num_keyframes, seed=cfg.seed,
        truncation_psi=cfg.truncation_psi, laps=cfg.laps, laps_per_minute=cfg.laps_per_minute,
        drive=cfg.drive, base_speed=cfg.base_speed, speed_gain=cfg.speed_gain,
    ),))


def default_cache_dir() -> pathlib.Path:
    """gvjax's own cache folder: $GVJAX_CACHE_DIR, else $XDG_CACHE_HOME/gvjax, else ~/.cache/gvjax."""
    if os.environ.get("GVJAX_CACHE_DIR"):
        return pathlib.Path(os.environ["GVJAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "gvjax"


def stage_features(ckpt: Checkpoint, keyframes: np.ndarray, stage: int) -> jax.Array:
    """Features `[N, H, W, C]` after `stage` of synthesis, for each of the ws `keyframes [N, num_ws, w_dim]`."""
    gen = models.generator(ckpt.config)
    inputs = models.frame_inputs(ckpt.config, ckpt.variables)
    return jax.vmap(lambda w: gen.apply(ckpt.variables, w, stop=stage + 1, **inputs, method="run_stages")["x"])(jnp.asarray(keyframes))


def channel_masks(slots, ckpt: Checkpoint, keyframes: np.ndarray, cache_dir: pathlib.Path | None, model_digest: str) -> dict[int, np.ndarray]:
    """`[C]` masks of the 'channels' warps (index list, random fraction or k-means cluster)."""
    masks = {}
    stages = check_warps(ckpt.config, slots)
    for k, (w, stage) in enumerate(zip(slots, stages)):
        if w.kind != "channels":
            continue
        c = jax.eval_shape(lambda: stage_features(ckpt, keyframes[:1], stage)).shape[-1]
        labels = None
        if w.p("cluster") >= 0:
            labels = cluster_labels(ckpt, keyframes, stage, int(w.p("clusters")), int(w.p("seed")), cache_dir, model_digest)
        masks[k] = channel_mask(c, channels=w.p("channels"), fraction=w.p("fraction"), seed=int(w.p("seed")), labels=labels, cluster=int(w.p("cluster")))
    return masks


def cluster_cache_key(model_digest: str, keyframes: np.ndarray, stage: int, k: int, seed: int) -> str:
    """sha256 of everything the channel clusters depend on: model, keyframes, stage, k and seed."""
    h = hashlib.sha256(f"clusters:v3:{model_digest}:stage{stage}:k{k}:seed{seed}:".encode())
    kf = np.ascontiguousarray(keyframes, np.float32)
    h.update(f"{kf.shape}".encode())
    h.update(kf.tobytes())
    return h.hexdigest()


def cluster_labels(
    ckpt: Checkpoint, keyframes: np.ndarray, stage: int, k: int, seed: int, cache_dir: pathlib.Path | None, model_digest: str
) -> np.ndarray:
    """k-means labels `[C]` of the channels after synthesis stage `stage`, from the keyframes' features.

    Cached in `cache_dir/clusters/<key>.npy`, keyed by `cluster_cache_key`; a cache file that
    cannot be read, or holds the wrong shape or labels, is recomputed and rewritten.
    """
    c = jax.eval_shape(lambda: stage_features(ckpt, keyframes[:1], stage)).shape[-1]
    cache = None if cache_dir is None else cache_dir / "clusters" / f"{cluster_cache_key(model_digest, keyframes, stage, k, seed)}.npy"
    if cache is not None and cache.is_file():
        try:
            labels = np.load(cache, allow_pickle=False)
            if labels.shape == (c,) and labels.dtype.kind in "iu" and labels.min() >= 0 and labels.max() < k:
                return labels
        except (OSError, ValueError, EOFError):
            pass  # damaged: recompute
    labels = cluster_channels(np.asarray(stage_features(ckpt, keyframes, stage)), k, seed=seed)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = new_sibling(cache, suffix=".npy")
            np.save(tmp, labels)
            os.replace(tmp, cache)
        except (OSError, GvjaxError):
            pass  # no cache then: recompute next time
    return labels


def estimate_frame_bytes(gcfg, width: int, height: int, scale: int, canvas: tuple[int, int] = (4, 4)) -> int:
    """Rough peak bytes one frame of the render step needs: features of every synthesis stage (a
    few copies each, float32; `canvas / 4` times wider when widened), the scaled image and the frame."""
    wider = canvas[0] * canvas[1] / 16
    feats = sum(math.prod(shape) for shape in models.stage_shapes(gcfg)) * 4 * 6 * wider
    side = gcfg.img_resolution * scale
    return int(feats + side * side * wider * 3 * 4 * 4 + width * height * (3 * 4 + 3))


def available_memory_bytes() -> int | None:
    """Memory the render step may use: the first device's limit on accelerators, MemAvailable on CPU."""
    dev = jax.local_devices()[0]
    if dev.platform != "cpu":
        try:
            return int(dev.memory_stats()["bytes_limit"])
        except Exception:  # no stats on this backend
            return None
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(gcfg, width: int, height: int, scale: int, batch: int, canvas: tuple[int, int] = (4, 4)) -> None:
    """GvjaxError, before compiling, when a batch of frames cannot fit; says what fits."""
    avail = available_memory_bytes()
    if avail is None:
        return
    per_frame = estimate_frame_bytes(gcfg, width, height, scale, canvas)
    budget = 0.7 * avail
    if per_frame * batch <= budget:
        return
    gib = 2.0**30
    fits = int(budget // per_frame)
    if fits >= 1:
        raise GvjaxError(
            f"a batch of {batch} frames at {width}x{height} needs about {per_frame * batch / gib:.1f} GiB, "
            f"{avail / gib:.1f} GiB is available: use --batch {fits} or less"
        )
    raise GvjaxError(
        f"one frame at {width}x{height} (x{scale} scale) needs about {per_frame / gib:.1f} GiB, "
        f"{avail / gib:.1f} GiB is available: choose a smaller --size or --scale"
    )


class Progress:
    """Render progress on stderr: a rich progress bar (frames, frames/s, ETA) on a terminal,
    else a plain line every 5 s and at the end (logs, CI, pipes)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled, self.start = total, enabled, time.perf_counter()
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = -float("inf")
        self._bar = None
        if enabled and self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn("render"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                TextColumn("{task.fields[fps]:.1f} frames/s"), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )
            self._task = self._bar.add_task("render", total=total, fps=0.0)
            self._bar.start()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        fps = done / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, completed=done, fps=fps)
            return
        eta = (self.total - done) / fps if fps > 0 else float("nan")
        if done == self.total or elapsed - self._last >= 5:
            print(f"render {done}/{self.total} frames  {fps:.1f} frames/s  ETA {eta:.0f}s", file=self.stream, flush=True)
            self._last = elapsed

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@dataclasses.dataclass
class RenderJob:
    """Everything the frame loop needs: the per-frame plan, keyframes, the compiled step."""

    width: int
    height: int
    n_frames: int
    plan: Any  # render.timeline.FramePlan
    keyframes: list[np.ndarray]  # per section, [N, num_ws, w_dim]
    step: RenderStep
    # the family's per-frame inputs of every frame, from the plan's strengths (`frame_input_plan`)
    frame_inputs: Callable[[np.ndarray], dict[str, np.ndarray]] = lambda strengths: {}

    def batch_ranges(self, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
        """[first, last) frame ranges of the step's batches over frames [start, stop); batches never straddle a section change."""
        stop = self.n_frames if stop is None else stop
        return [(a, min(a + self.step.batch, b, stop)) for a, b in self.plan.segments() if b > start
                for a in range(max(a, start), min(b, stop), self.step.batch)]

    def batches(self, start: int = 0, stop: int | None = None):
        """Yield `(first frame, uint8 frames [batch, H, W, 3] on the device, n valid)` in order,
        for frames [start, stop) (default: to the end).

        Batch i+1 is dispatched before batch i is handed out, so the device computes while
        the host encodes. Slit-scan histories carry from batch to batch (one pass only; a pass
        from `start` > 0 begins them with copies of frame `start`'s features).
        """
        plan, kf, pending = self.plan, self.keyframes, None
        frame_inputs = self.frame_inputs(plan.strengths)
        for first, last in self.batch_ranges(start, stop):
            check_interrupt()
            idx = np.arange(first, last)
            sa, sb = int(plan.section_a[first]), int(plan.section_b[first])
            inputs = {name: v[idx] for name, v in frame_inputs.items()} or None
            frames = self.step(kf[sa], plan.t_a[idx], kf[sb], plan.t_b[idx], plan.fade[idx], idx, plan.strengths[idx], inputs)
            if pending is not None:
                yield pending
            pending = (first, frames, len(idx))
        if pending is not None:
            yield pending


def prepare_render(cfg: RenderConfig, ckpt: Checkpoint, song: pathlib.Path, timeline: Timeline, *, cache_dir: pathlib.Path | None, model_digest: str) -> RenderJob:
    """Analyse `song` and build the frame plan, the keyframes and the compiled step of a render.

    Checks (warps the model can hold, the range, memory) come before any compute.
    """
    check_warps(ckpt.config, timeline.slots)
    total_seconds = audio_duration(song)
    if cfg.start >= total_seconds:
        raise GvjaxError(f"--start {cfg.start:g}s is past the end of {song.name} ({total_seconds:.2f}s)")
    res = ckpt.config.img_resolution
    width, height = cfg.size or (res * cfg.scale, res * cfg.scale)
    fill = resolve_fill(cfg.fill, ckpt.config, cfg.size)
    canvas = widen_canvas(res, cfg.scale, width, height) if fill == "widen" else (4, 4)
    if fill == "crop" and res * cfg.scale < max(width, height):
        raise GvjaxError(f"--fill crop: the x{cfg.scale} image ({res * cfg.scale} px) does not cover {width}x{height}; "
                         f"use --scale {-(-max(width, height) // res)} or leave --scale out")
    check_memory(ckpt.config, width, height, cfg.scale, 1, canvas)
    preview_res = None
    if cfg.preview:
        preview_res = check_preview(ckpt.config, cfg.preview_res or max(4, ckpt.config.img_resolution // 4))
    features = compute_features(song, cfg.fps, stems=dict(cfg.stems), config=cfg.features, start=cfg.start, duration=cfg.duration)
    n_frames = features.n_frames
    if n_frames < 1:
        raise GvjaxError(f"{song.name}: the rendered range is shorter than one frame at {cfg.fps:g} fps")
    batch = min(cfg.batch, n_frames)  # never more frames per step than the render has
    check_memory(ckpt.config, width, height, cfg.scale, batch, canvas)
    plan = plan_frames(timeline, features, fps=cfg.fps, start=cfg.start)
    keyframes = [section_keyframes(sec, ckpt, None if cfg.timeline else cfg.keyframes_npy, cfg.class_idx) for sec in timeline.sections]
    slots = timeline.slots
    spec = FrameSpec(width, height, SPLINE_ALPHAS[cfg.spline], cfg.noise_mode, preview_res, cfg.fps, slots, cfg.scale, canvas)
    dtype = jax_dtype(cfg.dtype)
    masks = channel_masks(slots, ckpt, keyframes[0], cache_dir, model_digest)
    step = RenderStep(ckpt.config, ckpt.variables, spec, batch=batch, seed=cfg.seed, dtype=dtype, masks=masks)
    def frame_inputs(strengths):
        return frame_input_plan(ckpt.config, ckpt.variables, slots, strengths, cfg.fps)

    return RenderJob(width, height, n_frames, plan, keyframes, step, frame_inputs)


def render_video(
    cfg: RenderConfig,
    ckpt: Checkpoint,
    song: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model_spec: str = "",
    demo: bool = False,
    progress: bool = True,
    force: bool = False,
    resume: bool = False,
    encoders: int = 2,
    segment_seconds: float = 2.0,
    inputs: tuple[tuple[str, Any], ...] = (),
    timeline_source: tuple[str, str] | None = None,
    replay: dict | None = None,
    cache_dir: pathlib.Path | None | str = "default",
    on_batch: Callable[[int], None] | None = None,
) -> RenderResult:
    """Render `song` with `ckpt` to `out` (a video with the song's range muxed in) and `out`.json.

    The output policy (`gvjax.outputs`) is checked before any compute: `out` and its record
    are new or replaced only with `force`, neither is the song or any of `inputs` ((what, path)
    pairs), and the record replaces only a gvjax render record. Both are written to temporary
    siblings and renamed at the end; a failure removes them.

    Frames are encoded in segments of about `segment_seconds` by up to `encoders` ffmpeg
    processes at once (`render/segments.py`), joined without re-encoding. The segments wait in
    `OUT.mp4.gvjax-partial/`; after a kill -9, `resume` continues from the last finished
    segment (slit-scan histories are warmed up from the frames before it, so the frames equal
    an uninterrupted render's).

    timeline_source: (name, TOML text) to use instead of reading `cfg.timeline` (a replay
    uses the text its record stored). replay: what `--from` adds to the new record.
    cache_dir: where channel clusters are cached ('default': `default_cache_dir()`, None: nowhere).
    `on_batch(frames_done)` is called after each batch is queued (tests use it to interrupt).

    In a multi-process run (`gvjax.distributed.initialize`), every process calls this with the
    same arguments. Each renders a contiguous range of whole segments on its own devices
    (slit-scan histories warmed up from the frames before it), encodes them into a folder of
    its own, and sends the encoded bytes to process 0 through JAX's multi-host utilities;
    process 0 joins them, muxes the audio and writes `out` and the record. The video equals a
    one-process render frame for frame. If a process stops, the others raise ProcessLost and
    nothing is written.
    Ctrl-C (and SIGTERM, which the CLI turns into Ctrl-C) keeps the frames done so far as a
    playable video and raises RenderInterrupted.
    """
    t_start = time.perf_counter()
    nproc, pid = jax.process_count(), jax.process_index()
    primary = pid == 0
    out = check_video_output(out)
    song = pathlib.Path(song)
    if not (isinstance(encoders, int) and 1 <= encoders <= 64):
        raise GvjaxError(f"--encoders must be a whole number from 1 to 64, got {encoders}")
    if resume and nproc > 1:
        raise GvjaxError("--resume continues a render of one process (a multi-process render keeps no segments on the other hosts)")
    all_inputs = (("song", None if demo else song), *((f"stem {name}", path) for name, path in cfg.stems),
                  ("keyframes file", cfg.keyframes_npy), *inputs)
    if primary:  # only process 0 writes the video and its record
        check_file_output(out, force=force, inputs=all_inputs)
        check_record_output(record_path(out), key=RECORD_KEY, force=force, inputs=((*all_inputs, ("video", out))))
    if timeline_source is None and cfg.timeline:
        timeline_source = read_timeline_source(cfg.timeline)
    timeline = parse_timeline_text(*timeline_source) if timeline_source else default_timeline(cfg)
    model_digest = variables_digest(ckpt.variables)
    parts = partial_dir(out)
    song_digest = sha256_file(song)
    key = hashlib.sha256(json.dumps({
        "config": cfg.to_dict(), "model": model_digest, "audio": song_digest,
        "timeline": None if timeline_source is None else timeline_source[1],
    }, sort_keys=True).encode()).hexdigest()
    manifest = None
    if primary and (parts.exists() or parts.is_symlink()):
        if read_manifest(parts) is None:
            raise GvjaxError(f"{parts} is in the way (it is not a partial render of gvjax's): move it or choose another output")
        if resume:
            manifest = read_manifest(parts)
            if manifest.get("key") != key:
                raise GvjaxError(f"{parts} holds an unfinished render of other settings: delete it, or resume with the command that made it")
        elif force:
            remove(parts)
        else:
            raise GvjaxError(f"{parts} holds an unfinished render of {out.name}: continue it with --resume, or start again with --force")
    job = prepare_render(cfg, ckpt, song, timeline, cache_dir=default_cache_dir() if cache_dir == "default" else cache_dir, model_digest=model_digest)
    width, height, n_frames, step = job.width, job.height, job.n_frames, job.step
    sync("before rendering")  # every process checked its inputs and compiled: nothing is written before this
    if manifest is None:
        segment_frames = max(1, math.ceil(segment_seconds * cfg.fps / step.batch)) * step.batch
        first_segment = 0
        if primary:
            start_partial(parts, {"gvjax_partial": 1, "key": key, "segment_frames": segment_frames, "frames": n_frames}, out)
        else:  # this host's own segments, beside the output (hosts share no filesystem); removed at the end
            parts = process_partial_dir(out, pid)
            if read_manifest(parts) is not None:
                remove(parts)  # left by a run whose process was killed: it cannot be resumed
            elif parts.exists() or parts.is_symlink():
                raise GvjaxError(f"{parts} is in the way (it is not a partial render of gvjax's): move it or choose another output")
            if not out.parent.is_dir():  # this host lacks the output's folder: the system's temporary folder then
                parts = pathlib.Path(tempfile.mkdtemp(prefix=f"{out.name}{PARTIAL_SUFFIX}-p{pid}-"))
                remove(parts)
            start_partial(parts, {"gvjax_partial": 1, "key": key, "segment_frames": segment_frames, "frames": n_frames, "process": pid}, out)
    else:
        segment_frames, first_segment = int(manifest["segment_frames"]), finished_segments(parts)
    n_segments = math.ceil(n_frames / segment_frames)
    # Each process renders a contiguous range of whole segments; one process renders them all.
    seg_a, seg_b = process_range(n_segments, pid, nproc) if nproc > 1 else (first_segment, n_segments)
    start_frame, stop_frame = min(seg_a * segment_frames, n_frames), min(seg_b * segment_frames, n_frames)
    # Frames before the range are recomputed (not encoded) as far as a slit-scan looks back.
    lookback = max([w.history for w in step.spec.warps if w.kind == "slitscan"], default=0)
    warm_start = max(0, start_frame - lookback)

    tmp_video = new_sibling(out, suffix=".video.mp4") if primary else None
    tmp_out = new_sibling(out, suffix=out.suffix) if primary else None
    tmp_record = None
    interrupted = finished = failed = False
    t_warm = None
    try:
        writer = SegmentWriter(parts, segment_frames=segment_frames, workers=encoders, width=width, height=height,
                               fps=cfg.fps, crf=cfg.crf, first_segment=seg_a)
        shown_from = start_frame if nproc > 1 else 0  # a part counts its own frames; one process, the whole render's
        bar = Progress(stop_frame - shown_from, progress and primary)
        try:
            try:
                with interrupts_between_batches():  # Ctrl-C stops at a batch boundary, never inside jax
                    for first, frames, n in (job.batches(start=warm_start, stop=stop_frame) if start_frame < stop_frame else ()):
                        if t_warm is None:
                            jax.block_until_ready(frames)
                            t_warm = time.perf_counter()
                        skip = max(0, start_frame - first)
                        if skip < n:
                            writer.write(np.asarray(frames)[skip:n])
                        bar.update(first + n - shown_from)
                        if on_batch:
                            on_batch(first + n)
            except KeyboardInterrupt:
                if nproc > 1:  # a part of a multi-process render cannot stand alone
                    failed = True
                    raise
                interrupted = True
            except BaseException:
                failed = True
                raise
        finally:
            bar.close()
            if failed:
                writer.abort()
            else:
                writer.close()  # finishes every segment (the last, shorter one too)
        own_frames = writer.frames
        t_loop_end = time.perf_counter()
        if nproc > 1:
            blobs = [segment_path(parts, i).read_bytes() for i in range(seg_a, seg_b)]
            gathered = gather_bytes(blobs, n_segments, seg_a)
            if not primary:
                finished = True
                return RenderResult(out, record_path(out), own_frames, n_frames, time.perf_counter() - t_start,
                                    _loop_fps(own_frames, step.batch, t_warm, t_loop_end), part=(start_frame, stop_frame))
            for i, blob in enumerate(gathered):
                if not seg_a <= i < seg_b:
                    segment_path(parts, i).write_bytes(blob)
            done, count = n_frames, n_segments
        else:
            done, count = start_frame + own_frames, writer.segment
        if done == 0:
            raise RenderInterrupted("interrupted before the first frame: nothing was written")
        concat_segments(parts, count, tmp_video, fps=cfg.fps)
        mux_audio(
            tmp_video, song, tmp_out, start=cfg.start, duration=done / cfg.fps, muxer=VIDEO_FORMATS[out.suffix.lower()],
            gain=peak_gain(song, start=cfg.start, duration=done / cfg.fps),
        )
        record = make_record(
            out, cfg, ckpt, song, model_spec=model_spec, model_digest=model_digest, song_digest=song_digest, demo=demo, frames=done, total_frames=n_frames,
            compilations=step.compilations, timeline_source=timeline_source, replay=replay,
        )
        if first_segment:
            record["resumed_at_frame"] = start_frame
        tmp_record = new_sibling(record_path(out), suffix=".json")
        tmp_record.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        replace_into(tmp_out, out)
        replace_into(tmp_record, record_path(out))
        finished = True
    except ProcessLost:
        failed = True
        if primary:  # on a shared filesystem, the segments a killed process left beside the output
            for other in range(1, nproc):
                if (read_manifest(process_partial_dir(out, other)) or {}).get("key") == key:
                    remove(process_partial_dir(out, other))
        raise
    except BaseException:
        failed = True
        raise
    finally:
        for p in (tmp_video, tmp_out, tmp_record):
            if p is not None:
                remove(p)
        if finished or interrupted or failed or not primary:
            remove(parts)  # only a hard kill of a single-process render leaves the segments for --resume
    if interrupted:
        raise RenderInterrupted(f"interrupted: {out} holds the first {done} of {n_frames} frames (playable, with audio)")
    return RenderResult(out, record_path(out), done, n_frames, time.perf_counter() - t_start,
                        _loop_fps(own_frames, step.batch, t_warm, t_loop_end), part=(start_frame, stop_frame) if nproc > 1 else None)


def _loop_fps(frames: int, batch: int, t_warm: float | None, t_end: float) -> float:
    """Steady-state frames/s: the frames after the first batch (which compiles) over the time after it."""
    warm_frames = frames - min(batch, frames)
    return warm_frames / (t_end - t_warm) if t_warm and warm_frames > 0 else float("nan")


RECORD_KEY = "gvjax_render"


def record_path(out: pathlib.Path) -> pathlib.Path:
    """`OUT.mp4` -> `OUT.json`."""
    return pathlib.Path(out).with_suffix(".json")


def make_record(out, cfg, ckpt, song, *, model_spec, model_digest, song_digest, demo, frames, total_frames, compilations, timeline_source=None, replay=None) -> dict:
    """OUT.json's content: everything needed to render the same video again (`gvjax render --from`)."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    record = {
        RECORD_KEY: 1,
        "config": cfg.to_dict(),
        "model": {"spec": model_spec, "sha256": model_digest, "generator": ckpt.config.to_dict(), "provenance": ckpt.provenance},
        "audio": {"path": None if demo else str(pathlib.Path(song).absolute()), "demo": demo, "sha256": song_digest},
        "timeline": None if timeline_source is None else {
            "name": timeline_source[0], "sha256": hashlib.sha256(timeline_source[1].encode()).hexdigest(), "toml": timeline_source[1],
        },
        "files": [[what, str(pathlib.Path(path).absolute()), sha256_file(path)] for what, path in (
            *((f"stem {name}", path) for name, path in cfg.stems), *((("keyframes file", cfg.keyframes_npy),) if cfg.keyframes_npy else ()),
        )],
        "output": str(out.absolute()),
        "frames": frames,
        "total_frames": total_frames,
        "compilations": compilations,
        "precision": describe_precision(cfg.dtype),
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "processes": jax.process_count(),
        "packages": versions,
    }
    if replay:
        record["replayed_from"] = replay
    return record


def read_record(path: str | os.PathLike) -> dict:
    """Parse and check an OUT.json written by a render: every field `--from` reads has its type.

    The config itself is checked when `RenderConfig.from_dict` builds it.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
        record = json.loads(text)
    except FileNotFoundError:
        raise GvjaxError(f"no such render record: {path}") from None
    except IsADirectoryError:
        raise GvjaxError(f"{path} is a directory, not a render record") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GvjaxError(f"{path} is not a render record (invalid JSON: {e})") from None
    if not isinstance(record, dict) or record.get(RECORD_KEY) != 1 or "config" not in record:
        raise GvjaxError(f"{path} is not a gvjax render record")

    def bad(what):
        raise GvjaxError(f"{path}: {what}")

    if not isinstance(record["config"], dict):
        bad("config must be an object")
    model, audio, tl = record.get("model"), record.get("audio"), record.get("timeline")
    if not isinstance(model, dict) or not isinstance(model.get("spec"), str) or not isinstance(model.get("sha256"), str):
        bad("model must be an object with a spec and a sha256")
    if not isinstance(audio, dict) or not isinstance(audio.get("demo"), bool) or not isinstance(audio.get("sha256"), str):
        bad("audio must be an object with demo (true/false) and a sha256")
    if not audio["demo"] and not isinstance(audio.get("path"), str):
        bad("audio.path must be the song's path")
    if tl is not None and not (isinstance(tl, dict) and all(isinstance(tl.get(k), str) for k in ("name", "sha256", "toml"))):
        bad("timeline must be null or an object with name, sha256 and toml")
    files = record.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, list) and len(f) == 3 and all(isinstance(v, str) for v in f) for f in files):
        bad("files must be a list of [what, path, sha256]")
    return record
