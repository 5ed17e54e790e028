"""Test-wide guards, fixture loaders and helpers that run a generator on the fixtures' inputs.

Strict dtype promotion and rank-promotion errors catch silent broadcasting and dtype drift
in the numerical port (as equinox's test suite does).
"""

import json
import pathlib

import jax
import numpy as np
import pytest

#: the files that take longest (whole training runs, the device check, the renders), run first: the two
#: xdist workers take one file at a time in collection order, so a long file collected last would
#: leave the other worker idle at the end
LONGEST_FIRST = ("test_train_stylegan3.py", "test_train_runs.py", "test_device_check.py", "test_render.py",
                 "test_tf_pickle.py", "test_generator_parity.py", "test_render_fill.py", "test_synthesis.py")


def pytest_collection_modifyitems(config, items):
    """Collect LONGEST_FIRST's files first; every other file, and the tests in each file, keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory):
    """Renders in tests (and the CLI subprocesses they start) cache channel clusters here, not in ~/.cache."""
    import os

    os.environ["GVJAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("gvjax-cache"))


@pytest.fixture(autouse=True, scope="session")
def _shared_compilation_cache(tmp_path_factory):
    """The tests and the CLI subprocesses they start share compiled programs through JAX's
    persistent compilation cache (a fresh folder per session and worker): the same render step
    of the same micro model is compiled once, not once per subprocess, and a program another
    test already compiled (the same HLO, jitted anew) is read back rather than compiled again
    (those taking 1 s or more to compile; tests/test_synthesis.py and test_generator_parity.py
    together: 161 s without, 141 s with, one worker). Results are the same executable's either way."""
    import os

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

DATA = pathlib.Path(__file__).parent / "data"
STYLEGAN2 = DATA / "stylegan2"
NVIDIA_FIXTURES = ("ada_micro_skip", "ada_micro_cond", "ada_micro_resnet")
ATOL = 1e-4  # max |ours - reference| on every output and intermediate (see tests/data/stylegan2/README.md)


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


# --- running a generator on batches of fixture inputs ------------------------------------------------


def nchw(img):
    """`[N, H, W, C]` -> `[N, C, H, W]` (the fixtures' layout)."""
    return np.transpose(np.asarray(img), (0, 3, 1, 2))


def mapping_fn(gen, variables, psi=1.0, cutoff=None, capture=False):
    """jit(vmap) of `gen`'s mapping: `(z [N, z_dim], c [N, c_dim])` -> `ws [N, num_ws, w_dim]`."""

    def one(z, c):
        c = c if gen.config.c_dim else None
        return gen.apply(
            variables, z, c, truncation_psi=psi, truncation_cutoff=cutoff, method="map",
            capture_intermediates=capture, mutable=["intermediates"] if capture else False,
        )

    return jax.jit(jax.vmap(one))


def synthesis_fn(gen, variables, noise_mode="const", capture=False):
    """jit(vmap) of `gen`'s synthesis: `ws [N, num_ws, w_dim]` -> images `[N, H, W, C]`."""

    def one(ws):
        return gen.apply(
            variables, ws, noise_mode=noise_mode, method="synthesize",
            capture_intermediates=capture, mutable=["intermediates"] if capture else False,
        )

    return jax.jit(jax.vmap(one))


def assert_close(ours, ref, what):
    """Same shape and max |ours - ref| <= ATOL."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    err = np.abs(ours - ref).max()
    assert err <= ATOL, f"{what}: max |diff| {err:.3g} > {ATOL}"


def captured(tree, prefix=()):
    """Flatten flax's captured intermediates: {('synthesis','b4','conv1'): output}."""
    out = {}
    for key, value in tree.items():
        if key == "__call__":
            out[prefix] = value[0]
        elif isinstance(value, dict):
            out.update(captured(value, prefix + (key,)))
    return out


def activations(gen, variables, z, c, ws, noise_mode="const"):
    """(mapping_acts, synthesis_acts): every module output of one mapping run on (z, c) and one
    synthesis run on ws, keyed by module path (('mapping', 'fc0'), ('synthesis', 'b8', 'conv0'), ...).
    Block outputs are `(x, img)` pairs."""
    _, mstate = mapping_fn(gen, variables, capture=True)(z, c)
    _, sstate = synthesis_fn(gen, variables, noise_mode, capture=True)(ws)
    mapping_acts = {("mapping",) + k[1:]: np.asarray(v) for k, v in captured(mstate["intermediates"]).items() if k}
    synthesis_acts = {("synthesis",) + k[1:]: v for k, v in captured(sstate["intermediates"]).items() if k}
    return mapping_acts, synthesis_acts


def nvidia_activation(key, mapping_acts, synthesis_acts):
    """Our captured value for an NVIDIA fixture `act.*` key, in NCHW for images."""
    parts = tuple(key.split(".")[1:])  # drop 'act'
    if parts[0] == "mapping":
        return mapping_acts[parts]
    if parts[-1] in ("x", "img"):
        x, img = synthesis_acts[parts[:-1]]
        return nchw(x if parts[-1] == "x" else img)
    value = np.asarray(synthesis_acts[parts])
    return value if value.ndim == 2 else nchw(value)
