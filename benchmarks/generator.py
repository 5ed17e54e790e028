"""Generator throughput: images/s of gvjax's StyleGAN2 or StyleGAN3, optionally beside NVIDIA's PyTorch one.

    # the full table on the 256x256 benchmark config (random weights), with NVIDIA's generator
    # (a checkout of NVlabs/stylegan2-ada-pytorch; torch needed only for this part):
    python benchmarks/generator.py --nvidia-repo /path/to/stylegan2-ada-pytorch

    # StyleGAN3-T at 256x256 (train.py --cfg=stylegan3-t channels; random weights) beside NVIDIA's
    # (a checkout of NVlabs/stylegan3), NVIDIA's call and ours alternating at each batch:
    python benchmarks/generator.py --nvidia-sg3-repo /path/to/stylegan3 --sg3 t256 --batches 1,2,4

    # ours alone: StyleGAN3-T and -R at 1024x1024 in bfloat16 (frames/s; for an accelerator):
    python benchmarks/generator.py --sg3 t1024,r1024 --dtypes bfloat16 --batches 1,4

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

from gvjax import models

from gvjax.config import GeneratorConfig

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from gvjax.model import Generator, init_variables, modconv_for_batch, with_arranged_kernels
from gvjax.models import stylegan3 as sg3

from benchmark_configs import BENCH_CONFIG, SG3_CONFIGS  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def seconds_per_call(fn, *args, seconds: float, warmup: int = 1) -> float:
    """Seconds per call of `fn(*args)` (already compiled; `warmup` calls excluded)."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    calls, start = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn(*args))
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def matmul_gflops(seconds: float = 2.0, n: int = 2048, dtype=jnp.float32) -> float:
    """Measured `dtype` (float32) n x n matmul GFLOP/s of the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
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

    stylegan2 = models.family_of(config) == "stylegan2"  # only StyleGAN2 has Winograd convs

    def generator(winograd):
        return models.generator(config, modconv=modconv, dtype=DTYPES[dtype], **({"winograd": winograd} if stylegan2 else {}))

    direct_flops = float("nan")
    if count_direct and stylegan2:
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
        "winograd": ("auto" if winograd is None else winograd) if stylegan2 else False,
        "compile_s": compile_s,
        "arrange_s": arrange_s,
        "backend": jax.default_backend(),
    }
    return PreparedGenerator(compiled, variables, z, c, info)


def time_prepared(prepared: PreparedGenerator, *, seconds: float, warmup: int = 1) -> dict:
    """Images/s of a prepared step, with the GFLOP/s its FLOP counts imply."""
    info = prepared.info
    per_call = seconds_per_call(prepared.compiled, prepared.variables, prepared.z, prepared.c, seconds=seconds, warmup=warmup)
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

# --- StyleGAN3 ------------------------------------------------------------------------------------


def sg3_nvidia_init_kwargs(config: sg3.StyleGAN3Config) -> dict:
    """NVIDIA's `training.networks_stylegan3.Generator(**kwargs)` for `config` (every field explicit)."""
    fields = (
        "channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband", "last_stopband_rel",
        "margin_size", "output_scale", "num_fp16_res", "conv_kernel", "filter_size", "lrelu_upsampling",
        "use_radial_filters", "conv_clamp", "magnitude_ema_beta",
    )
    return {
        "z_dim": config.z_dim, "w_dim": config.w_dim, "c_dim": config.c_dim,
        "img_resolution": config.img_resolution, "img_channels": config.img_channels,
        "mapping_kwargs": {
            "num_layers": config.mapping_layers, "lr_multiplier": config.mapping_lr_multiplier, "w_avg_beta": config.w_avg_beta,
        },
        **{name: getattr(config, name) for name in fields},
    }


def sg3_nvidia_state(repo: str, config: sg3.StyleGAN3Config, variables) -> dict[str, np.ndarray]:
    """Our StyleGAN3 variables as NVIDIA's state dict, with the lowpass filters its constructor designs.

    Our `params` and `buffers` are in NVIDIA's state-dict names, so this is a name mapping; NVIDIA's
    `up_filter` / `down_filter` buffers are its own (scipy) designs, checked against ours by
    `gvjax.convert.stylegan3.variables_from_state_dict`, which must also give our variables back.
    """
    from flax.traverse_util import flatten_dict

    from gvjax.convert.stylegan3 import variables_from_state_dict
    from nvidia_baseline import SG3_NETWORKS, nvidia_state_dict

    ours = {
        ".".join(k): np.array(v)  # a writable copy (torch.from_numpy warns on read-only arrays)
        for coll in ("params", "buffers") for k, v in flatten_dict(jax.device_get(variables[coll])).items()
    }
    theirs = nvidia_state_dict(repo, sg3_nvidia_init_kwargs(config), module=SG3_NETWORKS)
    designed = {name for name in theirs if name.endswith(("up_filter", "down_filter"))}
    missing, extra = set(theirs) - designed - set(ours), set(ours) - set(theirs)
    if missing or extra:
        raise RuntimeError(f"StyleGAN3 names differ from NVIDIA's: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}")
    state = {name: theirs[name] if name in designed else ours[name] for name in theirs}
    back = variables_from_state_dict(state, config)  # raises if a designed filter differs from ours
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(jax.device_get(
        {k: variables[k] for k in ("params", "buffers")}))))
    return state


