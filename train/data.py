"""Training images: a folder or zip of png/jpg, centre-cropped and resized, in a deterministic order.

`ImageDataset(path, resolution, channels)` reads every image once when it opens (so corrupt
files are found, skipped and counted up front, never mid-run) and keeps the resized uint8
pixels `[R, R, C]` in memory. `batch_indices(n, seed, step, batch)` is a pure function of the
step: images come in epochs, each a permutation drawn from `(seed, epoch)`, so a resumed run
sees exactly the images an uninterrupted one would. `Prefetcher` assembles upcoming batches
in a background thread.
"""

from __future__ import annotations

import io
import os
import pathlib
import queue
import threading
import zipfile
from typing import Iterator

import numpy as np

from gvjax.errors import GvjaxError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def list_images(path: pathlib.Path) -> list[str]:
    """Sorted names of the png/jpg files in a folder (recursively) or a zip archive."""
    if path.is_dir():
        names = [str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    else:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(names)


def center_crop_resize(im, resolution: int, channels: int) -> np.ndarray:
    """PIL image -> uint8 `[R, R, channels]`: flatten transparency onto white, centre-crop a square, Lanczos resize."""
    from PIL import Image

    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    im = im.convert("RGB" if channels == 3 else "L")
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    if side != resolution:
        im = im.resize((resolution, resolution), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.uint8)
    return arr.reshape(resolution, resolution, channels)


def decode_image(data: bytes, resolution: int, channels: int) -> np.ndarray:
    """Encoded bytes -> uint8 `[R, R, C]`; raises OSError / ValueError on a corrupt image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return center_crop_resize(im, resolution, channels)


class ImageDataset:
    """The images of a folder or zip, resized to `resolution`, corrupt ones skipped.

    Attributes:
      images: uint8 `[N, R, R, C]`, in the sorted order of `names`.
      names: the readable files.
      skipped: names of files that could not be decoded.
    """

    def __init__(self, path: str | os.PathLike, resolution: int, channels: int = 3):
        from PIL import Image

        path = pathlib.Path(path)
        if not path.exists():
            raise GvjaxError(f"no such dataset: {path}")
        if not path.is_dir() and not zipfile.is_zipfile(path):
            raise GvjaxError(f"{path} is neither a folder nor a zip archive of images")
        if channels not in (1, 3):
            raise GvjaxError(f"training needs 1 or 3 image channels, the model has {channels}")
        names = list_images(path)
        if not names:
            raise GvjaxError(f"{path} holds no png or jpg images")
        self.path, self.resolution, self.channels = path, resolution, channels
        self.names, self.skipped, images = [], [], []
        zf = None if path.is_dir() else zipfile.ZipFile(path)
        try:
            for name in names:
                try:
                    data = (path / name).read_bytes() if zf is None else zf.read(name)
                    images.append(decode_image(data, resolution, channels))
                    self.names.append(name)
                except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, zipfile.BadZipFile):
                    self.skipped.append(name)
        finally:
            if zf is not None:
                zf.close()
        if not images:
            raise GvjaxError(f"{path}: none of its {len(names)} images could be read")
        self.images = np.stack(images)

    def __len__(self) -> int:
        return len(self.names)


def batch_indices(n: int, seed: int, step: int, batch: int) -> np.ndarray:
    """Dataset indices `[batch]` of training step `step`.

    Position k = step * batch + i of the endless stream is element `k mod n` of epoch
    `k // n`'s permutation, drawn from `np.random.default_rng([seed, epoch])`.
    """
    out = np.empty(batch, np.int64)
    start = step * batch
    cache: dict[int, np.ndarray] = {}
    for i in range(batch):
        epoch, pos = divmod(start + i, n)
        if epoch not in cache:
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out[i] = cache[epoch][pos]
    return out


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 `[..., C]` -> float32 in [-1, 1] (`x / 127.5 - 1`)."""
    return images.astype(np.float32) / 127.5 - 1.0


class Prefetcher:
    """Background thread that prepares the batches of steps `start, start + 1, ...`.

    `next()` returns `(step, images uint8 [batch, R, R, C])`. `depth` batches are kept ready.
    Use as a context manager (or call `close`) to stop the thread.
    """

    def __init__(self, dataset: ImageDataset, seed: int, batch: int, start: int, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._args = (dataset, seed, batch)
        self._thread = threading.Thread(target=self._run, args=(start,), name="gvjax-prefetch", daemon=True)
        self._thread.start()

    def _run(self, step: int) -> None:
        dataset, seed, batch = self._args
        while not self._stop.is_set():
            item = (step, dataset.images[batch_indices(len(dataset), seed, step, batch)])
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            step += 1

    def next(self) -> tuple[int, np.ndarray]:
        return self._queue.get()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            yield self.next()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
