"""Feature warps: pure functions that bend one frame's intermediate features `x [H, W, C]`.

Synthesis is cut at a block resolution, the features are warped, and synthesis finishes
(see `gvjax.model.SynthesisNetwork.run_blocks`). Every warp takes a `strength` (a traced
scalar, usually driven by an audio feature) and is the identity at strength 0. Geometric
warps resample bilinearly with a boundary mode: 'reflect' (mirror about the edge pixels),
'wrap' (periodic) or 'zero'. All are jit- and vmap-friendly and differentiable.

Slit-scan is temporal: it reads the features of past frames, so it works on a whole batch
plus a carried history (`slitscan_batch`), which makes batch boundaries invisible.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from gvjax.errors import GvjaxError
from gvjax.ops.fourier import make_transform

BOUNDARIES = ("reflect", "wrap", "zero")

# kind -> {param: default}; strength scales each warp's amount.
WARP_PARAMS: dict[str, dict[str, Any]] = {
    "slitscan": {"delay": 8, "axis": "rows"},  # delay: frames at full strength (bottom row / right column)
    "strips": {"count": 8, "axis": "vertical", "shift": 0.25, "signs": "alternate", "seed": 0},
    "rotate": {"degrees": 45.0},
    "zoom": {"factor": 1.5},
    "translate": {"dx": 0.25, "dy": 0.0},  # fractions of width / height
    "flip": {"axis": "horizontal"},
    "mirror": {"axis": "horizontal"},
    "wave": {"amplitude": 0.1, "cycles": 2.0, "speed": 0.5, "axis": "horizontal"},
    "channels": {"op": "scale", "factor": 2.0, "threshold": 0.5, "channels": (), "fraction": 0.0, "cluster": -1, "clusters": 4, "seed": 0},
}
# Warps of a model's input rather than of its features (no stage): kind -> {param: default}.
# camera: StyleGAN3's Fourier input seen through a moving camera (see `camera_transforms`).
INPUT_WARP_PARAMS: dict[str, dict[str, Any]] = {
    "camera": {"degrees": 10.0, "dx": 0.0, "dy": 0.0, "drift": 0.0, "pan_x": 0.0, "pan_y": 0.0},
}
ALL_WARP_PARAMS = {**WARP_PARAMS, **INPUT_WARP_PARAMS}
CHANNEL_OPS = ("scale", "ablate", "invert", "threshold")


def _check_param(kind: str, name: str, value: Any, default: Any) -> None:
    """GvjaxError unless `value` has the type of its default: a string, a finite number (a whole
    one where the default is whole; seeds in [0, 2**32)), or a list of whole numbers >= 0."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    elif isinstance(default, int):
        ok = number and isinstance(value, int) and (name != "seed" or 0 <= value < 2**32)
    else:
        ok = number and bool(np.isfinite(value))
    if not ok:
        want = {str: "a string", tuple: "a list of channel indices", int: "a whole number"}.get(type(default), "a finite number")
        if name == "seed":
            want = "a whole number in [0, 2**32)"
        raise GvjaxError(f"warp {kind!r}: {name} must be {want}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class WarpSpec:
    """One warp: its kind, where synthesis is cut for it, static params, boundary mode.

    A feature warp names the stage it cuts after: `resolution` (a StyleGAN2 block resolution, the
    older form) or `layer` (a stage name such as 'L5' or 'b32', or a stage index); the model's family
    resolves it (`gvjax.models.cut_stage`). An input warp (`INPUT_WARP_PARAMS`: camera) has neither.
    `params` is a sorted tuple of (name, value) pairs (hashable, so a spec is a static jit
    argument); `WarpSpec.make` fills defaults and validates.
    """

    kind: str
    resolution: int | None
    params: tuple[tuple[str, Any], ...] = ()
    boundary: str = "reflect"
    layer: str | int | None = None

    @classmethod
    def make(cls, kind: str, resolution: int | None = None, boundary: str = "reflect", *, layer: str | int | None = None, **params) -> "WarpSpec":
        if kind not in ALL_WARP_PARAMS:
            raise GvjaxError(f"unknown warp {kind!r}; expected one of {', '.join(ALL_WARP_PARAMS)}")
        if boundary not in BOUNDARIES:
            raise GvjaxError(f"unknown boundary {boundary!r}; expected one of {', '.join(BOUNDARIES)}")
        if kind in INPUT_WARP_PARAMS and (resolution is not None or layer is not None):
            raise GvjaxError(f"warp {kind!r} moves the model's input: it takes no resolution or layer")
        if kind in WARP_PARAMS and (resolution is None) == (layer is None):
            raise GvjaxError(f"warp {kind!r} needs a layer (e.g. 'L5', or 'b32' on StyleGAN2) or a StyleGAN2 resolution (e.g. 32), not both")
        defaults = ALL_WARP_PARAMS[kind]
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise GvjaxError(f"warp {kind!r} has no parameter {unknown[0]!r}; it takes {', '.join(defaults)}")
        for name, value in params.items():
            _check_param(kind, name, value, defaults[name])
        merged = {**defaults, **params}
        merged = {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}
        spec = cls(kind, None if resolution is None else int(resolution), tuple(sorted(merged.items())), boundary, layer)
        spec.validate()
        return spec

    @property
    def is_input_warp(self) -> bool:
        """Whether this warp moves the model's input (camera) rather than cutting synthesis."""
        return self.kind in INPUT_WARP_PARAMS

    @property
    def where(self) -> str:
        """Where it cuts, as a timeline names it: 'resolution 32', 'layer L5' or 'the input'."""
        if self.is_input_warp:
            return "the input"
        return f"resolution {self.resolution}" if self.resolution is not None else f"layer {self.layer}"

    def p(self, name: str):
        return dict(self.params)[name]

    def validate(self) -> None:
        d = dict(self.params)
        if self.kind == "slitscan" and (int(d["delay"]) < 0 or d["axis"] not in ("rows", "columns")):
            raise GvjaxError("slitscan needs delay >= 0 and axis 'rows' or 'columns'")
        if self.kind == "strips" and (int(d["count"]) < 1 or d["axis"] not in ("vertical", "horizontal") or d["signs"] not in ("alternate", "random")):
            raise GvjaxError("strips needs count >= 1, axis 'vertical'/'horizontal', signs 'alternate'/'random'")
        if self.kind == "zoom" and not d["factor"] > 0:
            raise GvjaxError("zoom factor must be > 0")
        if self.kind in ("flip", "mirror", "wave") and d["axis"] not in ("horizontal", "vertical"):
            raise GvjaxError(f"{self.kind} axis must be 'horizontal' or 'vertical'")
        if self.kind == "channels" and d["op"] not in CHANNEL_OPS:
            raise GvjaxError(f"channels op must be one of {', '.join(CHANNEL_OPS)}")

    @property
    def history(self) -> int:
        """Past frames this warp needs (slit-scan's delay; 0 for the others)."""
        return int(self.p("delay")) if self.kind == "slitscan" else 0


# ----------------------------------------------------------------------------- sampling


def _boundary_index(i: jnp.ndarray, n: int, boundary: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Integer indices -> (valid indices into [0, n), weight 1/0 for 'zero' outside)."""
    if boundary == "wrap":
        return jnp.mod(i, n), jnp.ones(i.shape, jnp.float32)
    if boundary == "reflect":
        if n == 1:
            return jnp.zeros_like(i), jnp.ones(i.shape, jnp.float32)
        period = 2 * (n - 1)
        m = jnp.mod(i, period)
        return jnp.where(m < n, m, period - m), jnp.ones(i.shape, jnp.float32)
    inside = ((i >= 0) & (i < n)).astype(jnp.float32)
    return jnp.clip(i, 0, n - 1), inside


def sample_bilinear(x: jnp.ndarray, ys: jnp.ndarray, xs: jnp.ndarray, boundary: str = "reflect") -> jnp.ndarray:
    """Bilinear samples of `x [H, W, C]` at pixel coordinates `ys, xs [h, w]` -> `[h, w, C]`.

    Integer coordinates return the pixels exactly (so an identity grid is an exact identity).
    """
    h, w = x.shape[0], x.shape[1]
    y0, x0 = jnp.floor(ys), jnp.floor(xs)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    out = 0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        iy, vy = _boundary_index(y0 + dy, h, boundary)
        for dx, wx in ((0, 1 - fx), (1, fx)):
            ix, vx = _boundary_index(x0 + dx, w, boundary)
            weight = (wy * wx * (vy * vx)[..., None]).astype(x.dtype)
            out = out + x[iy, ix] * weight
    return out


def _grid(x: jnp.ndarray):
    h, w = x.shape[0], x.shape[1]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    return ys, xs, (h - 1) / 2.0, (w - 1) / 2.0


# ----------------------------------------------------------------------------- geometric warps


def rotate(x, strength, *, degrees: float = 45.0, boundary: str = "reflect"):
    """Rotate by `strength * degrees` about the centre."""
    ys, xs, cy, cx = _grid(x)
    a = jnp.deg2rad(strength * degrees)
    c, s = jnp.cos(a), jnp.sin(a)
    dy, dx = ys - cy, xs - cx
    return sample_bilinear(x, cy + c * dy - s * dx, cx + s * dy + c * dx, boundary)


def zoom(x, strength, *, factor: float = 1.5, boundary: str = "reflect"):
    """Scale about the centre by `factor ** strength` (> 1 zooms in)."""
    ys, xs, cy, cx = _grid(x)
    scale = jnp.power(jnp.float32(factor), strength)
    return sample_bilinear(x, cy + (ys - cy) / scale, cx + (xs - cx) / scale, boundary)


def translate(x, strength, *, dx: float = 0.25, dy: float = 0.0, boundary: str = "reflect"):
    """Shift content by `strength * (dx * W, dy * H)` pixels (right and down)."""
    ys, xs, _, _ = _grid(x)
    h, w = x.shape[0], x.shape[1]
    return sample_bilinear(x, ys - strength * dy * h, xs - strength * dx * w, boundary)


def strip_signs(count: int, signs: str, seed: int) -> np.ndarray:
    """Per-strip direction, `[count]` of +-1: alternating (+, -, +, ...) or seeded random."""
    if signs == "alternate":
        return np.where(np.arange(count) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return np.random.RandomState(seed).choice([-1.0, 1.0], size=count).astype(np.float32)


def strips(x, strength, *, count: int = 8, axis: str = "vertical", shift: float = 0.25, signs: str = "alternate", seed: int = 0, boundary: str = "wrap"):
    """Cut into `count` strips and slide each along itself by `sign_j * strength * shift` of the image.

    Vertical strips are columns bands sliding up/down; horizontal strips are row bands sliding
    left/right. With `count=1` this is `translate` along the strip.
    """
    ys, xs, _, _ = _grid(x)
    h, w = x.shape[0], x.shape[1]
    sign = jnp.asarray(strip_signs(count, signs, seed))
    if axis == "vertical":
        band = jnp.clip((xs * count / w).astype(jnp.int32), 0, count - 1)
        return sample_bilinear(x, ys - strength * shift * h * sign[band], xs, boundary)
    band = jnp.clip((ys * count / h).astype(jnp.int32), 0, count - 1)
    return sample_bilinear(x, ys, xs - strength * shift * w * sign[band], boundary)


def wave(x, strength, time, *, amplitude: float = 0.1, cycles: float = 2.0, speed: float = 0.5, axis: str = "horizontal", boundary: str = "reflect"):
    """Sinusoidal displacement: rows shift sideways (horizontal) or columns up/down (vertical).

    Displacement `strength * amplitude * size * sin(2 pi (cycles * pos / size + speed * time))`,
    `time` in seconds.
    """
    ys, xs, _, _ = _grid(x)
    h, w = x.shape[0], x.shape[1]
    phase = 2 * jnp.pi * speed * time
    if axis == "horizontal":
        d = strength * amplitude * w * jnp.sin(2 * jnp.pi * cycles * ys / h + phase)
        return sample_bilinear(x, ys, xs - d, boundary)
    d = strength * amplitude * h * jnp.sin(2 * jnp.pi * cycles * xs / w + phase)
    return sample_bilinear(x, ys - d, xs, boundary)


def flip(x, strength, *, axis: str = "horizontal"):
    """Cross-fade towards the mirror image: `(1 - s) x + s flip(x)`."""
    flipped = jnp.flip(x, axis=1 if axis == "horizontal" else 0)
    return x + strength * (flipped - x)


def mirror(x, strength, *, axis: str = "horizontal"):
    """Cross-fade towards a kaleidoscope half: the first half reflected onto the second."""
    n = x.shape[1] if axis == "horizontal" else x.shape[0]
    idx = jnp.minimum(jnp.arange(n), n - 1 - jnp.arange(n))
    mirrored = jnp.take(x, idx, axis=1 if axis == "horizontal" else 0)
    return x + strength * (mirrored - x)


# ----------------------------------------------------------------------------- network bending


def channel_op(x, strength, mask, *, op: str = "scale", factor: float = 2.0, threshold: float = 0.5):
    """Bend the channels where `mask [C]` is 1: scale by factor, ablate, invert or threshold.

    `out = x + strength * mask * (op(x) - x)`, so strength 0 is the identity.
    """
    if op == "scale":
        target = x * factor
    elif op == "ablate":
        target = jnp.zeros_like(x)
    elif op == "invert":
        target = -x
    else:
        target = jnp.where(jnp.abs(x) > threshold, x, jnp.zeros_like(x))
    return x + (strength * jnp.asarray(mask, x.dtype))[None, None, :] * (target - x)


def channel_mask(num_channels: int, *, channels=(), fraction: float = 0.0, seed: int = 0, labels: np.ndarray | None = None, cluster: int = -1) -> np.ndarray:
    """`[C]` float mask of the channels to bend: an index list, a seeded random fraction, or one k-means cluster."""
    mask = np.zeros(num_channels, np.float32)
    if channels:
        idx = np.asarray(channels, int)
        if idx.min() < 0 or idx.max() >= num_channels:
            raise GvjaxError(f"channel indices must be in 0..{num_channels - 1}")
        mask[idx] = 1
    if fraction > 0:
        count = max(1, int(round(fraction * num_channels)))
        mask[np.random.RandomState(seed).permutation(num_channels)[:count]] = 1
    if cluster >= 0:
        if labels is None:
            raise GvjaxError("a channel cluster needs the layer's cluster labels")
        mask[np.asarray(labels) == cluster] = 1
    return mask


def cluster_channels(features: np.ndarray, k: int, *, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """k-means of channels by activation similarity: `features [F, H, W, C]` -> labels `[C]` in 0..k-1.

    Each channel is described by its activations over the sample frames and pixels,
    standardised; channels that light up together share a cluster.
    """
    c = features.shape[-1]
    v = np.asarray(features, np.float64).reshape(-1, c).T  # [C, F*H*W]
    v = (v - v.mean(1, keepdims=True)) / (v.std(1, keepdims=True) + 1e-8)
    k = min(k, c)
    rng = np.random.RandomState(seed)
    centers = v[rng.choice(c, k, replace=False)]
    labels = np.zeros(c, int)
    for _ in range(iterations):
        d = ((v[:, None, :] - centers[None]) ** 2).sum(-1)
        new = d.argmin(1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                centers[j] = v[labels == j].mean(0)
    return labels


# ----------------------------------------------------------------------------- camera (input warp)


def camera_transforms(spec: WarpSpec, strengths: np.ndarray, fps: float) -> np.ndarray:
    """`strengths [n]` of a camera warp (frames 0 .. n-1 of the render) -> `[n, 3, 3]` float32
    input transforms: the inverse of the camera matrix, as StyleGAN3's `transform` buffer holds it.

    The camera turns by `degrees * s` and moves by `(dx, dy) * s` with the strength s of each frame,
    and drifts: it turns `drift` degrees and pans `(pan_x, pan_y)` per second at full strength, so
    the drift is the running integral of the strength (quiet passages slow it down). Everything is
    continuous in the strength, and the identity where the strength has been 0.
    """
    d = dict(spec.params)
    s = np.asarray(strengths, np.float64)
    travelled = np.concatenate([[0.0], np.cumsum(s)[:-1]]) / fps  # seconds at full strength before each frame
    m = make_transform((d["dx"] * s + d["pan_x"] * travelled, d["dy"] * s + d["pan_y"] * travelled), d["degrees"] * s + d["drift"] * travelled)
    return np.linalg.inv(m).astype(np.float32)


# ----------------------------------------------------------------------------- dispatch


def apply_warp(spec: WarpSpec, x, strength, time, mask=None):
    """Apply a non-temporal warp to one frame `x [H, W, C]` at `strength`; `time` in seconds.

    Sampling coordinates are computed in float32 whatever the features' dtype (bfloat16 has
    8 bits of mantissa: not enough for pixel positions); blends use the features' dtype.
    """
    d = dict(spec.params)
    b = spec.boundary
    if spec.kind in ("flip", "mirror", "channels"):
        strength = jnp.asarray(strength).astype(x.dtype)
    else:
        strength, time = jnp.asarray(strength, jnp.float32), jnp.asarray(time, jnp.float32)
    if spec.kind == "rotate":
        return rotate(x, strength, degrees=d["degrees"], boundary=b)
    if spec.kind == "zoom":
        return zoom(x, strength, factor=d["factor"], boundary=b)
    if spec.kind == "translate":
        return translate(x, strength, dx=d["dx"], dy=d["dy"], boundary=b)
    if spec.kind == "strips":
        return strips(x, strength, count=int(d["count"]), axis=d["axis"], shift=d["shift"], signs=d["signs"], seed=int(d["seed"]), boundary=b)
    if spec.kind == "wave":
        return wave(x, strength, time, amplitude=d["amplitude"], cycles=d["cycles"], speed=d["speed"], axis=d["axis"], boundary=b)
    if spec.kind == "flip":
        return flip(x, strength, axis=d["axis"])
    if spec.kind == "mirror":
        return mirror(x, strength, axis=d["axis"])
    if spec.kind == "channels":
        return channel_op(x, strength, mask, op=d["op"], factor=d["factor"], threshold=d["threshold"])
    raise ValueError(f"{spec.kind} is not a per-frame warp")


def slitscan_batch(xs, strengths, history, *, delay: int, axis: str = "rows"):
    """Temporal slit-scan over a batch, continuing from `history`.

    Args:
      xs: `[B, H, W, C]` features of consecutive frames f0 .. f0+B-1.
      strengths: `[B]`, per frame.
      history: `[D, H, W, C]`, the features of frames f0-D .. f0-1 (D = `delay`); before the
        first frame it holds copies of frame 0's features (see `slitscan_history`).
      delay: frames of delay at full strength for the last row (column).

    Row i (column i) of frame f comes from frame `f - strength * delay * i / (H - 1)`,
    linearly interpolated between the two nearest frames (so strength 0 is the identity).

    Returns `(warped [B, H, W, C], new history [D, H, W, C])`.
    """
    b, h, w = xs.shape[0], xs.shape[1], xs.shape[2]
    if delay == 0:
        return xs, history
    seq = jnp.concatenate([history, xs], axis=0)  # [D + B, ...], index D + k is frame f0 + k
    n = h if axis == "rows" else w
    pos = jnp.arange(n, dtype=jnp.float32) / max(n - 1, 1)  # 0 .. 1 down the frame
    lag = strengths[:, None] * delay * pos[None, :]  # [B, n] frames back
    src = jnp.arange(b, dtype=jnp.float32)[:, None] + delay - lag  # fractional index into seq
    i0 = jnp.clip(jnp.floor(src).astype(jnp.int32), 0, delay + b - 1)
    i1 = jnp.clip(i0 + 1, 0, delay + b - 1)
    frac = (src - jnp.floor(src))[..., None, None]
    line = jnp.arange(n)[None, :]
    lines = seq if axis == "rows" else seq.transpose(0, 2, 1, 3)  # [D + B, n, other, C]
    a0, a1 = lines[i0, line], lines[i1, line]  # [B, n, other, C]
    warped = a0 + frac.astype(xs.dtype) * (a1 - a0)
    if axis == "columns":
        warped = warped.transpose(0, 2, 1, 3)
    return warped, seq[b:]


def slitscan_history(first: jnp.ndarray, delay: int) -> jnp.ndarray:
    """Initial history `[D, H, W, C]`: copies of the first frame's features (frames before 0 repeat it)."""
    return jnp.broadcast_to(first[None], (delay,) + first.shape)