def prepare_sg3_generator(config: sg3.StyleGAN3Config, variables, *, batch: int, modconv: str, dtype: str) -> PreparedGenerator:
    """Arrange the StyleGAN3 kernels (once per model) and compile z -> image for a batch."""
    return prepare_generator(config, variables, batch=batch, modconv=modconv, dtype=dtype, count_direct=False)


def sg3_kind(config: sg3.StyleGAN3Config) -> str:
    return "R" if config.conv_kernel == 1 and config.use_radial_filters else "T"


def sg3_table(args) -> None:
    """StyleGAN3 configs: ours per batch, beside NVIDIA's (same weights, calls alternating) when given."""
    backend = jax.default_backend()
    print(f"device: {jax.devices()[0].device_kind} ({backend}), cores: {os.cpu_count()}")
    # float32 always: NVIDIA's generator runs in float32 here
    dtypes = dict.fromkeys(["float32", *args.dtypes] if args.nvidia_sg3_repo else args.dtypes)
    peaks = {dtype: matmul_gflops(n=2048 if backend == "cpu" else 8192, dtype=DTYPES[dtype]) for dtype in dtypes}
    for dtype, peak in peaks.items():
        print(f"measured {dtype} matmul peak: {peak:.1f} GFLOP/s")
    torch = None
    if args.nvidia_sg3_repo:
        import torch

        from nvidia_baseline import SG3_NETWORKS, load_nvidia_generator, time_nvidia_generator

        print(f"NVIDIA: {args.nvidia_sg3_repo} (training.networks_stylegan3, reference ops on the CPU), "
              f"torch {torch.__version__}, {os.cpu_count()} threads, float32 (force_fp32)")
    results = {"peak_gflops": peaks, "configs": {}}
    for name in args.sg3:
        config = SG3_CONFIGS[name]
        kind = sg3_kind(config)
        _, layers = sg3.synthesis_layout(config)
        print()
        print(f"StyleGAN3-{kind} '{name}': {config.img_resolution}^2, z=w={config.z_dim}, {config.mapping_layers} mapping layers, "
              f"channel_base {config.channel_base}, channel_max {config.channel_max}, conv_kernel {config.conv_kernel}, "
              f"radial filters {config.use_radial_filters}, {len(layers)} layers ({layers[0].name} ... {layers[-1].name}); "
              "random weights")
        variables = jax.device_get(sg3.init_variables(config, jax.random.key(0)))
        G = None
        if torch is not None:
            G = load_nvidia_generator(
                args.nvidia_sg3_repo, sg3_nvidia_init_kwargs(config), sg3_nvidia_state(args.nvidia_sg3_repo, config, variables),
                module=SG3_NETWORKS,
            )
            print("each batch: our warm-up call and NVIDIA's on the same z (outputs compared), then NVIDIA's and our "
                  f"timed calls alternating, {args.rounds} round(s), the best of each")
        print()
        print("| batch | generator | modconv | dtype | images/s | s per batch | GFLOP/s | % of peak | ours / NVIDIA | max |ours - NVIDIA| |")
        print("|---:|---|---|---|---:|---:|---:|---:|---:|---:|")
        rows, nvidia = [], {}
        for batch in args.batches:
            for dtype in args.dtypes:
                for form in args.forms:
                    modconv = modconv_for_batch(batch) if form == "auto" else form
                    prepared = prepare_sg3_generator(config, variables, batch=batch, modconv=modconv, dtype=dtype)
                    ours_img = prepared.images()  # warm-up call
                    diff = float("nan")
                    if G is not None and batch not in nvidia:
                        theirs_img = nvidia_images(G, np.asarray(prepared.z))  # NVIDIA's warm-up call, same z
                        diff = max_abs_diff(ours_img, theirs_img) if dtype == "float32" else float("nan")
                    best, best_nvidia = None, nvidia.get(batch)
                    for _ in range(args.rounds):  # alternate: NVIDIA, then ours, on the same machine load
                        if G is not None and batch not in nvidia:
                            n = time_nvidia_generator(G, batch, seconds=args.seconds, threads=os.cpu_count(), warmup=0)
                            if best_nvidia is None or n["images_per_s"] > best_nvidia["images_per_s"]:
                                best_nvidia = n
                        r = time_prepared(prepared, seconds=args.seconds, warmup=0)
                        if best is None or r["images_per_s"] > best["images_per_s"]:
                            best = r
                    del prepared
                    if best_nvidia is not None and batch not in nvidia:
                        nvidia[batch] = best_nvidia
                        gf = best["gflops_per_image"] * batch / best_nvidia["seconds_per_batch"]  # our FLOP count
                        print(f"| {batch} | NVIDIA (reference ops) | fused | float32 | {best_nvidia['images_per_s']:.4f} | "
                              f"{best_nvidia['seconds_per_batch']:.2f} | ({gf:.1f}) | ({100 * gf / peaks['float32']:.0f}%) | 1.00x | |",
                              flush=True)
                    best.update(kind=kind, config=name, max_abs_diff_vs_nvidia=diff)
                    ratio = best["images_per_s"] / nvidia[batch]["images_per_s"] if batch in nvidia else float("nan")
                    best["vs_nvidia"] = ratio
                    rows.append(best)
                    ratio_text = "-" if ratio != ratio else f"{ratio:.2f}x"
                    diff_text = "" if diff != diff else f"{diff:.1e}"
                    print(f"| {batch} | ours | {modconv} | {dtype} | {best['images_per_s']:.4f} | {best['seconds_per_batch']:.2f} | "
                          f"{best['gflop_per_s']:.1f} | {100 * best['gflop_per_s'] / peaks[dtype]:.0f}% | {ratio_text} | {diff_text} |",
                          flush=True)
        print()
        top = max(rows, key=lambda r: r["images_per_s"])
        print(f"GFLOP per image (XLA cost analysis of our step): {top['gflops_per_image']:.1f}; NVIDIA's GFLOP/s in "
              "parentheses count the same FLOPs over its time.")
        line = f"our best: batch {top['batch']} ({top['modconv']}, {top['dtype']}), {top['images_per_s']:.4f} images/s"
        if nvidia:
            nv_top = max(nvidia.values(), key=lambda r: r["images_per_s"])
            line += (f" = {top['vs_nvidia']:.2f}x NVIDIA at that batch, {top['images_per_s'] / nv_top['images_per_s']:.2f}x "
                     f"NVIDIA's best (batch {nv_top['batch']}, {nv_top['images_per_s']:.4f} images/s)")
        print(line, flush=True)
        results["configs"][name] = {
            "kind": kind, "config": config.to_dict(), "ours": rows, "nvidia": {str(b): v for b, v in nvidia.items()},
        }
    if args.json_out:
        pathlib.Path(args.json_out).write_text(json.dumps(results, indent=1, default=str))


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
    p.add_argument("--batches", help="batches of the full table (StyleGAN2: 1,8,32; StyleGAN3: 1,2,4)")
    p.add_argument(
        "--forms", help="modulated-conv forms of the full table (StyleGAN2: grouped,shared; StyleGAN3: auto = modconv_for_batch)"
    )
    p.add_argument(
        "--dtypes", help="compute dtypes (StyleGAN2: float32,bfloat16, the first is used with --model; StyleGAN3: float32)"
    )
    p.add_argument(
        "--seconds", type=float, help="minimum timed seconds per measurement (StyleGAN2: 3; StyleGAN3: 1, one call at 256^2 on a CPU)"
    )
    p.add_argument("--nvidia-repo", help="checkout of NVlabs/stylegan2-ada-pytorch to time beside ours")
    p.add_argument(
        "--sg3", help=f"StyleGAN3 table instead, on these configs (comma-separated: {', '.join(SG3_CONFIGS)}; "
        "benchmarks/benchmark_configs.py); t256 with --nvidia-sg3-repo",
    )
    p.add_argument(
        "--nvidia-sg3-repo", help="checkout of NVlabs/stylegan3 to time beside our StyleGAN3 (same weights; not with --nvidia-repo)"
    )
    p.add_argument("--rounds", type=int, default=1, help="StyleGAN3: alternating NVIDIA / ours timings per batch (best kept)")
    p.add_argument("--json-out", help="also write the full table as JSON here")
    p.add_argument(
        "--winograd", default="auto", choices=["auto", "on", "off"],
        help="3x3 convs as Winograd F(2x2,3x3): auto = gvjax.model.use_winograd per layer",
    )
    args = p.parse_args(argv)
    if args.nvidia_sg3_repo and not args.sg3:
        args.sg3 = "t256"
    if args.sg3 and (args.model or args.nvidia_repo):
        p.error("--sg3 / --nvidia-sg3-repo run the StyleGAN3 table alone (NVIDIA's two repositories share package names)")
    family = "sg3" if args.sg3 else "sg2"
    defaults = {"sg2": ("1,8,32", "grouped,shared", "float32,bfloat16", 3.0), "sg3": ("1,2,4", "auto", "float32", 1.0)}[family]
    args.batches, args.forms, args.dtypes, seconds = (
        given if given is not None else default
        for given, default in zip((args.batches, args.forms, args.dtypes, args.seconds), defaults)
    )
    args.seconds = float(seconds)
    args.winograd = {"auto": None, "on": True, "off": False}[args.winograd]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.forms = args.forms.split(",")
    args.dtypes = args.dtypes.split(",")
    if args.sg3:
        args.sg3 = args.sg3.split(",")
        unknown = [name for name in args.sg3 if name not in SG3_CONFIGS]
        if unknown:
            p.error(f"unknown --sg3 configs {unknown}; expected some of {list(SG3_CONFIGS)}")
        if any(form not in ("auto", "grouped", "shared") for form in args.forms):
            p.error("StyleGAN3 --forms: auto, grouped, shared")
        sg3_table(args)
    elif args.model:
        one_model(args)
    else:
        full_table(args)


if __name__ == "__main__":
    main()
