"""Latent travel: the closed Catmull-Rom loop and the motion along it, against mathematical properties.

Derivative checks run in float64 (`jax.enable_x64`) so finite differences resolve 1e-6;
the pass-through and batching checks run in the float32 the renderer uses.
"""

import functools

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from gvjax.errors import GvjaxError
from gvjax.generate import z_for_seed
from gvjax.spline import (
    CENTRIPETAL,
    UNIFORM,
    advance_times,
    keyframes_from_npy,
    keyframes_from_seeds,
    knot_intervals,
    sample_spline,
    segment_warp,
)

ALPHAS = pytest.mark.parametrize("alpha", [UNIFORM, CENTRIPETAL], ids=["uniform", "centripetal"])


def uneven_keyframes(n=5, shape=(3, 4), seed=0, dtype=np.float32):
    """Keyframes with very uneven spacing (scales 0.1 .. 3), where uniform and centripetal differ."""
    rng = np.random.RandomState(seed)
    scales = np.array([1.0, 0.1, 3.0, 0.5, 2.0, 1.5, 0.3][:n]).reshape((n,) + (1,) * len(shape))
    return (np.cumsum(rng.randn(n, *shape) * scales, axis=0)).astype(dtype)


def curve(keyframes, alpha):
    """`ts [M] -> points [M, *shape]`, jitted and vmapped as the renderer uses it."""
    fn = jax.jit(jax.vmap(lambda t: sample_spline(keyframes, t, alpha=alpha)))
    return lambda ts: np.asarray(fn(jnp.asarray(ts, keyframes.dtype)))


# ----------------------------------------------------------------------------- the curve


@ALPHAS
def test_passes_through_every_keyframe(alpha):
    keys = jnp.asarray(uneven_keyframes())
    n = keys.shape[0]
    got = curve(keys, alpha)(np.arange(n, dtype=np.float32) / np.float32(n))
    np.testing.assert_allclose(got, np.asarray(keys), rtol=0, atol=1e-6)
    # Just below a knot (float32 rounding can land on either side) is still the keyframe.
    below = np.nextafter(np.arange(1, n + 1, dtype=np.float32) / np.float32(n), np.float32(0))
    np.testing.assert_allclose(curve(keys, alpha)(below), np.roll(np.asarray(keys), -1, axis=0), rtol=0, atol=2e-5)


def test_uniform_matches_hand_computed_catmull_rom():
    # Keyframes 0, 1, 0, -1 (scalars). t = 1/8 is segment 0 at u = 0.5 with neighbours P3 = -1, P0 = 0,
    # P1 = 1, P2 = 0: 0.5 * (2*0 + (1 - (-1)) * 0.5 + (2*(-1) - 5*0 + 4*1 - 0) * 0.25 + (1 + 0 - 3 + 0) * 0.125)
    # = 0.5 * (1 + 0.5 - 0.25) = 0.625; by symmetry t = 3/8 gives 0.625 and t = 5/8 gives -0.625.
    keys = jnp.asarray([0.0, 1.0, 0.0, -1.0])
    got = curve(keys, UNIFORM)(np.array([1 / 8, 3 / 8, 5 / 8, 7 / 8, 0.25]))
    np.testing.assert_allclose(got, [0.625, 0.625, -0.625, -0.625, 1.0], atol=1e-6)


def barry_goldman(p0, p1, p2, p3, t0, t1, t2, t3, s):
    """Reference: the pyramidal Barry-Goldman evaluation of a Catmull-Rom segment at knot parameter s."""
    a1 = (t1 - s) / (t1 - t0) * p0 + (s - t0) / (t1 - t0) * p1
    a2 = (t2 - s) / (t2 - t1) * p1 + (s - t1) / (t2 - t1) * p2
    a3 = (t3 - s) / (t3 - t2) * p2 + (s - t2) / (t3 - t2) * p3
    b1 = (t2 - s) / (t2 - t0) * a1 + (s - t0) / (t2 - t0) * a2
    b2 = (t3 - s) / (t3 - t1) * a2 + (s - t1) / (t3 - t1) * a3
    return (t2 - s) / (t2 - t1) * b1 + (s - t1) / (t2 - t1) * b2


