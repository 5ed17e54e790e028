"""Peak memory of `gvjax convert` on a 1024x1024 config-f NVIDIA network pickle, against its size.

    python benchmarks/convert_memory.py [--resolution 1024] [--keep DIR]

Builds, without torch, a stylegan2-ada-pytorch snapshot pickle of config-f shape with random
float32 weights (`G`, `D`, `G_ema`, as `training_loop.py` writes them; about 360 MB at 1024), using
tests/checkpoint_writer.py. Then runs `python -m gvjax convert SRC DST` in a subprocess and reads
its peak resident set size (`ru_maxrss` of the waited-for child). For reference it also measures
a process that only imports what the converter imports (python, numpy, jax, flax, orbax). Prints
one JSON line; the target is peak < 3x the file size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import checkpoint_writer as cw  # noqa: E402  (tests/ is on sys.path)

_PEAK = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)
sys.stderr.write(r.stderr)
"""


def peak_rss_mb(cmd: list[str]) -> tuple[float, int, str]:
    """(peak RSS in MB of `cmd` run as a child, its exit code, its stderr). Linux: ru_maxrss is in KiB."""
    r = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True, check=True)
    kib, rc = r.stdout.split()
    return int(kib) / 1024, int(rc), r.stderr


def config_f_kwargs(resolution: int) -> dict:
    """Init kwargs of an ffhq-like config-f generator, as stylegan2-ada-pytorch pickles store them."""
    return {
        "z_dim": 512, "w_dim": 512, "mapping_kwargs": {"num_layers": 8},
        "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256, "architecture": "skip"},
        "c_dim": 0, "img_resolution": resolution, "img_channels": 3,
    }


def random_generator(kwargs: dict, seed: int):
    """An NVIDIA persistent Generator module with random weights of config `kwargs`."""
    import jax

    from gvjax.convert.nvidia import config_from_init_kwargs
    from gvjax.model import variable_shapes

    config = config_from_init_kwargs(kwargs)
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape, dtype=np.float32), variable_shapes(config))
    state, buffers = cw.nvidia_generator_state(variables)
    attributes = cw.generator_attributes(config.img_resolution, config.architecture, config.conv_clamp, config.num_fp16_res)
    return cw.generator_module(kwargs, state, buffers, attributes)


def build_pickle(path: Path, resolution: int) -> None:
    """Write a config-f snapshot pickle {training_set_kwargs, G, D, G_ema, augment_pipe}."""
    kwargs = config_f_kwargs(resolution)
    d_state, d_buffers = cw.nvidia_discriminator_state(resolution, rng=np.random.default_rng(2))
    d_kwargs = {"block_kwargs": {}, "mapping_kwargs": {}, "epilogue_kwargs": {"mbstd_group_size": 4},
                "channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256,
                "c_dim": 0, "img_resolution": resolution, "img_channels": 3}
    snapshot = {
        "training_set_kwargs": cw.EasyDict({"class_name": "training.dataset.ImageFolderDataset", "resolution": resolution}),
        "G": random_generator(kwargs, 0),
        "D": cw.module_tree(d_state, d_buffers, cw.discriminator_class, lambda p: {"_init_kwargs": d_kwargs} if p == "" else {}),
        "G_ema": random_generator(kwargs, 1),
        "augment_pipe": None,
    }
    cw.write_nvidia_pickle(path, snapshot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--keep", type=Path, default=None, help="Build the pickle here and keep it (and DST).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gvjax-convert-mem-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src, dst = work / f"config-f-{args.resolution}.pkl", work / f"config-f-{args.resolution}"
        if not src.exists():
            build_pickle(src, args.resolution)
        size_mb = src.stat().st_size / 2**20
        base_mb, _, _ = peak_rss_mb([sys.executable, "-c", "import numpy, jax, flax, orbax.checkpoint, gvjax.convert"])
        t0 = time.perf_counter()
        peak_mb, rc, err = peak_rss_mb([sys.executable, "-m", "gvjax", "convert", str(src), str(dst), "--force"])
        seconds = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"gvjax convert failed ({rc}): {err.strip()}")
        print(json.dumps({
            "resolution": args.resolution,
            "file_mb": round(size_mb, 1),
            "peak_rss_mb": round(peak_mb, 1),
            "peak_over_file": round(peak_mb / size_mb, 2),
            "import_only_rss_mb": round(base_mb, 1),
            "peak_minus_imports_over_file": round((peak_mb - base_mb) / size_mb, 2),
            "convert_seconds": round(seconds, 1),
            "target": "peak_rss_mb < 3 * file_mb",
            "ok": peak_mb < 3 * size_mb,
        }))


if __name__ == "__main__":
    main()
