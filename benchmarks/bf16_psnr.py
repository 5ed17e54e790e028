"""PSNR of bfloat16 synthesis against float32, on the NVIDIA reference fixtures.

    python benchmarks/bf16_psnr.py

PSNR = 10 log10(peak^2 / MSE), peak = max |float32 image| of the fixture batch (the random
fixture weights give values well outside [-1, 1]), and also with peak 2 (the [-1, 1] range).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gvjax.convert.nvidia import config_from_init_kwargs, variables_from_state_dict
from gvjax.model import Generator

DATA = pathlib.Path(__file__).parent.parent / "tests" / "data" / "stylegan2"


def main():
    for name in ("ada_micro_skip", "ada_micro_cond", "ada_micro_resnet"):
        with np.load(DATA / f"{name}_expected.npz") as e:
            meta, ws, ref = json.loads(str(e["meta"])), e["ws"], e["img_const"]
        with np.load(DATA / f"{name}_state.npz") as s:
            state = {k[6:]: s[k] for k in s.files if k.startswith("G_ema.")}
        config = config_from_init_kwargs(meta["G_init_kwargs"])
        variables = variables_from_state_dict(state, config)
        out = {}
        for dtype in (jnp.float32, jnp.bfloat16):
            gen = Generator(config, modconv="shared", dtype=dtype)
            out[dtype] = np.asarray(jax.vmap(lambda w: gen.apply(variables, w, method="synthesize"))(ws), np.float64)
        f32, bf16 = out[jnp.float32], out[jnp.bfloat16]
        mse = np.mean((bf16 - f32) ** 2)
        peak = np.abs(f32).max()
        print(f"{name:18s} bf16 vs f32: PSNR {10 * np.log10(peak**2 / mse):.1f} dB (peak {peak:.1f}), "
              f"{10 * np.log10(4 / mse):.1f} dB (peak 2); max |diff| {np.abs(bf16 - f32).max():.3f}; "
              f"f32 vs NVIDIA max |diff| {np.abs(np.transpose(f32, (0, 3, 1, 2)) - ref).max():.1e}")


if __name__ == "__main__":
    main()