@ALPHAS
def test_trace_is_the_barry_goldman_curve(alpha):
    """Each segment is the pyramid's curve, at the knot parameter the monotone warp maps u to."""
    with jax.enable_x64(True):
        keys = uneven_keyframes(dtype=np.float64)
        n = keys.shape[0]
        flat = keys.reshape(n, -1)
        d = np.linalg.norm(np.roll(flat, -1, axis=0) - flat, axis=1) ** alpha
        np.testing.assert_allclose(np.asarray(knot_intervals(jnp.asarray(keys), alpha)), d, rtol=1e-9)
        sample = curve(jnp.asarray(keys), alpha)
        for i in range(n):
            p0, p1, p2, p3 = (keys[(i + k) % n] for k in (-1, 0, 1, 2))
            t0, t1 = 0.0, d[(i - 1) % n]
            t2, t3 = t1 + d[i], t1 + d[i] + d[(i + 1) % n]
            for u in (0.1, 0.37, 0.5, 0.81, 0.99):
                v = float(segment_warp(d[(i - 1) % n], d[i], d[(i + 1) % n], u))
                want = barry_goldman(p0, p1, p2, p3, t0, t1, t2, t3, t1 + v * (t2 - t1))
                got = sample(np.array([(i + u) / n]))[0]
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def one_sided_derivatives(sample, t, h):
    """Second-order one-sided finite differences of the path at t: (left, right), each `[*shape]`."""
    p = sample(np.array([t - 2 * h, t - h, t, t + h, t + 2 * h]))
    left = (3 * p[2] - 4 * p[1] + p[0]) / (2 * h)
    right = (-3 * p[2] + 4 * p[3] - p[4]) / (2 * h)
    return left, right


@ALPHAS
def test_c1_at_every_knot_and_the_seam(alpha):
    with jax.enable_x64(True):
        keys = jnp.asarray(uneven_keyframes(dtype=np.float64))
        n = keys.shape[0]
        sample = curve(keys, alpha)
        h = 1e-5
        velocity = jax.jacfwd(lambda t: sample_spline(keys, t, alpha=alpha))
        for i in range(n):
            knot = i / n if i else 1.0  # i = 0 is the seam: t -> 1 from the left, t = 0 (= 1 wrapped) from the right
            left, right = one_sided_derivatives(sample, knot, h)
            scale = np.abs(right).max()
            assert scale > 1.0  # the path moves at the knot (not a trivial pass)
            assert np.abs(left - right).max() <= 1e-6 * scale, (i, np.abs(left - right).max(), scale)
            # The same with float64 autodiff, a hair inside each side of the knot.
            d_left = np.asarray(velocity(jnp.float64(knot - 1e-9)))
            d_right = np.asarray(velocity(jnp.float64(i / n + 1e-9)))
            np.testing.assert_allclose(d_left, d_right, rtol=0, atol=1e-5 * scale)
            np.testing.assert_allclose(d_right, right, rtol=0, atol=1e-5 * scale)


def test_finite_difference_check_detects_a_kink():
    """Negative control: the same check fails on piecewise-linear interpolation (C0, not C1)."""
    keys = uneven_keyframes(dtype=np.float64)
    n = keys.shape[0]

    def linear(ts):
        x = np.mod(ts, 1.0) * n
        i = np.minimum(np.floor(x).astype(int), n - 1)
        u = (x - i).reshape((-1,) + (1,) * (keys.ndim - 1))
        return (1 - u) * keys[i] + u * keys[(i + 1) % n]

    left, right = one_sided_derivatives(linear, 2 / n, 1e-5)
    assert np.abs(left - right).max() > 1e-2 * np.abs(right).max()


def test_centripetal_without_the_warp_would_not_be_c1():
    """Why the warp exists: the knot intervals either side of a keyframe differ, so raw speed jumps."""
    d = np.asarray(knot_intervals(jnp.asarray(uneven_keyframes()), CENTRIPETAL))
    assert np.max(d / np.roll(d, 1)) > 1.5


@ALPHAS
def test_constant_keyframes_give_a_constant_path(alpha):
    keys = jnp.broadcast_to(jnp.asarray([[0.3, -1.2, 2.5]], jnp.float32), (6, 3))
    got = curve(keys, alpha)(np.linspace(0, 1, 97, endpoint=False, dtype=np.float32))
    np.testing.assert_allclose(got, np.broadcast_to(np.asarray(keys[0]), got.shape), rtol=0, atol=1e-6)


def test_repeated_keyframes_stay_finite():
    keys = jnp.asarray(uneven_keyframes())
    keys = jnp.concatenate([keys[:2], keys[1:2], keys[2:]])  # keyframe 1 twice in a row: zero distance
    for alpha in (UNIFORM, CENTRIPETAL):
        got = curve(keys, alpha)(np.linspace(0, 1, 61, endpoint=False, dtype=np.float32))
        assert np.all(np.isfinite(got))


