"""Latent travel: a closed Catmull-Rom loop through keyframes in W, and the motion along it.

The path is a closed, looping Catmull-Rom spline through N keyframes `[N, *shape]` (for
the generator, `shape = (num_ws, w_dim)`), sampled at one `t: float in [0, 1)`. Segment i
spans `t in [i/N, (i+1)/N)` and runs from keyframe i to keyframe `(i+1) % N`, so
`t = i/N` is keyframe i and the step from `t -> 1` wraps to keyframe 0.

Two parameterisations (`alpha`):
  * 0.0, uniform: the classic spline, tangent at keyframe i is `(P[i+1] - P[i-1]) / 2`.
  * 0.5, centripetal: knot spacing `d_i = |P[i+1] - P[i]| ** alpha` over the flattened
    keyframes (Barry-Goldman / Yuksel et al.): no cusps or self-intersections inside a
    segment, which keeps latent travel away from the overshoots the uniform form makes
    between unevenly spaced keyframes.

The curve is evaluated in the closed cubic Hermite form of the Barry-Goldman pyramid
(`_hermite_segment`, identical to the pyramid for any knots). A non-uniform spline is C1
in its own knot parameter, but its knot intervals differ per segment, so in the uniform
`t` above it would only be G1 (the speed jumps at each keyframe). Each segment is therefore
traversed through a monotone cubic time warp (`segment_warp`) whose end slopes match at
every keyframe: the trace is exactly the centripetal curve and the path is C1 in `t`,
seam included. For `alpha = 0` the warp is the identity.

`sample_spline` is pure jnp, written for one t; batch it with `jax.vmap` (keyframes
unbatched) and `jax.jit` it. Keyframes come from seeds (`keyframes_from_seeds`) or from a
`.npy` of ws (`keyframes_from_npy`). `advance_times` turns a per-frame driving feature into
per-frame `t` (numpy; it runs once per render).
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from gvjax.errors import GvjaxError
from gvjax.generate import z_for_seed

UNIFORM = 0.0
CENTRIPETAL = 0.5
_DIST2_EPS = 1e-12  # added to squared keyframe distances: coincident keyframes give tiny, not zero, knots


# ----------------------------------------------------------------------------- the curve


def knot_intervals(keyframes: jnp.ndarray, alpha: float = UNIFORM) -> jnp.ndarray:
    """`[N]` knot spacing of the closed loop: `d_i = |P[(i+1) % N] - P[i]| ** alpha`.

    Args:
      keyframes: `[N, *shape]`; distances are Euclidean over the flattened `shape`.
      alpha: 0 (uniform: all ones) or 0.5 (centripetal); any value in [0, 1] works.
    """
    flat = keyframes.reshape(keyframes.shape[0], -1)
    diff = jnp.roll(flat, -1, axis=0) - flat
    dist2 = jnp.sum(diff * diff, axis=1)
    return jnp.power(dist2 + _DIST2_EPS, alpha / 2)


def segment_warp(d_prev: jnp.ndarray, d: jnp.ndarray, d_next: jnp.ndarray, u: jnp.ndarray) -> jnp.ndarray:
    """Monotone time warp of one segment: local time `u in [0, 1]` -> curve parameter `v in [0, 1]`.

    `v` is the cubic Hermite with `v(0) = 0`, `v(1) = 1` and end slopes `g_i / d`, `g_{i+1} / d`,
    where `g_i = min((d_prev + d) / 2, 3 * min(d_prev, d))` is shared by the two segments
    meeting at keyframe i, so the velocity in `t` is continuous there. Both slopes lie in
    (0, 3], the Fritsch-Carlson box, so `v` is strictly increasing: the warp re-times the
    segment without changing its trace. All-equal spacings (uniform) give `v = u`.

    Args: the knot intervals before, of and after the segment (scalars), `u` scalar.
    """
    g0 = jnp.minimum((d_prev + d) / 2, 3 * jnp.minimum(d_prev, d))
    g1 = jnp.minimum((d + d_next) / 2, 3 * jnp.minimum(d, d_next))
    a, b = g0 / d, g1 / d
    u2, u3 = u * u, u * u * u
    return (u3 - 2 * u2 + u) * a + (-2 * u3 + 3 * u2) + (u3 - u2) * b


def _hermite_segment(p0, p1, p2, p3, d0, d1, d2, v):
    """Catmull-Rom segment p1 -> p2 with knot intervals d0, d1, d2, at `v in [0, 1]`.

    Closed form of the Barry-Goldman pyramid: tangents `m1`, `m2` are the derivatives with
    respect to the knot parameter at p1 and p2, scaled by the segment's interval d1.
    """
    m1 = (p1 - p0) / d0 - (p2 - p0) / (d0 + d1) + (p2 - p1) / d1
    m2 = (p2 - p1) / d1 - (p3 - p1) / (d1 + d2) + (p3 - p2) / d2
    v2, v3 = v * v, v * v * v
    h00 = 2 * v3 - 3 * v2 + 1
    h10 = v3 - 2 * v2 + v
    h01 = -2 * v3 + 3 * v2
    h11 = v3 - v2
    return h00 * p1 + h10 * d1 * m1 + h01 * p2 + h11 * d1 * m2


def sample_spline(keyframes: jnp.ndarray, t: jnp.ndarray | float, *, alpha: float = UNIFORM) -> jnp.ndarray:
    """The closed Catmull-Rom loop through `keyframes` at one `t`.

    Args:
      keyframes: `[N, *shape]` float, N >= 1 (e.g. ws `[N, num_ws, w_dim]`).
      t: scalar float in [0, 1) (other values wrap: `t mod 1`); `i/N` is keyframe i.
      alpha: 0.0 uniform or 0.5 centripetal (static Python float).

    Returns: `[*shape]`, same dtype as keyframes. Pure jnp: `jax.vmap(sample_spline,
    in_axes=(None, 0))` gives a batch of t, and the whole thing jits.
    """
    keyframes = jnp.asarray(keyframes)
    n = keyframes.shape[0]
    dtype = keyframes.dtype
    t = jnp.asarray(t, dtype)
    x = jnp.mod(t, 1) * n
    i = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, n - 1)
    u = jnp.clip(x - i.astype(dtype), 0, 1)
    idx = jnp.mod(i + jnp.arange(-1, 3, dtype=jnp.int32), n)  # i-1, i, i+1, i+2
    p0, p1, p2, p3 = (jnp.take(keyframes, idx[k], axis=0) for k in range(4))
    d_all = knot_intervals(keyframes, alpha).astype(dtype)
    d_prev, d, d_next = (jnp.take(d_all, idx[k]) for k in range(3))  # d_{i-1}, d_i, d_{i+1}
    v = u if alpha == 0 else segment_warp(d_prev, d, d_next, u)
    return _hermite_segment(p0, p1, p2, p3, d_prev, d, d_next, v).astype(dtype)


# ----------------------------------------------------------------------------- keyframes


def keyframes_from_seeds(seeds: Sequence[int], map_fn: Callable[[np.ndarray], np.ndarray], *, z_dim: int) -> np.ndarray:
    """`[N, num_ws, w_dim]` float32 keyframes: `map_fn(z)` for each seed's z.

    Args:
      seeds: N >= 1 seeds; z for seed s is `gvjax.generate.z_for_seed(s, z_dim)` (as NVIDIA's
        generate.py), so keyframe i is the latent `gvjax generate --seeds s` renders.
      map_fn: `z [z_dim] float32 -> ws [num_ws, w_dim]` (mapping network and truncation), e.g.
        `lambda z: gen.apply(variables, z, method="map", truncation_psi=0.7)`.
      z_dim: the model's latent size.
    """
    seeds = list(seeds)
    if not seeds:
        raise GvjaxError("at least one keyframe seed is needed")
    ws = [np.asarray(map_fn(z_for_seed(s, z_dim)), np.float32) for s in seeds]
    shapes = {w.shape for w in ws}
    if len(shapes) != 1:
        raise GvjaxError(f"map_fn returned ws of different shapes for different seeds: {sorted(shapes)}")
    return np.stack(ws)


def keyframes_from_npy(path: str | os.PathLike, *, num_ws: int | None = None, w_dim: int | None = None) -> np.ndarray:
    """`[N, num_ws, w_dim]` float32 keyframes from a `.npy` of ws.

    Accepts `[N, num_ws, w_dim]`, or `[N, w_dim]` (one w per keyframe, broadcast to every
    layer; needs `num_ws`). When `num_ws` / `w_dim` are given (the model's), they are
    checked. Every problem (missing or unreadable file, wrong rank or sizes, no keyframes,
    non-finite values) is a one-line GvjaxError naming the file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise GvjaxError(f"keyframe file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise GvjaxError(f"cannot read keyframes from {path}: not a .npy array ({_one_line(e)})") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise GvjaxError(f"keyframes in {path} must be a real-valued numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        if num_ws is None:
            raise GvjaxError(f"keyframes in {path} have shape {arr.shape} ([N, w_dim]); expected [N, num_ws, w_dim]")
        arr = np.broadcast_to(arr[:, None, :], (arr.shape[0], num_ws, arr.shape[1]))
    if arr.ndim != 3:
        raise GvjaxError(f"keyframes in {path} have shape {arr.shape}; expected [N, num_ws, w_dim]")
    if arr.shape[0] < 1:
        raise GvjaxError(f"keyframes in {path} hold no keyframes (shape {arr.shape})")
    expected = (num_ws if num_ws is not None else arr.shape[1], w_dim if w_dim is not None else arr.shape[2])
    if arr.shape[1:] != expected:
        raise GvjaxError(
            f"keyframes in {path} have shape {arr.shape}; the model needs [N, {expected[0]}, {expected[1]}] "
            "([N, num_ws, w_dim])"
        )
    arr = np.asarray(arr, np.float32)
    if not np.all(np.isfinite(arr)):
        raise GvjaxError(f"keyframes in {path} contain NaN or infinite values")
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------- motion


def advance_times(
    drive: np.ndarray,
    *,
    base_speed: float = 1.0,
    gain: float = 0.0,
    laps: float | None = None,
    laps_per_minute: float | None = None,
    fps: float,
) -> np.ndarray:
    """Per-frame position on the loop: `t [n_frames]` float64 in [0, 1), `t[0] == 0`.

    Frame k steps forward by `base_speed + gain * drive[k]` (so silence still moves at
    base speed), and the steps are scaled by one constant so that either
      * `laps`: the whole song makes exactly `laps` laps. With integral laps the video loops
        seamlessly: the step after the last frame lands back on `t = 0`; or
      * `laps_per_minute`: the average speed over the song is that many laps per minute
        (the song then makes `laps_per_minute * duration_minutes` laps).
    Only the ratio `gain / base_speed` shapes the motion; the normalisation sets its scale.
    If every step is zero (base_speed 0 on silent audio) the motion falls back to uniform.

    Args:
      drive: `[n_frames]` driving feature, per frame, 0..1 (values outside are clipped).
      base_speed: >= 0, relative speed with no drive.
      gain: >= 0, relative extra speed at full drive.
      laps: > 0 laps over the song; exclusive with `laps_per_minute`.
      laps_per_minute: > 0 average laps per minute of video.
      fps: video frames per second (> 0).
    """
    drive = np.asarray(drive, np.float64)
    if drive.ndim != 1 or drive.size < 1:
        raise GvjaxError(f"the driving feature must be a non-empty [n_frames] array, got shape {drive.shape}")
    if (laps is None) == (laps_per_minute is None):
        raise GvjaxError("give exactly one of laps and laps_per_minute")
    if not (math.isfinite(fps) and fps > 0):
        raise GvjaxError(f"fps must be > 0, got {fps}")
    if not (math.isfinite(base_speed) and base_speed >= 0):
        raise GvjaxError(f"base speed must be >= 0, got {base_speed}")
    if not (math.isfinite(gain) and gain >= 0):
        raise GvjaxError(f"speed gain must be >= 0, got {gain}")
    for name, value in (("laps", laps), ("laps per minute", laps_per_minute)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise GvjaxError(f"{name} must be > 0, got {value}")
    drive = np.clip(np.nan_to_num(drive, nan=0.0), 0, 1)
    steps = base_speed + gain * drive
    total = steps.sum()
    if total <= 0:
        steps, total = np.ones_like(steps), float(steps.size)
    n = steps.size
    total_laps = laps if laps is not None else laps_per_minute * n / (60.0 * fps)
    position = np.concatenate([[0.0], np.cumsum(steps[:-1])]) * (total_laps / total)  # laps travelled
    t = np.mod(position, 1.0)
    return np.where(t >= 1.0, 0.0, t)  # mod can round up to exactly 1.0 for tiny negatives


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
