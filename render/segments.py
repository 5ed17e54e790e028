"""Segment-parallel encoding: independent ffmpeg processes, joined without re-encoding.

The video is cut into segments of `segment_frames` frames. Each segment is its own raw H.264
stream (`seg00000.h264`, ...) written by its own ffmpeg process; up to `workers` of them
encode at once, so one slow libx264 never makes the device wait. At the end the segments
are joined byte by byte and put in an mp4 with `-c copy` (no second encode).

The segments live in a folder beside the output, `OUT.mp4.gvjax-partial/`, with a
`manifest.json` (what is being rendered) and a `README.txt` that says what the folder is. A
segment file appears only when it is complete (written as `.tmp`, then renamed), so after a
kill -9 the folder holds exactly the finished segments and `gvjax render ... --resume`
continues from the first missing one. A render that finishes, fails or is interrupted
removes the folder; only a hard kill leaves it.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np

from gvjax.errors import GvjaxError
from gvjax.outputs import remove

from gvjax.render.video import VideoWriter, ffmpeg_exe, ffmpeg_failure

PARTIAL_SUFFIX = ".gvjax-partial"
MANIFEST = "manifest.json"


def partial_dir(out: pathlib.Path) -> pathlib.Path:
    """`OUT.mp4` -> `OUT.mp4.gvjax-partial/`."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def process_partial_dir(out: pathlib.Path, process_id: int) -> pathlib.Path:
    """Process `process_id`'s (> 0) segments in a multi-process render: `OUT.mp4.gvjax-partial-p1/`, ..."""
    return out.with_name(f"{out.name}{PARTIAL_SUFFIX}-p{process_id}")


def segment_path(folder: pathlib.Path, index: int) -> pathlib.Path:
    """Segment `index`: a raw H.264 (Annex B) stream, so segments join by concatenating bytes."""
    return folder / f"seg{index:05d}.h264"


def finished_segments(folder: pathlib.Path) -> int:
    """How many segments, from the first, are complete in `folder` (0 when none)."""
    n = 0
    while segment_path(folder, n).is_file():
        n += 1
    return n


def read_manifest(folder: pathlib.Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def start_partial(folder: pathlib.Path, manifest: dict, out: pathlib.Path) -> None:
    """Create the segments folder with its manifest and a README for whoever finds it."""
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if manifest.get("process"):
        text = (f"Segments of process {manifest['process']} of a multi-process gvjax render of {out.name} that did not finish\n"
                "(a process of the run was killed). They cannot be resumed: delete this folder.\n")
    else:
        text = (f"A gvjax render of {out.name} that did not finish (the process was killed).\n"
                f"Run the same `gvjax render ... -o {out.name}` command with --resume to continue it from the\n"
                "last finished segment, or delete this folder.\n")
    (folder / "README.txt").write_text(text)


class SegmentWriter:
    """Frames in, in order; segment files out, `workers` ffmpeg processes at a time.

    `write(frames [B, H, W, 3] uint8)` routes frames to the segment they belong to, starting
    at segment `first_segment`. A segment's writer is closed (and the file renamed into
    place) as soon as its last frame is queued; its ffmpeg finishes in the background while
    the next segments are fed, bounded by `workers` open segments.
    """

    def __init__(self, folder: pathlib.Path, *, segment_frames: int, workers: int, width: int, height: int, fps: float, crf: int,
                 first_segment: int = 0):
        if segment_frames < 1 or workers < 1:
            raise ValueError("segment_frames and workers must be >= 1")
        self.folder, self.segment_frames, self.workers = folder, segment_frames, workers
        self._video = dict(width=width, height=height, fps=fps, crf=crf)
        self.segment = first_segment
        self.frames_in_segment = 0
        self.frames = 0  # written by this writer (not counting segments finished before it)
        self._open: collections.deque[tuple[int, VideoWriter]] = collections.deque()
        self._current: VideoWriter | None = None

    def _tmp(self, index: int) -> pathlib.Path:
        return self.folder / f"seg{index:05d}.tmp.h264"

    def _finish_oldest(self) -> None:
        index, writer = self._open[0]  # dropped only once its file is in place: an interrupt here retries it
        writer.close()
        os.replace(self._tmp(index), segment_path(self.folder, index))
        self._open.popleft()

    def _start_segment(self) -> None:
        while len(self._open) >= self.workers:
            self._finish_oldest()
        queue_frames = self.segment_frames  # a whole segment may wait: that is what lets the next one start
        self._current = VideoWriter(self._tmp(self.segment), **self._video, queue_batches=queue_frames, container="h264")
        self._open.append((self.segment, self._current))

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, np.uint8)
        while len(frames):
            if self._current is None:
                self._start_segment()
            take = min(len(frames), self.segment_frames - self.frames_in_segment)
            for frame in frames[:take]:  # one frame a queue item: the queue bounds the frames held
                self._current.write(frame[None])
                self.frames_in_segment += 1  # counted per frame: an interrupt between two stays exact
                self.frames += 1
            frames = frames[take:]
            if self.frames_in_segment == self.segment_frames:
                self._current.end_input()  # its ffmpeg finishes in the background
                self._current, self.frames_in_segment = None, 0
                self.segment += 1

    def close(self) -> int:
        """Finish every open segment (a last, shorter one included); returns the frames written."""
        if self._current is not None and self.frames_in_segment == 0:
            self._open.pop()[1].close()
            remove(self._tmp(self.segment))
        elif self._current is not None:
            self.segment += 1
        self._current = None
        error = None
        while self._open:
            try:
                self._finish_oldest()
            except GvjaxError as e:  # that segment is lost: drop it and finish the others
                index, _ = self._open.popleft()
                remove(self._tmp(index))
                error = error or e
        if error is not None:
            raise error
        return self.frames

    def abort(self) -> None:
        """Stop every ffmpeg without finishing their files (a failure elsewhere)."""
        for index, writer in self._open:
            try:
                writer.close()
            except GvjaxError:
                pass
            remove(self._tmp(index))
        self._open.clear()
        self._current = None


def concat_segments(folder: pathlib.Path, count: int, out: pathlib.Path, *, fps: float) -> None:
    """Join segments 0 .. count-1 into the mp4 `out` without re-encoding.

    Each segment is a raw H.264 stream that begins with its own headers and an IDR frame, so
    their bytes concatenate into one valid stream; ffmpeg then only puts it in an mp4 with
    timestamps at `fps` (no gaps or repeated frames at the joins, as a container-level concat
    of mp4 files can give).
    """
    joined = folder / "joined.h264"
    try:
        with open(joined, "wb") as dst:
            for i in range(count):
                with open(segment_path(folder, i), "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        cmd = [ffmpeg_exe(), "-y", "-nostdin", "-hide_banner", "-loglevel", "error", "-fflags", "+genpts",
               "-f", "h264", "-framerate", f"{fps!r}", "-i", str(joined), "-c", "copy", "-f", "mp4", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if result.returncode != 0:
            raise ffmpeg_failure(result.stderr, "ffmpeg could not join the video segments")
    finally:
        joined.unlink(missing_ok=True)
