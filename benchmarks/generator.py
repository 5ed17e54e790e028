"""Generator throughput: images/s of gvjax's StyleGAN2, optionally beside NVIDIA's PyTorch one.

    # the full table on the 256x256 benchmark config (random weights), with NVIDIA's generator
    # (a checkout of NVlabs/stylegan2-ada-pytorch; torch needed only for this part):
    python benchmarks/generator.py --nvidia-repo /path/to/stylegan2-ada-pytorch

    # any model, one JSON line:
    python benchmarks/generator.py --model CKPT --batch 8 --json

Compilation, warm-up and the once-per-model kernel arrangement (`with_arranged_kernels`, as
render and generate do it) are excluded from every timing. Figures are best compared as ratios
from one invocation (the machines are noisy). GFLOP/s uses XLA's cost analysis of the
compiled step; the peak it is compared with is a float32 2048x2048 matmul measured here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gvjax.config import GeneratorConfig

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from gvjax.model import Generator, init_variables, modconv_for_batch, with_arranged_kernels

from benchmark_configs import BENCH_CONFIG  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def seconds_per_call(fn, *args, seconds: float) -> float:
    """Seconds per call of `fn(*args)` (already compiled; one warm-up call excluded)."""
    jax.block_until_ready(fn(*args))
    calls, start = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn(*args))
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def matmul_gflops(seconds: float = 2.0, n: int = 2048) -> float:
    """Measured float32 matmul GFLOP/s of the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    fn = jax.jit(lambda a: a @ a).lower(a).compile()
    return 2 * n**3 / seconds_per_call(fn, a, seconds=seconds) / 1e9


def _flops(stage) -> float:
    cost = stage.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


@dataclasses.dataclass
class PreparedGenerator:
    """One configuration's compiled z -> image step, its inputs, and what preparing it cost."""

    compiled: Any
    variables: dict
    z: jax.Array
    c: jax.Array | None
    info: dict  # batch, resolution, dtype, modconv, winograd, compile/arrange seconds, GFLOP per image

    def images(self) -> np.ndarray:
        """`[batch, R, R, C]` float32 images of the step's z (for comparisons)."""
        return np.asarray(self.compiled(self.variables, self.z, self.c), np.float32)


def prepare_generator(
    config, variables, *, batch: int, modconv: str, dtype: str, winograd: bool | None = None, count_direct: bool = True
) -> PreparedGenerator:
    """Arrange the kernels (once per model, as render does) and compile z -> image for a batch.

    `count_direct` also compiles (never runs) the same step with every conv direct (no Winograd),
    for `direct_gflops_per_image`: the work a direct implementation such as NVIDIA's does.
    """
    c = jnp.zeros((batch, config.c_dim), jnp.float32) if config.c_dim else None
    z = jax.random.normal(jax.random.key(1), (batch, config.z_dim), jnp.float32)

    def compile_step(gen, variables):
        def step(variables, z, c):
            return jax.vmap(lambda z, c: gen.apply(variables, z, c), in_axes=(0, None if c is None else 0))(z, c)

        return jax.jit(step).lower(variables, z, c).compile()

    def generator(winograd):
        return Generator(config, modconv=modconv, dtype=DTYPES[dtype], winograd=winograd)

    direct_flops = float("nan")
    if count_direct:
        direct = generator(False)
        direct_flops = _flops(compile_step(direct, with_arranged_kernels(direct, variables)))  # FLOPs only; never timed
    gen = generator(winograd)
    t0 = time.perf_counter()
    variables = jax.block_until_ready(with_arranged_kernels(gen, variables))  # once per model, as render does
    arrange_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = compile_step(gen, variables)
    compile_s = time.perf_counter() - t0
    info = {
        "batch": batch,
        "resolution": config.img_resolution,
        "dtype": dtype,
        "modconv": modconv,
        "gflops_per_image": _flops(compiled) / batch / 1e9,
        "direct_gflops_per_image": direct_flops / batch / 1e9,
        "winograd": "auto" if winograd is None else winograd,
        "compile_s": compile_s,
        "arrange_s": arrange_s,
        "backend": jax.default_backend(),
    }
    return PreparedGenerator(compiled, variables, z, c, info)


