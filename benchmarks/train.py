"""Training throughput: images/s of gvjax's jitted StyleGAN2 train step (what `gvjax train` runs).

    # the bundled model's first 64x64 config (stage 1; the shipped one: add --channel-base 2048), random init, fresh D, batch 16, default options:
    python benchmarks/train.py

    # other sizes / options, one JSON line:
    python benchmarks/train.py --res 32 --channel-base 256 --channel-max 32 --batch 16 --json
    python benchmarks/train.py --pl-weight 0          # without path-length regularisation

Images/s counts real images shown to D per second (NVIDIA's kimg), averaged over whole
16-step cycles, so that the lazy regularisation steps (R1 every 16, path length every 4) are
included in their proportion. Compilation (of the three step variants: plain, path length,
path length + R1; `--compile-workers` at once) and one warm-up cycle are excluded; their time is
reported as `compile_s`. The reals are procedural fruit images held on the device.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import numpy as np

from gvjax.config import GeneratorConfig
from gvjax.discriminator import DiscriminatorConfig, init_d_variables
from gvjax.model import count_params, init_variables
from gvjax.train.config import TrainConfig
from gvjax.train.data import to_float
from gvjax.train.fruit import fruit_image
from gvjax.distributed import global_mesh
from gvjax.train.step import init_state, jit_train_step, make_networks, reg_flags

CYCLE = 16  # lcm of the regularisation intervals (4, 16)


def bench(g_config: GeneratorConfig, train: TrainConfig, *, cycles: int, compile_workers: int = 1) -> dict:
    """Images/s over `cycles` timed 16-step cycles, after one untimed cycle.

    The step's regularisation variants (plain, path length, path length + R1) are compiled
    ahead, `compile_workers` at once, and run as those executables (the same programs
    `TrainStep` jits).
    """
    from concurrent.futures import ThreadPoolExecutor

    d_config = DiscriminatorConfig.for_generator(g_config)
    nets = make_networks(g_config, d_config, train)
    g = init_variables(g_config, jax.random.key(0))
    d = init_d_variables(d_config, jax.random.key(1))
    mesh = global_mesh("data", divides=train.batch)
    from jax.sharding import NamedSharding, PartitionSpec

    rep, data = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    state = jax.device_put(init_state(nets, g, g, d, 0), rep)
    res = g_config.img_resolution
    reals = np.stack([fruit_image(res, 0, i)[0] for i in range(train.batch)])
    reals = jax.device_put(to_float(reals), data)
    step_fn = jit_train_step(nets, mesh)
    t0 = time.perf_counter()
    first = {reg_flags(nets, i): i for i in reversed(range(CYCLE))}  # a step of each variant
    with ThreadPoolExecutor(max(1, compile_workers)) as pool:
        compiled = dict(zip(first, pool.map(lambda i: step_fn.lower(state, reals, i).compile(), first.values())))

    def step(state, i):
        return compiled[reg_flags(nets, i)](state, reals)

    for i in range(CYCLE):  # the untimed warm-up cycle
        state, metrics = step(state, i)
        jax.device_get(metrics)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(CYCLE, CYCLE * (cycles + 1)):
        state, metrics = step(state, i)
        jax.device_get(metrics)  # as the training loop does every step
    elapsed = time.perf_counter() - t0
    steps = cycles * CYCLE
    return {
        "resolution": res,
        "batch": train.batch,
        "pl_weight": train.pl_weight,
        "augment": list(train.augment),
        "params_G": count_params(g["params"]),
        "params_D": count_params(d["params"]),
        "compile_s": round(compile_s, 1),  # compilation plus the untimed first cycle
        "compile_workers": max(1, compile_workers),
        "steps": steps,
        "sec_per_step": round(elapsed / steps, 4),
        "images_per_s": round(steps * train.batch / elapsed, 2),
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "device_kind": jax.devices()[0].device_kind,
        "cpu": platform.processor() or platform.machine(),
    }


def main() -> None:
    from gvjax.train.bundled_config import BUNDLED_TRAIN_CONFIG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = BUNDLED_TRAIN_CONFIG
    ap.add_argument("--res", type=int, default=base.img_resolution)
    ap.add_argument("--channel-base", type=int, default=base.channel_base)
    ap.add_argument("--channel-max", type=int, default=base.channel_max)
    ap.add_argument("--w-dim", type=int, default=base.w_dim)
    ap.add_argument("--mapping-layers", type=int, default=base.mapping_layers)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pl-weight", type=float, default=2.0)
    ap.add_argument("--augment", default="xflip,translate,color,cutout", help="comma-separated, or 'none'")
    ap.add_argument("--cycles", type=int, default=2, help="timed 16-step cycles")
    ap.add_argument("--compile-workers", type=int, default=1, help="regularisation variants compiled at once")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    g_config = GeneratorConfig(
        z_dim=args.w_dim, w_dim=args.w_dim, img_resolution=args.res, mapping_layers=args.mapping_layers,
        channel_base=args.channel_base, channel_max=args.channel_max, architecture="skip",
    )
    augment = () if args.augment == "none" else tuple(args.augment.split(","))
    train = TrainConfig(batch=args.batch, pl_weight=args.pl_weight, augment=augment)
    result = bench(g_config, train, cycles=args.cycles, compile_workers=args.compile_workers)
    if args.json:
        print(json.dumps(result))
        return
    print(f"train step, {result['resolution']}x{result['resolution']}, batch {result['batch']}, "
          f"G {result['params_G']:,} / D {result['params_D']:,} params, pl_weight {result['pl_weight']}, "
          f"{result['devices']} x {result['device_kind']} ({result['backend']})")
    print(f"  compile {result['compile_s']} s; {result['sec_per_step']} s/step over {result['steps']} steps; "
          f"{result['images_per_s']} images/s")


if __name__ == "__main__":
    main()
