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


def image_grid(images: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """uint8 `[N, H, W, C]` -> one `[rows*H, cols*W, C]` image (N >= cols * rows; extra images unused)."""
    cols, rows = grid
    n, h, w, c = images.shape
    return images[: cols * rows].reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


LABEL_HEIGHT = 14  # pixels of the caption strip under each contact-sheet tile


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[H, W, C]` -> `[size, size, C]` (Lanczos; unchanged when already that size)."""
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return img
    arr = img[..., 0] if img.shape[-1] == 1 else img
    out = np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.LANCZOS))
    return out[..., None] if out.ndim == 2 else out


def caption(text: str, width: int, height: int = LABEL_HEIGHT) -> np.ndarray:
    """uint8 `[height, width, 3]`: black `text` (Pillow's built-in bitmap font) on white, left-aligned."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(strip).text((3, 1), text, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(strip)


def contact_sheet(tiles: list[tuple[str, np.ndarray]], *, cols: int, tile: int) -> np.ndarray:
    """uint8 sheet of `(caption, image [H, W, C] uint8)` tiles, `cols` a row, each resized to
    `tile` px with its caption in a strip below: `[rows * (tile + LABEL_HEIGHT), cols * tile, 3]`.
    Empty cells of the last row are white."""
    rows = -(-len(tiles) // cols)
    cells = np.full((rows * cols, tile + LABEL_HEIGHT, tile, 3), 255, np.uint8)
    for i, (text, img) in enumerate(tiles):
        img = resize(img, tile)
        cells[i, :tile] = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img
        cells[i, tile:] = caption(text, tile)
    return image_grid(cells, (cols, rows))
