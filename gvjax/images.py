"""Image conversion and PNG files: generator output in [-1, 1] -> uint8 -> disk."""

from __future__ import annotations

import os
import pathlib

import numpy as np


def to_uint8(img: np.ndarray) -> np.ndarray:
    """`[..., H, W, C]` float in about [-1, 1] -> uint8, as NVIDIA's generate.py: `clip(x * 127.5 + 128)`."""
    return np.clip(np.asarray(img, np.float32) * 127.5 + 128, 0, 255).astype(np.uint8)


def write_png(path: str | os.PathLike, img_uint8: np.ndarray) -> None:
    """Write `[H, W, C]` uint8 (C = 1 or 3) as PNG, atomically (temp file then rename)."""
    from PIL import Image

    path = pathlib.Path(path)
    arr = np.asarray(img_uint8)
    image = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    from gvjax.outputs import atomic_output

    with atomic_output(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def read_png(path: str | os.PathLike) -> np.ndarray:
    """`[H, W, C]` uint8 of a PNG."""
    from PIL import Image

    with Image.open(path) as image:
        arr = np.asarray(image)
    return arr[..., None] if arr.ndim == 2 else arr