def time_prepared(prepared: PreparedGenerator, *, seconds: float) -> dict:
    """Images/s of a prepared step, with the GFLOP/s its FLOP counts imply."""
    info = prepared.info
    per_call = seconds_per_call(prepared.compiled, prepared.variables, prepared.z, prepared.c, seconds=seconds)
    return {
        "images_per_s": info["batch"] / per_call,
        **info,
        "seconds_per_batch": per_call,
        "gflop_per_s": info["gflops_per_image"] * info["batch"] / per_call,
        "direct_gflop_per_s": info["direct_gflops_per_image"] * info["batch"] / per_call,
    }


def time_generator(
    config, variables, *, batch: int, modconv: str, dtype: str, seconds: float, winograd: bool | None = None,
    count_direct: bool = True,
) -> dict:
    """Images/s of z -> image for a batch, with XLA's FLOP count of the compiled step.

    `gflop_per_s` counts what the compiled step executes; `direct_gflop_per_s` counts the FLOPs
    of the same step with every conv direct (no Winograd), i.e. the work a direct implementation
    such as NVIDIA's does, over our time (NaN without `count_direct`).
    """
    prepared = prepare_generator(
        config, variables, batch=batch, modconv=modconv, dtype=dtype, winograd=winograd, count_direct=count_direct
    )
    return time_prepared(prepared, seconds=seconds)


def nvidia_state(repo: str, config: GeneratorConfig, variables) -> dict[str, np.ndarray]:
    """Our variables under NVIDIA's state-dict names, with its FIR buffers filled in."""
    from gvjax.convert.nvidia import state_dict_from_variables

    return fill_nvidia_state(repo, config, state_dict_from_variables(jax.device_get(variables), config))


