"""Procedural fruit on white: a training set we can make without an image model.

Pure numpy + Pillow. Each image holds 1-3 fruits (or one bunch or slice) from: apple, orange,
lemon, lime, pear, cherries, grapes, banana, strawberry, watermelon slice, plum, peach and
kiwi half. Pose (position, rotation, size), colour (per-fruit palettes with jitter), count
and details (stems, leaves, seeds, highlights) vary with the seed.

Drawing works at `SUPERSAMPLE` times the output size and is downsampled (anti-aliasing).
A shape is a union of polygons rasterised into a mask; it is shaded from a height field
(the mask blurred within the shape's bounding box), whose normals give Lambert light, a
specular highlight and darker rims, then composited over the canvas with a soft shadow.
Same `(seed, index)` -> same image, independent of `count`.

With `labels=True`, `write_fruit_dataset` also writes `OUT/labels.json` (`LABELS_FILE`), the
species of every picture as the generator drew them:

    {"species": ["apple", "orange", ...],                  # FRUITS, in this order
     "labels": {"fruit000000.png": 11, ...},                # the picture's species: index of its first fruit
     "fruits": {"fruit000000.png": [11, 3], ...}}           # every fruit drawn, first = "labels"

The training loader reads only png/jpg files, so the folder still trains as it is.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import numpy as np

from gvjax.errors import GvjaxError, check_interrupt, interrupts_between_batches
from gvjax.outputs import atomic_output, check_writable_dir

SUPERSAMPLE = 3
LIGHT = np.array([-0.45, -0.6, 0.66])
LIGHT = LIGHT / np.linalg.norm(LIGHT)
HALF = LIGHT + np.array([0.0, 0.0, 1.0])
HALF = HALF / np.linalg.norm(HALF)
FRUITS = (
    "apple", "orange", "lemon", "lime", "pear", "cherries", "grapes", "banana",
    "strawberry", "watermelon", "plum", "peach", "kiwi",
)
#: fruits that fill a picture on their own (drawn alone, larger)
SINGLE = ("grapes", "watermelon", "banana")


# --- geometry ---------------------------------------------------------------------------------------


def _place(points: np.ndarray, cx: float, cy: float, scale: float, angle: float) -> np.ndarray:
    """Local points `[K, 2]` (unit size, y down) -> canvas pixels: rotate by `angle`, scale, translate."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return points @ rot.T * scale + np.array([cx, cy])


