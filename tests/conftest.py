"""Test-wide guards and fixture loaders.

Strict dtype promotion and rank-promotion errors catch silent broadcasting and dtype drift
in the numerical port (as equinox's test suite does).
"""

import json
import pathlib

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

DATA = pathlib.Path(__file__).parent / "data"
STYLEGAN2 = DATA / "stylegan2"
NVIDIA_FIXTURES = ("ada_micro_skip", "ada_micro_cond", "ada_micro_resnet")


def load_expected(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of `<name>_expected.npz`."""
    with np.load(STYLEGAN2 / f"{name}_expected.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def load_state(name: str, prefix: str) -> dict[str, np.ndarray]:
    """Entries of `<name>_state.npz` under `prefix` ('G_ema.', 'G.', 'D.', 'g_ema.'), prefix removed."""
    with np.load(STYLEGAN2 / f"{name}_state.npz") as npz:
        return {k[len(prefix):]: npz[k] for k in npz.files if k.startswith(prefix)}


@pytest.fixture(params=NVIDIA_FIXTURES)
def nvidia_fixture(request):
    return request.param


def run_cli(*args, cwd=None, timeout=600):
    """Run the real `gvjax` entry point in a subprocess; returns CompletedProcess (text)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gvjax", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.fixture(scope="session")
def nvidia_checkpoint(tmp_path_factory):
    """Factory: fixture name -> path of a gvjax checkpoint holding its G_ema (built from the state npz)."""
    from gvjax.checkpoint import save_checkpoint
    from gvjax.convert.nvidia import config_from_init_kwargs, variables_from_state_dict

    root = tmp_path_factory.mktemp("ckpt")
    made = {}

    def make(name):
        if name not in made:
            meta, _ = load_expected(name)
            config = config_from_init_kwargs(meta["G_init_kwargs"])
            variables = variables_from_state_dict(load_state(name, "G_ema."), config)
            made[name] = save_checkpoint(root / name, config, {"G_ema": variables}, provenance={"fixture": name})
        return made[name]

    return make
