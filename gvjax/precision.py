"""One precision policy: the compute dtype per backend, and the matmul precision it implies.

* `--dtype auto` (the default of render and generate): bfloat16 on accelerators (GPU, TPU),
  where it runs on the tensor cores, float32 on CPU, where bfloat16 is slower (see
  benchmarks/RESULTS.md). Parameters always stay float32.
* float32 computes at `Precision.HIGHEST` (exact mode, as the parity tests need; on a GPU
  it rules out TF32); bfloat16 at `Precision.DEFAULT`.

The resolved dtype is what configs and records store, so a replay computes the same way on
any backend.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from gvjax.errors import GvjaxError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
CHOICES = ("auto", *DTYPES)


def default_dtype(backend: str | None = None) -> str:
    """'float32' on CPU, 'bfloat16' on accelerators (`backend`: jax's platform name; None: jax's default)."""
    return "float32" if (backend or jax.default_backend()) == "cpu" else "bfloat16"


def resolve_dtype(name: str, backend: str | None = None) -> str:
    """A `--dtype` choice ('auto', 'float32', 'bfloat16') as a concrete dtype name."""
    if name not in CHOICES:
        raise GvjaxError(f"--dtype must be one of {', '.join(CHOICES)}, got {name!r}")
    return default_dtype(backend) if name == "auto" else name


def jax_dtype(name: str):
    """The jnp dtype of a concrete dtype name."""
    if name not in DTYPES:
        raise GvjaxError(f"compute dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def matmul_precision(dtype) -> lax.Precision:
    """HIGHEST for float32 compute (exact mode), DEFAULT otherwise."""
    return lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else lax.Precision.DEFAULT


def describe(name: str) -> dict:
    """What a record stores about the precision a run used."""
    return {"dtype": name, "params": "float32", "matmul_precision": "highest" if name == "float32" else "default",
            "backend": jax.default_backend()}