def test_one_and_two_keyframes():
    one = jnp.ones((1, 2, 3), jnp.float32)
    np.testing.assert_allclose(curve(one, CENTRIPETAL)(np.array([0.0, 0.4, 0.9])), np.ones((3, 2, 3)), atol=1e-6)
    two = jnp.asarray([[0.0], [1.0]], jnp.float32)
    got = curve(two, UNIFORM)(np.array([0.0, 0.25, 0.5, 0.75]))[:, 0]
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.5], atol=1e-6)


@pytest.mark.parametrize("d", [(1.0, 1.0, 1.0), (1e-3, 1.0, 1e3), (1e3, 1.0, 1e-3), (0.2, 5.0, 0.7)])
def test_segment_warp_is_monotone_from_0_to_1(d):
    u = np.linspace(0, 1, 1001)
    v = np.asarray(jax.vmap(lambda u: segment_warp(*map(jnp.float32, d), u))(jnp.asarray(u, jnp.float32)))
    assert v[0] == pytest.approx(0, abs=1e-7) and v[-1] == pytest.approx(1, abs=1e-6)
    assert np.all(np.diff(v) > 0)
    if d == (1.0, 1.0, 1.0):
        np.testing.assert_allclose(v, u, atol=1e-6)


def test_vmap_and_jit_match_one_at_a_time():
    keys = jnp.asarray(uneven_keyframes(n=4, shape=(14, 8)))  # [N, num_ws, w_dim]
    ts = np.linspace(0, 1, 23, endpoint=False, dtype=np.float32)
    fn = jax.jit(jax.vmap(functools.partial(sample_spline, alpha=CENTRIPETAL), in_axes=(None, 0)))
    batched = fn(keys, jnp.asarray(ts))
    assert batched.shape == (23, 14, 8) and batched.dtype == jnp.float32
    one_by_one = np.stack([np.asarray(sample_spline(keys, float(t), alpha=0.5)) for t in ts])
    # jit fuses (FMA): float32 rounding differs from op-by-op
    np.testing.assert_allclose(np.asarray(batched), one_by_one, rtol=1e-5, atol=1e-5)


def test_t_wraps():
    keys = jnp.asarray(uneven_keyframes())
    a = curve(keys, CENTRIPETAL)(np.array([0.3, 1.3, -0.7], np.float32))
    np.testing.assert_allclose(a[1], a[0], atol=1e-5)
    np.testing.assert_allclose(a[2], a[0], atol=1e-5)


# ----------------------------------------------------------------------------- keyframes


def test_keyframes_from_seeds_use_generate_z():
    w = np.random.RandomState(7).randn(6, 2 * 5).astype(np.float32)

    def map_fn(z):  # a linear "mapping network" z [6] -> ws [2, 5]
        return (z @ w).reshape(2, 5)

    keys = keyframes_from_seeds([3, 0, 11], map_fn, z_dim=6)
    assert keys.shape == (3, 2, 5) and keys.dtype == np.float32
    for k, seed in enumerate([3, 0, 11]):
        z = np.random.RandomState(seed).randn(1, 6)[0].astype(np.float32)  # NVIDIA's generate.py
        np.testing.assert_array_equal(z, z_for_seed(seed, 6))
        np.testing.assert_allclose(keys[k], map_fn(z), rtol=1e-6)
    with pytest.raises(GvjaxError):
        keyframes_from_seeds([], map_fn, z_dim=6)


def test_keyframes_from_npy(tmp_path):
    ws = np.random.RandomState(0).randn(4, 3, 8).astype(np.float32)
    np.save(tmp_path / "ws.npy", ws)
    np.testing.assert_array_equal(keyframes_from_npy(tmp_path / "ws.npy", num_ws=3, w_dim=8), ws)
    np.testing.assert_array_equal(keyframes_from_npy(tmp_path / "ws.npy"), ws)
    np.save(tmp_path / "w.npy", ws[:, 0].astype(np.float64))  # [N, w_dim]: broadcast to every layer
    got = keyframes_from_npy(tmp_path / "w.npy", num_ws=3, w_dim=8)
    assert got.shape == (4, 3, 8) and got.dtype == np.float32
    np.testing.assert_array_equal(got[:, 2], ws[:, 0])


