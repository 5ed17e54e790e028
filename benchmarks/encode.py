"""Encoding speed at 1080p: one ffmpeg (libx264) process vs segments encoded by N at once.

    python benchmarks/encode.py [--frames 240] [--workers 1,2] [--size 1920x1080]

Frames are synthetic (a moving pattern, made once and reused), so this times the encoder
alone: `gvjax.render.segments.SegmentWriter` with 2-second segments at 30 fps, joined
without re-encoding (`concat_segments`), against one `VideoWriter` stream. Reports
frames/s and the ratio, measured in one run on the same frames.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import numpy as np

from gvjax.render.segments import SegmentWriter, concat_segments
from gvjax.render.video import VideoWriter


def pattern(n: int, width: int, height: int) -> np.ndarray:
    """uint8 `[n, H, W, 3]`: a blocky random texture sliding sideways (moderately hard to encode)."""
    rng = np.random.RandomState(0)
    base = (rng.rand(height // 8 + 1, width // 8 + 1, 3) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)[:height, :width]
    return np.stack([np.roll(base, 4 * i, axis=1) for i in range(n)])


def single_fps(frames: np.ndarray, fps: float, folder: pathlib.Path) -> float:
    t0 = time.perf_counter()
    writer = VideoWriter(folder / "single.mp4", width=frames.shape[2], height=frames.shape[1], fps=fps)
    for i in range(0, len(frames), 8):
        writer.write(frames[i : i + 8])
    writer.close()
    return len(frames) / (time.perf_counter() - t0)


def segmented_fps(frames: np.ndarray, fps: float, workers: int, folder: pathlib.Path) -> float:
    parts = folder / f"parts{workers}"
    parts.mkdir()
    t0 = time.perf_counter()
    writer = SegmentWriter(parts, segment_frames=int(2 * fps), workers=workers, width=frames.shape[2], height=frames.shape[1], fps=fps, crf=18)
    for i in range(0, len(frames), 8):
        writer.write(frames[i : i + 8])
    writer.close()
    concat_segments(parts, writer.segment, folder / f"joined{workers}.mp4", fps=fps)
    return len(frames) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--size", default="1920x1080")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    frames = pattern(args.frames, width, height)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        base = single_fps(frames, 30.0, folder)
        print(f"| encoder ({width}x{height}, {args.frames} frames) | frames/s | vs one stream |")
        print("|---|---:|---:|")
        print(f"| one ffmpeg stream | {base:.1f} | 1.00x |")
        for w in (int(v) for v in args.workers.split(",")):
            fps = segmented_fps(frames, 30.0, w, folder)
            print(f"| segments, {w} worker(s) | {fps:.1f} | {fps / base:.2f}x |")


if __name__ == "__main__":
    main()
