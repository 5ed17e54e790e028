"""Song + model -> video: audio features, keyframes, motion, the compiled step, ffmpeg, OUT.json."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gvjax.audio import audio_duration, compute_features
from gvjax.checkpoint import Checkpoint
from gvjax.errors import GvjaxError
from gvjax.model import Generator
from gvjax.spline import keyframes_from_npy, keyframes_from_seeds
from gvjax.warps import channel_mask, cluster_channels

from gvjax.render.config import SPLINE_ALPHAS, RenderConfig
from gvjax.render.step import FrameSpec, RenderStep, check_preview, check_warps
from gvjax.render.timeline import Section, Timeline, load_timeline, plan_frames
from gvjax.render.video import VideoWriter, mux_audio

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


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def variables_digest(variables: Any) -> str:
    """sha256 over every array of a variables tree (paths, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0], key=lambda kv: jax.tree_util.keystr(kv[0])):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{arr.dtype}:{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def check_output_writable(out: pathlib.Path) -> None:
    """Fail early (before any compute) when `out` cannot be written."""
    parent = out.parent
    if not parent.is_dir():
        raise GvjaxError(f"output directory {parent} does not exist")
    if out.is_dir():
        raise GvjaxError(f"output {out} is a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.probe-"):
            pass
    except OSError as e:
        raise GvjaxError(f"output directory {parent} is not writable: {e.strerror}") from None


def section_keyframes(section: Section, ckpt: Checkpoint, keyframes_npy: str | None = None) -> np.ndarray:
    """`[N, num_ws, w_dim]` keyframes of a section: from a `.npy`, or seeds through mapping + truncation."""
    gcfg = ckpt.config
    if keyframes_npy:
        return keyframes_from_npy(keyframes_npy, num_ws=gcfg.num_ws, w_dim=gcfg.w_dim)
    if gcfg.c_dim:
        raise GvjaxError("conditional models are not supported by render yet")
    gen = Generator(gcfg)
    map_fn = jax.jit(lambda z: gen.apply(ckpt.variables, z, truncation_psi=section.truncation_psi, method="map"))
    return keyframes_from_seeds(section.keyframe_seeds(), map_fn, z_dim=gcfg.z_dim)


def default_timeline(cfg: RenderConfig) -> Timeline:
    """The one-section timeline of a render without --timeline: travel only, from cfg's options."""
    return Timeline((Section(
        start=0.0, seeds=cfg.keyframe_seeds, keyframes=cfg.num_keyframes, seed=cfg.seed,
        truncation_psi=cfg.truncation_psi, laps=cfg.laps, laps_per_minute=cfg.laps_per_minute,
        drive=cfg.drive, base_speed=cfg.base_speed, speed_gain=cfg.speed_gain,
    ),))


def channel_masks(slots, ckpt: Checkpoint, keyframes: np.ndarray, cache_dir: pathlib.Path | None) -> dict[int, np.ndarray]:
    """`[C]` masks of the 'channels' warps (index list, random fraction or k-means cluster)."""
    masks = {}
    for k, w in enumerate(slots):
        if w.kind != "channels":
            continue
        c = ckpt.config.channels(w.resolution)
        labels = None
        if w.p("cluster") >= 0:
            labels = cluster_labels(ckpt, keyframes, w.resolution, int(w.p("clusters")), int(w.p("seed")), cache_dir)
        masks[k] = channel_mask(c, channels=w.p("channels"), fraction=w.p("fraction"), seed=int(w.p("seed")), labels=labels, cluster=int(w.p("cluster")))
    return masks


def cluster_labels(ckpt: Checkpoint, keyframes: np.ndarray, res: int, k: int, seed: int, cache_dir: pathlib.Path | None) -> np.ndarray:
    """k-means labels `[C]` of the channels at block `res`, from the keyframes' features; cached in `cache_dir`."""
    cache = None if cache_dir is None else cache_dir / "clusters" / f"res{res}_k{k}_seed{seed}.npy"
    if cache is not None and cache.exists():
        return np.load(cache)
    gen = Generator(ckpt.config)
    x, _ = jax.vmap(lambda w: gen.apply(ckpt.variables, w, upto_res=res, method="run_blocks"))(jnp.asarray(keyframes))
    labels = cluster_channels(np.asarray(x), k, seed=seed)
    if cache is not None:
        try:
            cache.parent.mkdir(exist_ok=True)
            np.save(cache, labels)
        except OSError:
            pass  # a read-only checkpoint directory: recompute next time
    return labels


class Progress:
    """A one-line progress report on stderr: frames done, frames/s, ETA."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.start = total, enabled, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last = -float("inf")

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        fps = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / fps if fps > 0 else float("nan")
        line = f"render {done}/{self.total} frames  {fps:.1f} frames/s  ETA {eta:.0f}s"
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif done == self.total or elapsed - self._last >= 5:
            print(line, file=sys.stderr, flush=True)
            self._last = elapsed

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def render_video(
    cfg: RenderConfig,
    ckpt: Checkpoint,
    song: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model_spec: str = "",
    demo: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> RenderResult:
    """Render `song` with `ckpt` to `out` (mp4 with the song's range muxed in) and `out`.json.

    `on_batch(frames_done)` is called after each batch is queued (tests use it to interrupt).
    Ctrl-C keeps the frames done so far as a playable video and raises RenderInterrupted.
    """
    t_start = time.perf_counter()
    out = pathlib.Path(out)
    song = pathlib.Path(song)
    check_output_writable(out)
    timeline = load_timeline(cfg.timeline) if cfg.timeline else default_timeline(cfg)
    check_warps(ckpt.config, timeline.slots)
    total_seconds = audio_duration(song)
    if cfg.start >= total_seconds:
        raise GvjaxError(f"--start {cfg.start:g}s is past the end of {song.name} ({total_seconds:.2f}s)")
    preview_res = None
    if cfg.preview:
        preview_res = check_preview(ckpt.config, cfg.preview_res or max(4, ckpt.config.img_resolution // 4))
    features = compute_features(song, cfg.fps, stems=dict(cfg.stems), config=cfg.features, start=cfg.start, duration=cfg.duration)
    n_frames = features.n_frames
    if n_frames < 1:
        raise GvjaxError(f"{song.name}: the rendered range is shorter than one frame at {cfg.fps:g} fps")
    plan = plan_frames(timeline, features, fps=cfg.fps, start=cfg.start)
    keyframes = [section_keyframes(sec, ckpt, None if cfg.timeline else cfg.keyframes_npy) for sec in timeline.sections]
    res = ckpt.config.img_resolution
    width, height = cfg.size or (res * cfg.scale, res * cfg.scale)
    slots = timeline.slots
    spec = FrameSpec(width, height, SPLINE_ALPHAS[cfg.spline], cfg.noise_mode, preview_res, cfg.fps, slots, cfg.scale)
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[cfg.dtype]
    cache_dir = pathlib.Path(model_spec) if model_spec and pathlib.Path(model_spec).is_dir() else None
    masks = channel_masks(slots, ckpt, keyframes[0], cache_dir)
    step = RenderStep(ckpt.config, ckpt.variables, spec, batch=cfg.batch, seed=cfg.seed, dtype=dtype, masks=masks)
    batches = [(a, min(a + step.batch, b)) for a, b in plan.segments() for a in range(a, b, step.batch)]

    tmp_video = out.with_name(f".{out.name}.video.mp4")
    tmp_out = out.with_name(f".{out.name}.tmp.mp4")
    writer = VideoWriter(tmp_video, width=width, height=height, fps=cfg.fps, crf=cfg.crf)
    bar = Progress(n_frames, progress)
    interrupted = False
    try:
        try:
            pending = None  # (device frames, count): fetch batch i while batch i+1 computes
            t_warm = None
            for first, last in batches:
                idx = np.arange(first, last)
                sa, sb = int(plan.section_a[first]), int(plan.section_b[first])
                frames = step(keyframes[sa], plan.t_a[idx], keyframes[sb], plan.t_b[idx], plan.fade[idx], idx, plan.strengths[idx])
                if pending is not None:
                    writer.write(np.asarray(pending[0])[: pending[1]])
                    bar.update(first)
                    if on_batch:
                        on_batch(first)
                else:
                    jax.block_until_ready(frames)
                    t_warm = time.perf_counter()
                pending = (frames, len(idx))
            writer.write(np.asarray(pending[0])[: pending[1]])
            bar.update(n_frames)
        except KeyboardInterrupt:
            interrupted = True
        done = writer.close()
        t_loop_end = time.perf_counter()
        bar.close()
        if done == 0:
            raise RenderInterrupted("interrupted before the first frame: nothing was written")
        mux_audio(tmp_video, song, tmp_out, start=cfg.start, duration=done / cfg.fps)
        os.replace(tmp_out, out)
    finally:
        for p in (tmp_video, tmp_out):
            p.unlink(missing_ok=True)
    record = write_record(
        out, cfg, ckpt, song, model_spec=model_spec, demo=demo, frames=done, total_frames=n_frames, compilations=step.compilations
    )
    if interrupted:
        raise RenderInterrupted(f"interrupted: {out} holds the first {done} of {n_frames} frames (playable, with audio)")
    warm_frames = done - min(step.batch, done)
    loop_fps = warm_frames / (t_loop_end - t_warm) if t_warm and warm_frames else float("nan")
    return RenderResult(out, record, done, n_frames, time.perf_counter() - t_start, loop_fps)


def record_path(out: pathlib.Path) -> pathlib.Path:
    """`OUT.mp4` -> `OUT.json`."""
    return out.with_suffix(".json")


def write_record(out, cfg, ckpt, song, *, model_spec, demo, frames, total_frames, compilations) -> pathlib.Path:
    """Write OUT.json: everything needed to render the same video again (`gvjax render --from`)."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    record = {
        "gvjax_render": 1,
        "config": cfg.to_dict(),
        "model": {"spec": model_spec, "sha256": variables_digest(ckpt.variables), "generator": ckpt.config.to_dict(), "provenance": ckpt.provenance},
        "audio": {"path": None if demo else str(pathlib.Path(song).absolute()), "demo": demo, "sha256": sha256_file(song)},
        "output": str(out.absolute()),
        "frames": frames,
        "total_frames": total_frames,
        "compilations": compilations,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "packages": versions,
    }
    path = record_path(out)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_record(path: str | os.PathLike) -> dict:
    """Parse an OUT.json written by a render."""
    path = pathlib.Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise GvjaxError(f"no such render record: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GvjaxError(f"{path} is not a render record (invalid JSON: {e})") from None
    if not isinstance(record, dict) or record.get("gvjax_render") != 1 or "config" not in record:
        raise GvjaxError(f"{path} is not a gvjax render record")
    return record
