"""Render throughput and memory: end-to-end frames/s against generator-only frames/s, and
peak RSS for a short against a long song.

    python benchmarks/render.py                      # bundled model, batch 8, 10 s and 120 s songs
    python benchmarks/render.py --model CKPT --batch 16 --short 10 --long 120
    python benchmarks/render.py --warps              # frames/s with 0, 1 and 3 warps, 256^2 config

End-to-end is the steady-state rate of `gvjax render`'s frame loop (spline, synthesis,
uint8, device->host, H.264 encoding on the writer thread), from the end of the first batch
(which compiles) to the closed video. Generator-only is the same batch of ws through the
jitted, vmapped synthesis alone. Peak RSS is that of a `gvjax render` subprocess.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


def generator_only_fps(ckpt, batch: int, seconds: float = 5.0) -> float:
    from gvjax.model import Generator, modconv_for_batch, with_arranged_kernels

    gen = Generator(ckpt.config, modconv=modconv_for_batch(batch))
    variables = with_arranged_kernels(gen, ckpt.variables)  # as the render step holds them
    ws = jnp.broadcast_to(jnp.zeros((ckpt.config.num_ws, ckpt.config.w_dim)), (batch, ckpt.config.num_ws, ckpt.config.w_dim))
    ws = ws + jax.random.normal(jax.random.key(0), ws.shape)
    step = jax.jit(lambda v, ws: jax.vmap(lambda w: gen.apply(v, w, method="synthesize"))(ws))
    fn = step.lower(variables, ws).compile()
    jax.block_until_ready(fn(variables, ws))
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        jax.block_until_ready(fn(variables, ws))
        calls += 1
    return calls * batch / (time.perf_counter() - t0)


WARP_SETS = {
    0: (),
    1: (("slitscan", 32, {"delay": 12}),),
    3: (("slitscan", 32, {"delay": 12}), ("strips", 16, {"count": 8}), ("rotate", 64, {"degrees": 30.0})),
}


def warp_fps(batch: int, seconds: float = 6.0) -> dict[int, float]:
    """Render-step frames/s on the 256^2 benchmark config with 0, 1 and 3 warps (all at strength 0.5)."""
    from benchmark_configs import BENCH_CONFIG

    from gvjax.model import init_variables
    from gvjax.render.step import FrameSpec, RenderStep
    from gvjax.warps import WarpSpec

    config = BENCH_CONFIG
    variables = jax.device_get(init_variables(config, jax.random.key(0)))
    kf = np.random.RandomState(0).randn(4, config.num_ws, config.w_dim).astype(np.float32)
    out = {}
    for n, warps in WARP_SETS.items():
        specs = tuple(WarpSpec.make(kind, res, **params) for kind, res, params in warps)
        step = RenderStep(config, variables, FrameSpec(256, 256, warps=specs), batch=batch, seed=0)
        idx = np.arange(batch)
        t = idx / 1000.0
        strengths = np.full((batch, max(len(specs), 1)), 0.5, np.float32)
        jax.block_until_ready(step(kf, t, kf, t, np.zeros(batch), idx, strengths))
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or calls < 2:
            jax.block_until_ready(step(kf, t, kf, t, np.zeros(batch), idx + calls * batch, strengths))
            calls += 1
        out[n] = calls * batch / (time.perf_counter() - t0)
    return out


def timed_render(cfg, ckpt, song: pathlib.Path, out: pathlib.Path, *, model_spec: str = "", force: bool = False,
                 cache_dir="default", features=None, on_batch=None) -> dict:
    """`render_video` with its stages timed: audio features, first batch, steady loop, the whole call.

    features: precomputed `AudioFeatures` to render with instead of analysing the song.
    on_batch(frames_done, seconds_since_start) is called after each batch is queued.
    Returns frames, seconds (the whole call: song to muxed video), loop_frames_per_s (steady
    state, after the first batch), features_s, first_batch_s (start to the first batch queued:
    features, keyframes, compilation), the output's bytes.
    """
    import gvjax.render.pipeline as pipeline

    analyse, feature_s, stamps = pipeline.compute_features, [], []

    def compute_features(*args, **kwargs):
        t = time.perf_counter()
        try:
            return features if features is not None else analyse(*args, **kwargs)
        finally:
            feature_s.append(time.perf_counter() - t)

    def batch_done(frames: int) -> None:
        stamps.append(time.perf_counter() - t0)
        if on_batch:
            on_batch(frames, stamps[-1])

    pipeline.compute_features = compute_features  # timed (or replaced), for this call only
    try:
        t0 = time.perf_counter()
        result = pipeline.render_video(
            cfg, ckpt, song, out, model_spec=model_spec, progress=False, force=force, cache_dir=cache_dir, on_batch=batch_done
        )
    finally:
        pipeline.compute_features = analyse
    return {
        "frames": result.frames,
        "total_frames": result.total_frames,
        "seconds": result.seconds,
        "frames_per_s": result.frames / result.seconds,
        "loop_frames_per_s": result.loop_frames_per_s,
        "features_s": sum(feature_s),
        "features": "precomputed" if features is not None else "analysed",
        "first_batch_s": stamps[0] if stamps else float("nan"),
        "video_bytes": pathlib.Path(result.video).stat().st_size,
    }


def end_to_end_fps(model: str, batch: int, song: pathlib.Path, out: pathlib.Path) -> float:
    from gvjax.cli import load_model
    from gvjax.render.config import RenderConfig

    return timed_render(RenderConfig(batch=batch), load_model(model), song, out, model_spec=model)["loop_frames_per_s"]


def peak_rss_mb(model: str, batch: int, song: pathlib.Path, out: pathlib.Path) -> float:
    """Peak RSS (MB) of a `gvjax render` subprocess (the only child alive while it runs)."""
    code = (
        "import resource, sys; from gvjax.cli import main; sys.argv = sys.argv[1:];\n"
        "try:\n    main()\nfinally:\n    print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    args = [sys.executable, "-c", code, "gvjax", "render", str(song), "-o", str(out), "--model", model, "--batch", str(batch), "--quiet"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    kb = [int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("RSS ")][-1]
    return kb / 1024


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--short", type=float, default=10.0, help="seconds of the short song")
    p.add_argument("--long", type=float, default=120.0, help="seconds of the long song")
    p.add_argument("--json", action="store_true")
    p.add_argument("--warps", action="store_true", help="only: frames/s with 0, 1, 3 warps on the 256^2 config")
    args = p.parse_args(argv)
    if args.warps:
        fps = warp_fps(args.batch)
        result = {f"frames_per_s_{n}_warps": v for n, v in fps.items()}
        result.update({f"slowdown_{n}_warps": 1 - fps[n] / fps[0] for n in fps if n})
        print(json.dumps(result) if args.json else "\n".join(f"{k:24s} {v:.3f}" for k, v in result.items()))
        return

    from gvjax.cli import load_model
    from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        short = write_wav(tmp / "short.wav", synth_demo_track(args.short), DEMO_SR)
        long = write_wav(tmp / "long.wav", synth_demo_track(args.long), DEMO_SR)
        ckpt = load_model(args.model)
        gen_fps = generator_only_fps(ckpt, args.batch)
        e2e_fps = end_to_end_fps(args.model, args.batch, long, tmp / "e2e.mp4")
        rss_short = peak_rss_mb(args.model, args.batch, short, tmp / "short.mp4")
        rss_long = peak_rss_mb(args.model, args.batch, long, tmp / "long.mp4")
    result = {
        "model": args.model, "resolution": ckpt.config.img_resolution, "batch": args.batch,
        "backend": jax.default_backend(),
        "generator_only_fps": gen_fps, "end_to_end_fps": e2e_fps, "end_to_end_ratio": e2e_fps / gen_fps,
        f"peak_rss_mb_{args.short:g}s": rss_short, f"peak_rss_mb_{args.long:g}s": rss_long,
        "rss_ratio_long_over_short": rss_long / rss_short,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")


if __name__ == "__main__":
    main()
