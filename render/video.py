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
import tempfile
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


def ffmpeg_failure(stderr: str, what: str) -> GvjaxError:
    """One line for a failed ffmpeg run: the real cause (a full disk says so), not its log."""
    from gvjax import chatter

    chatter.note("ffmpeg", stderr)
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    text = "\n".join(lines)
    if "No space left on device" in text:
        return GvjaxError(f"{what}: no space left on the device")
    if "Read-only file system" in text:
        return GvjaxError(f"{what}: the output folder is on a read-only file system")
    if "Permission denied" in text:
        return GvjaxError(f"{what}: permission denied")
    return GvjaxError(f"{what}: {lines[-1] if lines else 'ffmpeg failed'}")


class VideoWriter:
    """H.264 (yuv420p) mp4 writer fed with uint8 frame batches `[B, H, W, 3]`.

    One ffmpeg process reads raw RGB frames on stdin; its log goes to a temporary file that
    is read only to explain a failure (it never reaches the user's terminal). Encoding runs on
    a background thread; `write` blocks only when `queue_batches` batches are waiting.
    `close()` flushes and returns the number of frames written.
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: float, crf: int = 18, queue_batches: int = 2,
                 container: str = "mp4"):
        if width % 2 or height % 2:
            raise GvjaxError(f"video size {width}x{height} must have even width and height (H.264 yuv420p)")
        self.path = pathlib.Path(path)
        self.frames = 0
        self._shape = (height, width, 3)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_batches)
        self._error: BaseException | None = None
        self._ended = False
        self._log = tempfile.TemporaryFile()
        cmd = [
            ffmpeg_exe(), "-y", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{fps!r}", "-i", "-",
            "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(int(crf)), "-preset", "veryfast",
            # raw H.264 carries no timestamps: without B-frames (decode order = display order) the
            # muxer's generated ones are exact, so joined segments neither drop nor repeat a frame
            *(["-bf", "0"] if container == "h264" else []),
            "-f", container, str(self.path),
        ]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        self._thread = threading.Thread(target=self._encode, name="gvjax-encoder", daemon=True)
        self._thread.start()

    def _encode(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is _STOP:
                    break
                for frame in batch:
                    self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                    self.frames += 1
        except BaseException as e:  # reported on the next write/close
            self._error = e
            while self._queue.get() is not _STOP:  # drain so the producer never blocks forever
                pass
        finally:
            try:
                self._proc.stdin.close()  # end of input: ffmpeg finishes the file now
            except OSError:
                pass

    def _failure(self) -> GvjaxError:
        self._log.seek(0)
        return ffmpeg_failure(self._log.read().decode(errors="replace"), "the video encoder failed")

    def write(self, frames: np.ndarray) -> None:
        """Queue `[B, H, W, 3]` uint8 frames for encoding."""
        if self._error is not None:
            self._stop()
            raise self._failure()
        frames = np.asarray(frames, np.uint8)
        if frames.shape[1:] != self._shape:
            raise ValueError(f"frames of shape {frames.shape[1:]} do not match the video's {self._shape}")
        self._queue.put(frames)

    def end_input(self) -> None:
        """No more frames: ffmpeg may finish the file while the caller goes on (`close` waits)."""
        if not self._ended:
            self._ended = True
            self._queue.put(_STOP)

    def _stop(self) -> int:
        if self._thread.is_alive():
            self.end_input()
            self._thread.join()
        return self._proc.wait()

    def close(self) -> int:
        """Flush the queue, finish the mp4 and return the number of frames written."""
        code = self._stop()
        if self._error is not None or code != 0:
            raise self._failure()
        return self.frames


def mux_audio(
    video: pathlib.Path, audio: pathlib.Path, out: pathlib.Path, *, start: float, duration: float, muxer: str = "mp4", gain: float = 1.0
) -> None:
    """Write `out`: the video stream of `video` (copied) plus `audio` from `start` for `duration` s (AAC).

    gain: applied to the audio first (`gvjax.audio.peak_gain` brings float files louder than
    full scale within it; ffmpeg's AAC encoder fails or stalls on them otherwise).
    """
    volume = [] if gain == 1.0 else ["-af", f"volume={gain!r}"]
    cmd = [
        ffmpeg_exe(), "-y", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", str(video),
        "-ss", f"{start:.6f}", "-t", f"{duration:.6f}", "-i", str(audio),
        "-map", "0:v:0", "-map", "1:a:0", *volume, "-c:v", "copy", "-c:a", "aac", "-b:a", "192k",
        "-shortest", *(["-movflags", "+faststart"] if muxer in ("mp4", "mov") else []), "-f", muxer, str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        raise ffmpeg_failure(result.stderr, "ffmpeg could not add the audio")


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
