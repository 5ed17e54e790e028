"""The precision policy: bfloat16 by default on accelerators, float32 (exact) on CPU, recorded."""

import json

import jax.numpy as jnp
import pytest
from jax import lax

from gvjax.errors import GvjaxError
from gvjax.precision import default_dtype, describe, jax_dtype, matmul_precision, resolve_dtype


@pytest.mark.parametrize("backend,expected", [("cpu", "float32"), ("gpu", "bfloat16"), ("cuda", "bfloat16"), ("tpu", "bfloat16")])
def test_auto_is_bfloat16_on_accelerators_and_float32_on_cpu(backend, expected):
    assert default_dtype(backend) == expected
    assert resolve_dtype("auto", backend) == expected


def test_explicit_choices_win_and_bad_ones_are_one_line():
    for backend in ("cpu", "gpu", "tpu"):
        assert resolve_dtype("float32", backend) == "float32"
        assert resolve_dtype("bfloat16", backend) == "bfloat16"
    with pytest.raises(GvjaxError, match="--dtype must be one of auto, float32, bfloat16"):
        resolve_dtype("float16", "cpu")


def test_float32_is_exact_mode():
    assert matmul_precision(jnp.float32) == lax.Precision.HIGHEST
    assert matmul_precision(jnp.bfloat16) == lax.Precision.DEFAULT
    assert jax_dtype("bfloat16") == jnp.bfloat16
    assert describe("float32")["matmul_precision"] == "highest" and describe("bfloat16")["params"] == "float32"


def test_this_cpu_run_defaults_to_float32_and_records_it(tmp_path):
    import gvjax

    result = gvjax.render_song(None, tmp_path / "d.mp4", demo=True, duration=0.5, fps=4, scale=1, progress=False)
    record = json.loads(result.record.read_text())
    assert record["config"]["dtype"] == "float32"
    assert record["precision"] == {"dtype": "float32", "params": "float32", "matmul_precision": "highest", "backend": "cpu"}
    result = gvjax.render_song(None, tmp_path / "b.mp4", demo=True, duration=0.5, fps=4, scale=1, dtype="bfloat16", progress=False)
    assert json.loads(result.record.read_text())["precision"]["dtype"] == "bfloat16"
