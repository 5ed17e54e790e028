"""Video output: stream frames to ffmpeg (imageio-ffmpeg) on a background thread, then mux audio.

Frames never pile up in memory: the queue holds at most `queue_batches` batches, and the
encoder thread hands each one to ffmpeg as soon as it arrives. The video goes to a
temporary file; `mux_audio` adds the song's rendered range and the result is renamed into
place, so the output path only ever holds a complete, playable file.
"""

from __future__ import annotations

import os
import pathlib
import queue
import subprocess
import threading
import warnings

import numpy as np

from gvjax.errors import GvjaxError

_STOP = object()

# JAX warns on every fork because a forked copy of a multithreaded process may deadlock. Our
# forks are subprocess's fork+exec of ffmpeg, which runs no Python code in the child: safe.
warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class VideoWriter:
    """H.264 (yuv420p) mp4 writer fed with uint8 frame batches `[B, H, W, 3]`.

    Encoding runs on a background thread; `write` blocks only when `queue_batches` batches are
    waiting. `close()` flushes and returns the number of frames written.
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: float, crf: int = 18, queue_batches: int = 2):
        import imageio_ffmpeg

        if width % 2 or height % 2:
            raise GvjaxError(f"video size {width}x{height} must have even width and height (H.264 yuv420p)")
        self.path = pathlib.Path(path)
        self.frames = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_batches)
        self._error: BaseException | None = None
        self._writer = imageio_ffmpeg.write_frames(
            str(self.path), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
            macro_block_size=1, output_params=["-crf", str(int(crf)), "-preset", "veryfast"], ffmpeg_log_level="error",
        )
        self._writer.send(None)
        self._thread = threading.Thread(target=self._encode, name="gvjax-encoder", daemon=True)
        self._thread.start()

    def _encode(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is _STOP:
                    break
                for frame in batch:
                    self._writer.send(np.ascontiguousarray(frame))
                    self.frames += 1
        except BaseException as e:  # reported on the next write/close
            self._error = e
            while self._queue.get() is not _STOP:  # drain so the producer never blocks forever
                pass

    def write(self, frames: np.ndarray) -> None:
        """Queue `[B, H, W, 3]` uint8 frames for encoding."""
        if self._error is not None:
            raise GvjaxError(f"video encoder failed: {self._error}")
        self._queue.put(np.asarray(frames, np.uint8))

    def close(self) -> int:
        """Flush the queue, finish the mp4 and return the number of frames written."""
        self._queue.put(_STOP)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise GvjaxError(f"video encoder failed: {self._error}")
        return self.frames


def mux_audio(video: pathlib.Path, audio: pathlib.Path, out: pathlib.Path, *, start: float, duration: float) -> None:
    """Write `out`: the video stream of `video` (copied) plus `audio` from `start` for `duration` s (AAC)."""
    cmd = [
        ffmpeg_exe(), "-y", "-loglevel", "error",
        "-i", str(video),
        "-ss", f"{start:.6f}", "-t", f"{duration:.6f}", "-i", str(audio),
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "192k",
        "-shortest", "-movflags", "+faststart", "-f", "mp4", str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise GvjaxError(f"ffmpeg could not add the audio: {last}")


def probe_streams(path: str | os.PathLike) -> dict:
    """{'video_frames': int, 'video_seconds': float, 'audio_seconds': float | None} by decoding with ffmpeg."""
    import re

    def run(args):
        r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), *args, "-f", "null", "-"], capture_output=True, text=True)
        return r.stderr

    video = run(["-map", "0:v:0"])
    frames = [int(m) for m in re.findall(r"frame=\s*(\d+)", video)]
    times = re.findall(r"time=(\d+):(\d+):([\d.]+)", video)
    audio = run(["-map", "0:a:0"]) if re.search(r"Stream #\d+:\d+.*Audio", video) else None
    atimes = re.findall(r"time=(\d+):(\d+):([\d.]+)", audio) if audio else []

    def secs(t):
        h, m, s = t[-1]
        return int(h) * 3600 + int(m) * 60 + float(s)

    return {
        "video_frames": frames[-1] if frames else 0,
        "video_seconds": secs(times) if times else 0.0,
        "audio_seconds": secs(atimes) if atimes else None,
    }
