"""Direct vs Winograd F(2x2, 3x3) for the 3x3 convs of the 256x256 benchmark generator.

    python benchmarks/winograd.py [--batches 1,8] [--seconds 2]

For every same-resolution 3x3 conv shape of BENCH_CONFIG (conv1 of each block), times the
dense batched convolution both ways with the kernel already arranged (as inference runs it:
`with_arranged_kernels`), and prints the ratio and whether `gvjax.model.use_winograd` picks
Winograd there. The rule in `use_winograd` comes from this table.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from benchmark_configs import BENCH_CONFIG  # noqa: E402

from generator import seconds_per_call  # noqa: E402
from gvjax import ops  # noqa: E402
from gvjax.model import use_winograd  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,8")
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    cfg = BENCH_CONFIG
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print("| batch | resolution | channels | direct ms | Winograd ms | direct / Winograd | max rel diff | use_winograd |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for batch in [int(b) for b in args.batches.split(",")]:
        for res in cfg.block_resolutions:
            ch = cfg.channels(res)
            kx, kw = jax.random.split(jax.random.key(res))
            x = jax.random.normal(kx, (batch, res, res, ch), jnp.float32)
            w = jax.random.normal(kw, (ch, ch, 3, 3), jnp.float32) / (3 * ch**0.5)
            times, outs = {}, {}
            for name, winograd in (("direct", False), ("winograd", True)):
                taps = ops.arrange_kernel(w, winograd=winograd)["taps"]
                fn = jax.jit(
                    jax.vmap(
                        lambda x, taps: ops.conv2d_resample_arranged(
                            x, taps, kernel_size=3, padding=1, precision=lax.Precision.HIGHEST
                        ),
                        in_axes=(0, None),
                    )
                )
                outs[name] = fn(x, taps)
                times[name] = seconds_per_call(fn, x, taps, seconds=args.seconds)
            rel = float(jnp.abs(outs["winograd"] - outs["direct"]).max() / jnp.abs(outs["direct"]).max())
            print(
                f"| {batch} | {res} | {ch} | {times['direct'] * 1e3:.2f} | {times['winograd'] * 1e3:.2f} | "
                f"{times['direct'] / times['winograd']:.2f}x | {rel:.1e} | {use_winograd(ch, ch, res)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