def _ellipse(rx: float, ry: float, n: int = 72, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _polar(radius, n: int = 96) -> np.ndarray:
    """Closed outline from `radius(theta)` (theta 0 = right, pi/2 = down)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = radius(t)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _angle_bump(t, centre: float, width: float) -> np.ndarray:
    d = np.angle(np.exp(1j * (t - centre)))
    return np.exp(-(d**2) / width)


class Canvas:
    """An RGB float image `[S, S, 3]` in [0, 1] being drawn on, S = resolution * SUPERSAMPLE."""

    def __init__(self, resolution: int):
        self.size = resolution * SUPERSAMPLE
        self.rgb = np.ones((self.size, self.size, 3), np.float32)

    def mask(self, polygons: list[np.ndarray], lines: list[tuple[np.ndarray, float]] = (), bounds: np.ndarray | None = None):
        """Union of filled polygons and thick polylines -> (mask `[h, w]` in [0, 1], bbox (x0, y0, x1, y1)).

        The bbox covers the shapes (or the points `bounds`) with a margin for blurring.
        """
        from PIL import Image, ImageDraw

        if bounds is not None:
            pts = bounds
        else:
            pts = np.concatenate([p for p in polygons] + [l for l, _ in lines]) if (polygons or lines) else np.zeros((1, 2))
        pad = int(max([w for _, w in lines], default=0)) + 4 * SUPERSAMPLE + 2
        x0 = int(max(0, math.floor(pts[:, 0].min()) - pad))
        y0 = int(max(0, math.floor(pts[:, 1].min()) - pad))
        x1 = int(min(self.size, math.ceil(pts[:, 0].max()) + pad))
        y1 = int(min(self.size, math.ceil(pts[:, 1].max()) + pad))
        if x1 <= x0 or y1 <= y0:
            return np.zeros((1, 1), np.float32), (0, 0, 1, 1)
        im = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(im)
        off = np.array([x0, y0])
        for p in polygons:
            draw.polygon([tuple(q) for q in (p - off).tolist()], fill=255)
        for line, width in lines:
            q = [tuple(v) for v in (line - off).tolist()]
            draw.line(q, fill=255, width=max(1, int(round(width))), joint="curve")
            r = width / 2
            for end in (q[0], q[-1]):
                draw.ellipse([end[0] - r, end[1] - r, end[0] + r, end[1] + r], fill=255)
        return np.asarray(im, np.float32) / 255.0, (x0, y0, x1, y1)

    def shade(
        self,
        mask: np.ndarray,
        bbox,
        color,
        *,
        roundness: float = 0.25,
        gloss: float = 0.35,
        shininess: float = 30.0,
        bump: float = 0.0,
        rng: np.random.Generator | None = None,
        texture: np.ndarray | None = None,
    ) -> None:
        """Shade a shape and composite it.

        roundness: blur radius of the height field relative to the shape's size (domed vs flat);
        gloss, shininess: specular strength and exponent; bump: strength of a fine noise relief
        (orange peel); texture: optional per-pixel colour `[h, w, 3]` replacing `color`.
        """
        from PIL import Image, ImageFilter

        if min(mask.shape) < 2 or not mask.any():
            return  # entirely off the canvas
        x0, y0, x1, y1 = bbox
        h, w = mask.shape
        extent = math.sqrt(float(mask.sum()) + 1.0)
        radius = max(1.0, roundness * extent)
        height = np.asarray(
            Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius)), np.float32
        ) / 255.0
        height = np.sqrt(np.clip(height, 0, 1)) * mask
        if bump and rng is not None:
            noise = rng.standard_normal((max(2, h // 3), max(2, w // 3))).astype(np.float32)
            noise_im = Image.fromarray(noise).resize((w, h), Image.BILINEAR)
            height = height + bump * np.asarray(noise_im, np.float32) * mask
        gy, gx = np.gradient(height)
        k = radius * 1.6
        normal = np.stack([-gx * k, -gy * k, np.ones_like(gx)], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        lambert = np.clip(normal @ LIGHT, 0, 1)[..., None]
        spec = (np.clip(normal @ HALF, 0, 1) ** shininess)[..., None]
        base = np.asarray(color, np.float32)[None, None, :] if texture is None else texture
        rgb = base * (0.38 + 0.72 * lambert) + gloss * spec
        alpha = mask[..., None]
        region = self.rgb[y0:y1, x0:x1]
        region[...] = region * (1 - alpha) + np.clip(rgb, 0, 1) * alpha

    def fill(self, polygons, color, lines=(), *, roundness=0.25, gloss=0.2, shininess=20.0, rng=None, bump=0.0):
        """Rasterise and shade in one go."""
        mask, bbox = self.mask(polygons, list(lines))
        self.shade(mask, bbox, color, roundness=roundness, gloss=gloss, shininess=shininess, rng=rng, bump=bump)

    def shadow(self, cx: float, cy: float, rx: float, ry: float, strength: float = 0.22) -> None:
        """A soft contact shadow (darkens the canvas)."""
        from PIL import Image, ImageFilter

        inner, (x0, y0, x1, y1) = self.mask([_ellipse(rx, ry, cx=cx, cy=cy)], bounds=_ellipse(rx * 1.4, ry * 2.5, cx=cx, cy=cy))
        blurred = np.asarray(
            Image.fromarray((inner * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(ry * 0.6 + 1)),
            np.float32,
        ) / 255.0
        self.rgb[y0:y1, x0:x1] *= (1 - strength * blurred)[..., None]

    def image(self, resolution: int) -> np.ndarray:
        """uint8 `[R, R, 3]`, box-downsampled from the supersampled canvas."""
        s = SUPERSAMPLE
        small = self.rgb.reshape(resolution, s, resolution, s, 3).mean(axis=(1, 3))
        return np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8)


# --- colours ----------------------------------------------------------------------------------------


def _jitter(rng: np.random.Generator, rgb, amount: float = 0.06) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3), 0, 1)


def _pick(rng: np.random.Generator, palette) -> np.ndarray:
    return _jitter(rng, palette[rng.integers(len(palette))])


STEM = ((0.36, 0.24, 0.12), (0.30, 0.22, 0.10), (0.42, 0.30, 0.15))
LEAF = ((0.20, 0.55, 0.15), (0.28, 0.62, 0.20), (0.15, 0.45, 0.12))


# --- details ----------------------------------------------------------------------------------------


def _stem(cv: Canvas, rng, base: np.ndarray, cx, cy, size, angle, length=0.45, width=0.07, bend=0.15):
    t = np.linspace(0, 1, 12)
    local = np.stack([bend * np.sin(t * np.pi / 2) * rng.choice([-1, 1]), -t * length], axis=1) + base
    cv.fill([], _pick(rng, STEM), lines=[(_place(local, cx, cy, size, angle), width * size)], roundness=0.5, gloss=0.1)


def _leaf(cv: Canvas, rng, base: np.ndarray, cx, cy, size, angle, leaf_angle, length=0.7):
    t = np.linspace(0, 1, 24)
    half = 0.28 * np.sin(np.pi * t) ** 0.9
    outline = np.concatenate([np.stack([t, -half], 1), np.stack([t[::-1], half[::-1]], 1)]) * length
    c, s = math.cos(leaf_angle), math.sin(leaf_angle)
    outline = outline @ np.array([[c, -s], [s, c]]).T + base
    color = _pick(rng, LEAF)
    cv.fill([_place(outline, cx, cy, size, angle)], color, roundness=0.35, gloss=0.25)
    rib = np.stack([t * 0.9 * length, np.zeros_like(t)], 1) @ np.array([[c, -s], [s, c]]).T + base
    cv.fill([], color * 0.7, lines=[(_place(rib, cx, cy, size, angle), max(1.0, 0.025 * size))], roundness=1.0, gloss=0.0)


def _seeds(cv: Canvas, rng, points: np.ndarray, color, rx: float, ry: float, angles=None) -> None:
    polys = []
    for i, (x, y) in enumerate(points):
        e = _ellipse(rx, ry, n=12)
        if angles is not None:
            e = _place(e, 0, 0, 1, angles[i])
        polys.append(e + np.array([x, y]))
    if polys:
        cv.fill(polys, color, roundness=0.6, gloss=0.3, shininess=12)


# --- fruits: each draws itself centred at (cx, cy) with radius about `size` ---------------------------


def apple(cv, rng, cx, cy, size, angle):
    width = rng.uniform(1.0, 1.12)
    outline = _polar(lambda t: (1 - 0.16 * _angle_bump(t, -np.pi / 2, 0.12) - 0.05 * _angle_bump(t, np.pi / 2, 0.2))
                     * np.sqrt(1 / ((np.cos(t) / width) ** 2 + np.sin(t) ** 2)))
    palette = ((0.78, 0.08, 0.08), (0.62, 0.05, 0.10), (0.55, 0.78, 0.20), (0.92, 0.78, 0.22), (0.85, 0.30, 0.12))
    color = _pick(rng, palette)
    cv.fill([_place(outline, cx, cy, size, angle)], color, roundness=0.22, gloss=0.45, shininess=40)
    _stem(cv, rng, np.array([0.0, -0.78]), cx, cy, size, angle)
    if rng.random() < 0.6:
        _leaf(cv, rng, np.array([0.03, -1.05]), cx, cy, size, angle, rng.uniform(-0.9, -0.2))


def orange(cv, rng, cx, cy, size, angle):
    outline = _ellipse(1.0, rng.uniform(0.94, 1.0))
    color = _pick(rng, ((0.98, 0.55, 0.05), (0.95, 0.48, 0.02), (1.0, 0.62, 0.10)))
    cv.fill([_place(outline, cx, cy, size, angle)], color, roundness=0.22, gloss=0.25, shininess=18, rng=rng, bump=0.02)
    spot = _ellipse(0.07, 0.06) + np.array([0.05, -0.55])
    cv.fill([_place(spot, cx, cy, size, angle)], (0.35, 0.40, 0.10), roundness=0.5, gloss=0.0)
    if rng.random() < 0.4:
        _leaf(cv, rng, np.array([0.05, -0.6]), cx, cy, size, angle, rng.uniform(-1.2, -0.3))


def lemon(cv, rng, cx, cy, size, angle, lime=False):
    ry = rng.uniform(0.68, 0.78) if not lime else rng.uniform(0.85, 0.95)
    tip = 0.18 if not lime else 0.06
    outline = _polar(lambda t: np.sqrt(1 / ((np.cos(t) / 1.0) ** 2 + (np.sin(t) / ry) ** 2))
                     + tip * (_angle_bump(t, 0, 0.03) + _angle_bump(t, np.pi, 0.03)))
    palette = ((0.98, 0.88, 0.20), (0.95, 0.82, 0.12)) if not lime else ((0.45, 0.72, 0.15), (0.38, 0.65, 0.10))
    cv.fill([_place(outline, cx, cy, size, angle)], _pick(rng, palette), roundness=0.22, gloss=0.35, shininess=22, rng=rng, bump=0.015)


def lime(cv, rng, cx, cy, size, angle):
    lemon(cv, rng, cx, cy, size * 0.85, angle, lime=True)


def pear(cv, rng, cx, cy, size, angle):
    neck = rng.uniform(0.42, 0.55)
    polys = [
        _ellipse(0.82, 0.78, cx=0, cy=0.32),
        _ellipse(neck, neck * 1.1, cx=0.0, cy=-0.48),
        np.array([[-0.78, 0.25], [-neck * 0.95, -0.45], [neck * 0.95, -0.45], [0.78, 0.25]]),
    ]
    color = _pick(rng, ((0.72, 0.80, 0.22), (0.85, 0.78, 0.25), (0.70, 0.55, 0.25), (0.60, 0.75, 0.20)))
    cv.fill([_place(p, cx, cy, size, angle) for p in polys], color, roundness=0.25, gloss=0.3, shininess=25)
    _stem(cv, rng, np.array([0.0, -0.98]), cx, cy, size, angle, length=0.38, width=0.06)
    if rng.random() < 0.4:
        _leaf(cv, rng, np.array([0.02, -1.15]), cx, cy, size, angle, rng.uniform(-0.8, -0.1), length=0.55)


def cherries(cv, rng, cx, cy, size, angle):
    color = _pick(rng, ((0.62, 0.02, 0.08), (0.50, 0.0, 0.06), (0.78, 0.08, 0.10)))
    top = np.array([rng.uniform(-0.15, 0.15), -1.05])
    n = rng.integers(2, 4)
    xs = np.linspace(-0.55, 0.55, n) + rng.normal(0, 0.05, n)
    ys = 0.45 + rng.normal(0, 0.08, n)
    for x, y in zip(xs, ys):
        t = np.linspace(0, 1, 14)[:, None]
        ctrl = np.array([x * 0.6, -0.6])
        curve = (1 - t) ** 2 * np.array([x, y - 0.32]) + 2 * (1 - t) * t * ctrl + t**2 * top
        cv.fill([], _pick(rng, ((0.30, 0.42, 0.12), (0.35, 0.30, 0.12))), lines=[(_place(curve, cx, cy, size, angle), 0.045 * size)], roundness=0.6, gloss=0.05)
    order = np.argsort(ys)
    for i in order:
        r = rng.uniform(0.32, 0.38)
        outline = _polar(lambda t: r * (1 - 0.1 * _angle_bump(t, -np.pi / 2, 0.1))) + np.array([xs[i], ys[i]])
        cv.fill([_place(outline, cx, cy, size, angle)], _jitter(rng, color, 0.03), roundness=0.3, gloss=0.6, shininess=60)
    if rng.random() < 0.5:
        _leaf(cv, rng, top, cx, cy, size, angle, rng.uniform(-0.6, 0.3), length=0.6)


def grapes(cv, rng, cx, cy, size, angle):
    color = _pick(rng, ((0.35, 0.12, 0.35), (0.28, 0.08, 0.30), (0.60, 0.78, 0.30), (0.70, 0.80, 0.35), (0.50, 0.10, 0.20)))
    rows = [4, 5, 4, 4, 3, 2, 1][: rng.integers(5, 8)]
    r = 0.2
    berries = []
    for j, k in enumerate(rows):
        for i in range(k):
            x = (i - (k - 1) / 2) * 2 * r * 0.95 + rng.normal(0, 0.03)
            y = -0.7 + j * 2 * r * 0.82 + rng.normal(0, 0.03)
            berries.append((x, y))
    stem = np.array([[0.0, -0.7], [0.02, -0.95], [0.08, -1.1]])
    cv.fill([], _pick(rng, STEM), lines=[(_place(stem, cx, cy, size, angle), 0.06 * size)], roundness=0.5, gloss=0.05)
    for x, y in sorted(berries, key=lambda b: b[1] + rng.normal(0, 0.1)):
        e = _ellipse(r * rng.uniform(0.92, 1.05), r * rng.uniform(1.0, 1.12), n=28) + np.array([x, y])
        cv.fill([_place(e, cx, cy, size, angle)], _jitter(rng, color, 0.03), roundness=0.35, gloss=0.5, shininess=45)
    if rng.random() < 0.5:
        _leaf(cv, rng, np.array([0.08, -1.05]), cx, cy, size, angle, rng.uniform(-0.4, 0.4), length=0.8)


def banana(cv, rng, cx, cy, size, angle):
    length, curve, thick = 1.15, rng.uniform(0.35, 0.55), rng.uniform(0.2, 0.26)
    x = np.linspace(-length, length, 40)
    spine = curve * (x / length) ** 2
    half = thick * (1 - (x / length) ** 2) ** 0.55 + 0.02
    upper = np.stack([x, spine - half * 1.1], 1)
    lower = np.stack([x, spine + half * 0.9], 1)
    outline = np.concatenate([upper, lower[::-1]])
    color = _pick(rng, ((0.98, 0.86, 0.25), (0.95, 0.82, 0.18), (0.80, 0.85, 0.25)))
    cv.fill([_place(outline, cx, cy, size, angle)], color, roundness=0.3, gloss=0.25, shininess=15)
    ridge = np.stack([x[4:-4], spine[4:-4] - half[4:-4] * 0.2], 1)
    cv.fill([], color * 0.85, lines=[(_place(ridge, cx, cy, size, angle), 0.02 * size)], roundness=1.0, gloss=0.0)
    tip = np.array([[length - 0.05, curve - 0.06], [length + 0.06, curve - 0.03], [length + 0.05, curve + 0.05], [length - 0.06, curve + 0.04]])
    cv.fill([_place(tip, cx, cy, size, angle)], (0.25, 0.18, 0.08), roundness=0.5, gloss=0.0)
    stalk = np.array([[-length + 0.02, curve - 0.05], [-length - 0.22, curve - 0.2], [-length - 0.25, curve - 0.1], [-length + 0.02, curve + 0.06]])
    cv.fill([_place(stalk, cx, cy, size, angle)], (0.45, 0.50, 0.20), roundness=0.5, gloss=0.05)


def strawberry(cv, rng, cx, cy, size, angle):
    y = np.linspace(-0.72, 1.0, 40)
    s = (y + 0.72) / 1.72
    w = 0.85 * (1 - s) ** 0.85 * np.minimum(1, s / 0.1) ** 0.5 + 0.03
    outline = np.concatenate([np.stack([w, y], 1), np.stack([-w[::-1], y[::-1]], 1)])
    color = _pick(rng, ((0.85, 0.08, 0.10), (0.75, 0.05, 0.08), (0.92, 0.15, 0.12)))
    cv.fill([_place(outline, cx, cy, size, angle)], color, roundness=0.25, gloss=0.45, shininess=35)
    pts = []
    for yy in np.arange(-0.45, 0.85, 0.17):
        ww = float(np.interp(yy, y, w)) * 0.8
        for xx in np.arange(-ww, ww + 1e-6, 0.17) + (0.085 if int((yy + 1) / 0.17) % 2 else 0):
            if abs(xx) < ww:
                pts.append((xx, yy))
    pts = _place(np.array(pts), cx, cy, size, angle) if pts else np.zeros((0, 2))
    _seeds(cv, rng, pts, (0.95, 0.85, 0.35), 0.025 * size, 0.04 * size, angles=np.full(len(pts), angle))
    leaves = []
    k = rng.integers(5, 8)
    for i in range(k):
        a = np.pi + i * np.pi / (k - 1) + rng.normal(0, 0.08)
        tipp = np.array([math.cos(a) * 0.55, -0.72 - math.sin(a) * -0.35 * -1 + 0.15])
        leaves.append(np.array([[-0.08, -0.72], [0.08, -0.72], tipp]))
    calyx = [_place(l, cx, cy, size, angle) for l in leaves]
    cv.fill(calyx, _pick(rng, LEAF), roundness=0.4, gloss=0.2)
    _stem(cv, rng, np.array([0.0, -0.75]), cx, cy, size, angle, length=0.25, width=0.06, bend=0.05)


def watermelon(cv, rng, cx, cy, size, angle):
    half = rng.uniform(0.7, 1.0)
    t = np.linspace(-half, half, 48)
    arc = lambda r: np.stack([r * np.sin(t), -r * np.cos(t)], 1) + np.array([0, 0.75])
    apex = np.array([[0.0, 0.75]])
    rind = np.concatenate([apex, arc(1.55)])
    white = np.concatenate([apex, arc(1.45)])
    flesh = np.concatenate([apex, arc(1.38)])
    cv.fill([_place(rind, cx, cy, size, angle)], _pick(rng, ((0.15, 0.45, 0.15), (0.10, 0.38, 0.12))), roundness=0.08, gloss=0.2)
    cv.fill([_place(white, cx, cy, size, angle)], (0.88, 0.92, 0.75), roundness=0.08, gloss=0.1)
    cv.fill([_place(flesh, cx, cy, size, angle)], _pick(rng, ((0.92, 0.20, 0.22), (0.95, 0.30, 0.30), (0.85, 0.12, 0.18))), roundness=0.06, gloss=0.2)
    seeds, angles = [], []
    for r in (0.55, 0.85, 1.1):
        for a in np.linspace(-half * 0.75, half * 0.75, int(2 + 3 * r)):
            a2 = a + rng.normal(0, 0.04)
            seeds.append((r * math.sin(a2), 0.75 - r * math.cos(a2)))
            angles.append(angle + a2)
    _seeds(cv, rng, _place(np.array(seeds), cx, cy, size, angle), (0.08, 0.06, 0.05), 0.035 * size, 0.065 * size, angles=np.array(angles))


def plum(cv, rng, cx, cy, size, angle):
    outline = _polar(lambda t: np.sqrt(1 / ((np.cos(t) / 0.9) ** 2 + np.sin(t) ** 2)) * (1 - 0.06 * _angle_bump(t, -np.pi / 2, 0.1)))
    color = _pick(rng, ((0.35, 0.10, 0.35), (0.45, 0.12, 0.25), (0.28, 0.10, 0.40)))
    cv.fill([_place(outline * 0.8, cx, cy, size, angle)], color, roundness=0.25, gloss=0.3, shininess=20)
    seam = np.stack([np.sin(np.linspace(-1.2, 1.2, 16)) * 0.12, np.linspace(-0.65, 0.6, 16)], 1)
    cv.fill([], color * 0.75, lines=[(_place(seam, cx, cy, size, angle), 0.03 * size)], roundness=1.0, gloss=0.0)
    _stem(cv, rng, np.array([0.0, -0.72]), cx, cy, size, angle, length=0.25, width=0.05)


def peach(cv, rng, cx, cy, size, angle):
    outline = _polar(lambda t: 1 - 0.08 * _angle_bump(t, -np.pi / 2, 0.15))
    base = _pick(rng, ((0.98, 0.70, 0.40), (0.98, 0.62, 0.35)))
    blush = np.array([0.88, 0.25, 0.22], np.float32)
    mask, bbox = cv.mask([_place(outline * 0.9, cx, cy, size, angle)])
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(xx - w * rng.uniform(0.3, 0.6), yy - h * rng.uniform(0.25, 0.5)) / max(h, w)
    mix = np.clip(1.2 - 2.2 * d, 0, 1)[..., None]
    texture = base[None, None, :] * (1 - mix) + blush[None, None, :] * mix
    cv.shade(mask, bbox, base, roundness=0.25, gloss=0.12, shininess=10, texture=texture)
    seam = np.stack([np.sin(np.linspace(-1.0, 1.0, 16)) * 0.1 + 0.1, np.linspace(-0.8, 0.5, 16)], 1)
    cv.fill([], base * 0.75, lines=[(_place(seam, cx, cy, size, angle), 0.03 * size)], roundness=1.0, gloss=0.0)
    if rng.random() < 0.5:
        _leaf(cv, rng, np.array([0.0, -0.85]), cx, cy, size, angle, rng.uniform(-1.0, -0.3), length=0.6)


def kiwi(cv, rng, cx, cy, size, angle):
    ry = rng.uniform(0.8, 0.9)
    cv.fill([_place(_ellipse(1.0, ry), cx, cy, size, angle)], (0.45, 0.32, 0.18), roundness=0.1, gloss=0.05)
    cv.fill([_place(_ellipse(0.9, ry - 0.1), cx, cy, size, angle)], _pick(rng, ((0.50, 0.72, 0.12), (0.58, 0.78, 0.18))), roundness=0.05, gloss=0.15)
    cv.fill([_place(_ellipse(0.3, 0.22), cx, cy, size, angle)], (0.95, 0.95, 0.80), roundness=0.2, gloss=0.1)
    n = rng.integers(16, 24)
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.normal(0, 0.05, n)
    r = rng.uniform(0.38, 0.46, n)
    pts = np.stack([r * np.cos(a), r * np.sin(a) * (ry / 0.9)], 1)
    _seeds(cv, rng, _place(pts, cx, cy, size, angle), (0.08, 0.07, 0.05), 0.025 * size, 0.05 * size, angles=angle + a + np.pi / 2)


DRAW = {
    "apple": apple, "orange": orange, "lemon": lemon, "lime": lime, "pear": pear, "cherries": cherries,
    "grapes": grapes, "banana": banana, "strawberry": strawberry, "watermelon": watermelon, "plum": plum,
    "peach": peach, "kiwi": kiwi,
}


# --- pictures ---------------------------------------------------------------------------------------


def fruit_image(resolution: int, seed: int, index: int) -> tuple[np.ndarray, list[str]]:
    """uint8 `[R, R, 3]` picture number `index` of data set `seed`, and the fruits in it."""
    rng = np.random.default_rng([seed, index])
    cv = Canvas(resolution)
    s = cv.size
    kind = FRUITS[rng.integers(len(FRUITS))]
    if kind in SINGLE:
        count = 1
    else:
        count = int(rng.choice([1, 1, 2, 2, 3]))
    kinds = [kind] + [FRUITS[rng.integers(len(FRUITS))] for _ in range(count - 1)]
    kinds = [k for i, k in enumerate(kinds) if i == 0 or k not in SINGLE]
    size = s * (0.34 if len(kinds) == 1 else 0.24 if len(kinds) == 2 else 0.2) * rng.uniform(0.85, 1.1)
    if kind == "watermelon":
        size *= 0.8
    centres = []
    for _ in kinds:
        for _attempt in range(20):
            c = rng.uniform(0.5 * s - (s / 2 - size * 1.2), 0.5 * s + (s / 2 - size * 1.2), 2) if len(kinds) > 1 else s / 2 + rng.normal(0, s * 0.04, 2)
            if all(np.hypot(*(c - o)) > size * 1.5 for o in centres):
                break
        centres.append(c)
    order = np.argsort([c[1] for c in centres])
    for i in order:
        cx, cy = centres[i]
        k = kinds[i]
        cv.shadow(cx + size * 0.1, cy + size * 0.85, size * 0.9, size * 0.22)
        tilt = rng.normal(0, 0.35) if k not in ("banana", "kiwi", "watermelon") else rng.uniform(-np.pi, np.pi) * (0.3 if k == "watermelon" else 1)
        DRAW[k](cv, rng, cx, cy, size * rng.uniform(0.9, 1.1), tilt)
    return cv.image(resolution), kinds


MAX_RESOLUTION = 4096  # one image is drawn in float32 in memory: 4096^2 is ~0.2 GB
MAX_COUNT = 10_000_000


LABELS_FILE = "labels.json"


def fruit_labels(kinds_per_image: dict[str, list[str]]) -> dict:
    """The `labels.json` object (module docstring) of `{file name: fruits drawn, first = its species}`."""
    fruits = {name: [FRUITS.index(k) for k in kinds] for name, kinds in kinds_per_image.items()}
    return {"species": list(FRUITS), "labels": {name: ks[0] for name, ks in fruits.items()}, "fruits": fruits}


CHUNK = 500  # pictures per task of a worker process


def write_fruit_pictures(folder: str, resolution: int, seed: int, start: int, stop: int) -> dict[str, list[str]]:
    """Write pictures `start <= i < stop` of data set `seed` into `folder`; their fruits by file name."""
    from gvjax.images import write_png

    kinds_per_image = {}
    for i in range(start, stop):
        img, kinds = fruit_image(resolution, seed, i)
        write_png(pathlib.Path(folder) / f"fruit{i:06d}.png", img)
        kinds_per_image[f"fruit{i:06d}.png"] = kinds
    return kinds_per_image


def _ignore_interrupts():
    """A worker process's start: Ctrl-C goes to the parent, which stops the pool between chunks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def write_fruit_dataset(
    out: str | os.PathLike, *, count: int, resolution: int, seed: int, labels: bool = False, workers: int = 1
) -> pathlib.Path:
    """Write `count` PNGs `OUT/fruit000000.png ...` (a temporary sibling folder renamed into place).

    `labels`: also write `OUT/labels.json`, each picture's species (module docstring); the
    PNGs are the same bytes either way. `workers` > 1 draws chunks of `CHUNK` pictures in that
    many processes (spawned, not forked: the caller may hold JAX's threads); each picture
    depends only on `(seed, index)`, so the files are the same bytes for any `workers`.
    """
    out = pathlib.Path(out)
    if workers < 1:
        raise GvjaxError(f"--workers must be >= 1, got {workers}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GvjaxError(f"{out} already exists and is not an empty folder")
    if not out.absolute().parent.is_dir():
        raise GvjaxError(f"output directory {out.absolute().parent} does not exist")
    if not 1 <= count <= MAX_COUNT or not 8 <= resolution <= MAX_RESOLUTION:
        raise GvjaxError(f"--count must be in 1..{MAX_COUNT:,} and --res in 8..{MAX_RESOLUTION}, got {count} and {resolution}")
    check_writable_dir(out.absolute().parent)
    chunks = [(start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    with atomic_output(out, directory=True) as tmp:  # an empty `out` is replaced; a failure leaves nothing
        kinds_per_image = {}
        with interrupts_between_batches():
            if workers == 1 or len(chunks) == 1:
                for i in range(count):
                    check_interrupt()
                    kinds_per_image.update(write_fruit_pictures(str(tmp), resolution, seed, i, i + 1))
            else:
                import concurrent.futures
                import multiprocessing

                context = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context, initializer=_ignore_interrupts) as pool:
                    futures = [pool.submit(write_fruit_pictures, str(tmp), resolution, seed, start, stop) for start, stop in chunks]
                    try:
                        for future in concurrent.futures.as_completed(futures):
                            check_interrupt()
                            kinds_per_image.update(future.result())
                    except BaseException:
                        for future in futures:
                            future.cancel()
                        raise
        if labels:
            kinds_per_image = dict(sorted(kinds_per_image.items()))
            (tmp / LABELS_FILE).write_text(json.dumps(fruit_labels(kinds_per_image)) + "\n")
    return out