def test_keyframes_from_npy_errors_are_one_line(tmp_path):
    np.save(tmp_path / "ws.npy", np.zeros((4, 3, 8), np.float32))
    np.save(tmp_path / "flat.npy", np.zeros(8, np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3, 8), np.float32))
    bad = np.zeros((2, 3, 8), np.float32)
    bad[1, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    (tmp_path / "text.npy").write_text("these are not keyframes\n")
    cases = [
        (tmp_path / "missing.npy", {}, "not found"),
        (tmp_path / "text.npy", {}, "not a .npy"),
        (tmp_path / "flat.npy", {}, "(8,)"),
        (tmp_path / "ws.npy", {"num_ws": 5, "w_dim": 8}, "[N, 5, 8]"),
        (tmp_path / "ws.npy", {"num_ws": 3, "w_dim": 16}, "[N, 3, 16]"),
        (tmp_path / "empty.npy", {}, "no keyframes"),
        (tmp_path / "nan.npy", {}, "NaN"),
    ]
    for path, kwargs, fragment in cases:
        with pytest.raises(GvjaxError) as info:
            keyframes_from_npy(path, **kwargs)
        message = str(info.value)
        assert fragment in message and str(path) in message and "\n" not in message, message


# ----------------------------------------------------------------------------- motion


def unwrap(t):
    """Laps travelled per frame from t in [0, 1) (steps are < 1 lap)."""
    steps = np.mod(np.diff(t), 1.0)
    return np.concatenate([[0.0], np.cumsum(steps)])


@pytest.mark.parametrize("laps", [1, 2, 3])
def test_advance_times_makes_exact_laps_and_loops(laps):
    rng = np.random.RandomState(0)
    drive = np.clip(rng.rand(450) ** 3, 0, 1)
    t = advance_times(drive, base_speed=0.5, gain=2.0, laps=laps, fps=30)
    assert t.shape == (450,) and t[0] == 0.0
    assert np.all((t >= 0) & (t < 1))
    steps = 0.5 + 2.0 * drive
    step = steps * laps / steps.sum()  # the normalised per-frame steps, by hand
    travelled = unwrap(t)
    np.testing.assert_allclose(np.diff(travelled), step[:-1], rtol=1e-9, atol=1e-12)
    assert np.all(np.diff(travelled) > 0)  # monotone
    # The step after the last frame lands exactly on `laps` laps: t = 0 again, a seamless loop.
    assert travelled[-1] + step[-1] == pytest.approx(laps, abs=1e-9)
    after_last = np.mod(t[-1] + step[-1], 1.0)
    assert min(after_last, 1.0 - after_last) < 1e-9


def test_silence_moves_at_base_speed():
    t = advance_times(np.zeros(300), base_speed=1.0, gain=5.0, laps=2, fps=30)
    np.testing.assert_allclose(np.diff(unwrap(t)), np.full(299, 2 / 300), rtol=1e-9)
    # base speed 0 on silence: nothing would move; falls back to uniform motion
    t0 = advance_times(np.zeros(300), base_speed=0.0, gain=5.0, laps=2, fps=30)
    np.testing.assert_allclose(t0, t, atol=1e-12)


def test_louder_frames_move_faster():
    drive = np.r_[np.zeros(100), np.ones(100)]
    steps = np.diff(unwrap(advance_times(drive, base_speed=1.0, gain=3.0, laps=1, fps=25)))
    np.testing.assert_allclose(steps[:99], steps[0], rtol=1e-9)
    np.testing.assert_allclose(steps[100:], steps[-1], rtol=1e-9)
    assert steps[-1] / steps[0] == pytest.approx(4.0)  # (1 + 3 * 1) / (1 + 3 * 0)
    assert steps[0] == pytest.approx(1 / (100 * 1 + 100 * 4))  # one lap over 100 quiet + 100 loud frames


def test_laps_per_minute():
    fps, n = 30, 2 * 60 * 30  # a 2-minute song
    drive = np.abs(np.sin(np.arange(n) / 50))
    t = advance_times(drive, base_speed=1.0, gain=1.0, laps_per_minute=1.5, fps=fps)
    steps = np.diff(unwrap(t))
    mean_step = (1.5 * 2) / n  # 1.5 laps a minute for 2 minutes, in n frames
    scale = mean_step / np.mean(1.0 + drive)
    np.testing.assert_allclose(steps, (1.0 + drive[:-1]) * scale, rtol=1e-9)
    assert unwrap(t)[-1] + (1.0 + drive[-1]) * scale == pytest.approx(3.0, rel=1e-12)


def test_advance_times_rejects_impossible_options():
    drive = np.zeros(10)
    for kwargs in (
        dict(laps=1, laps_per_minute=2),
        dict(),
        dict(laps=0),
        dict(laps=-1),
        dict(laps_per_minute=0),
        dict(laps=1, base_speed=-1),
        dict(laps=1, gain=-0.5),
    ):
        with pytest.raises(GvjaxError):
            advance_times(drive, fps=30, **kwargs)
    with pytest.raises(GvjaxError):
        advance_times(drive, laps=1, fps=0)
    with pytest.raises(GvjaxError):
        advance_times(np.zeros(0), laps=1, fps=30)