def fill_nvidia_state(repo: str, config: GeneratorConfig, ours: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`ours` (our state dict under NVIDIA's names) checked against the shapes NVIDIA's generator
    has, with its FIR buffers filled in."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from nvidia_baseline import nvidia_state_dict_shapes

    from gvjax.ops import setup_filter

    fir = setup_filter(config.resample_filter)
    state = {}
    for name, shape in nvidia_state_dict_shapes(repo, nvidia_init_kwargs(config)).items():
        state[name] = fir if name.endswith("resample_filter") else ours[name]
        assert state[name].shape == shape, (name, state[name].shape, shape)
    return state


def nvidia_init_kwargs(config: GeneratorConfig, num_fp16_res: int = 0) -> dict:
    """NVIDIA's `Generator(**kwargs)` for `config`; `num_fp16_res` top resolutions in float16 (its default: 4)."""
    return {
        "z_dim": config.z_dim, "w_dim": config.w_dim, "c_dim": config.c_dim,
        "img_resolution": config.img_resolution, "img_channels": config.img_channels,
        "mapping_kwargs": {"num_layers": config.mapping_layers},
        "synthesis_kwargs": {
            "channel_base": config.channel_base, "channel_max": config.channel_max, "num_fp16_res": num_fp16_res,
            "conv_clamp": config.conv_clamp, "architecture": config.architecture,
        },
    }


def nvidia_images(G, z: np.ndarray, *, force_fp32: bool = True) -> np.ndarray:
    """NVIDIA's images `[N, C, H, W]` (float32) of `z [N, z_dim]` (constant noise), on G's device."""
    import torch

    device = next(G.parameters()).device
    with torch.no_grad():
        zt = torch.from_numpy(np.asarray(z, np.float32)).to(device)
        img = G(zt, torch.zeros([len(z), G.c_dim], device=device), noise_mode="const", force_fp32=force_fp32)
        return img.float().cpu().numpy()


def max_abs_diff(ours_nhwc, theirs_nchw) -> float:
    """Max |ours - NVIDIA| of images in our layout `[N, H, W, C]` and NVIDIA's `[N, C, H, W]`."""
    return float(np.abs(np.transpose(np.asarray(ours_nhwc), (0, 3, 1, 2)) - theirs_nchw).max())


def check_same_outputs(repo: str, config: GeneratorConfig, variables, G) -> float:
    """Max |ours - NVIDIA| on 2 images: the timed generators compute the same thing."""
    z = np.random.RandomState(0).randn(2, config.z_dim).astype(np.float32)
    gen = Generator(config)
    ours = jax.vmap(lambda z: gen.apply(variables, z))(jnp.asarray(z))
    return max_abs_diff(ours, nvidia_images(G, z))


def full_table(args) -> None:
    config = BENCH_CONFIG
    variables = jax.device_get(init_variables(config, jax.random.key(0)))
    peak = matmul_gflops()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), cores: {os.cpu_count()}")
    print(f"config: {config.img_resolution}^2, z=w={config.z_dim}, {config.mapping_layers} mapping layers, "
          f"channel_base {config.channel_base}, channel_max {config.channel_max}, {config.architecture}")
    print(f"measured float32 matmul peak: {peak:.1f} GFLOP/s")
    rows = []
    nvidia = {}
    G = None
    if args.nvidia_repo:
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        import torch
        from nvidia_baseline import load_nvidia_generator, time_nvidia_generator

        G = load_nvidia_generator(args.nvidia_repo, nvidia_init_kwargs(config), nvidia_state(args.nvidia_repo, config, variables))
        print(f"NVIDIA vs ours, same weights: max |diff| = {check_same_outputs(args.nvidia_repo, config, variables, G):.2e}")
        print(f"NVIDIA: torch {torch.__version__}, {os.cpu_count()} threads; timed right before ours at each batch")
    print()
    print("GFLOP/s: executed by our compiled step (XLA cost analysis); direct-equivalent: the FLOPs of the")
    print("same step with every conv direct (NVIDIA's arithmetic), over our time. % of the matmul peak for each.")
    print()
    print("| batch | modconv | dtype | images/s | GFLOP/s executed | % of peak | direct-equivalent GFLOP/s | % of peak | vs NVIDIA (best path) |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for batch in args.batches:
        best_nvidia = None
        if G is not None:  # measured next to ours, so both see the same machine load
            for fused in (None, False):
                r = time_nvidia_generator(G, batch, seconds=args.seconds, threads=os.cpu_count(), fused_modconv=fused)
                nvidia[(batch, "auto" if fused is None else "non-fused")] = r["images_per_s"]
            best_nvidia = max(v for (b, _), v in nvidia.items() if b == batch)
            print(f"| {batch} | NVIDIA best of fused / non-fused | float32 | {best_nvidia:.3f} | | | | | 1.00x |", flush=True)
        for dtype in args.dtypes:
            for form in args.forms:
                r = time_generator(
                    config, variables, batch=batch, modconv=form, dtype=dtype, seconds=args.seconds, winograd=args.winograd
                )
                rows.append(r)
                ratio = f"{r['images_per_s'] / best_nvidia:.2f}x" if best_nvidia else "-"
                print(f"| {batch} | {form} | {dtype} | {r['images_per_s']:.3f} | {r['gflop_per_s']:.1f} | "
                      f"{100 * r['gflop_per_s'] / peak:.0f}% | {r['direct_gflop_per_s']:.1f} | "
                      f"{100 * r['direct_gflop_per_s'] / peak:.0f}% | {ratio} |", flush=True)
    if args.json_out:
        pathlib.Path(args.json_out).write_text(json.dumps({"peak_gflops": peak, "ours": rows, "nvidia": {f"{b}/{m}": v for (b, m), v in nvidia.items()}}, indent=1))


def one_model(args) -> None:
    from gvjax.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.model)
    modconv = modconv_for_batch(args.batch) if args.modconv == "auto" else args.modconv
    r = time_generator(
        ckpt.config, ckpt.variables, batch=args.batch, modconv=modconv, dtype=args.dtypes[0], seconds=args.seconds,
        winograd=args.winograd,
    )
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['images_per_s']:.3f} images/s at batch {r['batch']}, {r['resolution']}^2, {r['dtype']}, {modconv}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a gvjax checkpoint directory: time it alone (one configuration)")
    p.add_argument("--batch", type=int, default=8, help="batch for --model")
    p.add_argument("--modconv", default="auto", choices=["auto", "grouped", "shared"], help="form for --model")
    p.add_argument("--json", action="store_true", help="with --model: print one JSON line")
    p.add_argument("--batches", default="1,8,32", help="batches of the full table")
    p.add_argument("--forms", default="grouped,shared", help="modulated-conv forms of the full table")
    p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes (the first is used with --model)")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    p.add_argument("--nvidia-repo", help="checkout of NVlabs/stylegan2-ada-pytorch to time beside ours")
    p.add_argument("--json-out", help="also write the full table as JSON here")
    p.add_argument(
        "--winograd", default="auto", choices=["auto", "on", "off"],
        help="3x3 convs as Winograd F(2x2,3x3): auto = gvjax.model.use_winograd per layer",
    )
    args = p.parse_args(argv)
    args.winograd = {"auto": None, "on": True, "off": False}[args.winograd]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.forms = args.forms.split(",")
    args.dtypes = args.dtypes.split(",")
    if args.model:
        one_model(args)
    else:
        full_table(args)


if __name__ == "__main__":
    main()
