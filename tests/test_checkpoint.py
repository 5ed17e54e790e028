"""The checkpoint format: round trip, shape checks against the config, atomic writes."""

import json
import shutil

import jax
import numpy as np
import pytest

from gvjax.checkpoint import load_checkpoint, save_checkpoint
from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError
from gvjax.model import count_params, init_variables

CONFIG = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16)


@pytest.fixture(scope="module")
def variables():
    return jax.device_get(init_variables(CONFIG, jax.random.key(0)))


def test_round_trip_is_exact(tmp_path, variables):
    path = save_checkpoint(tmp_path / "ck", CONFIG, {"G_ema": variables}, provenance={"source": "test"})
    ckpt = load_checkpoint(path)
    assert ckpt.config == CONFIG
    assert ckpt.provenance == {"source": "test"}
    flat_a, tree_a = jax.tree.flatten(variables)
    flat_b, tree_b = jax.tree.flatten(ckpt.variables)
    assert tree_a == tree_b
    for a, b in zip(flat_a, flat_b):
        np.testing.assert_array_equal(np.asarray(a), b)
    meta = json.loads((path / "config.json").read_text())
    assert meta["format"] == "gvjax" and meta["generator"]["img_resolution"] == 16
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary sibling left


def test_param_count_matches_nvidia_fixture():
    # README of the fixtures: G_ema of ada_micro_skip has 47,787 parameters.
    from conftest import load_expected

    from gvjax.convert.nvidia import config_from_init_kwargs

    meta, _ = load_expected("ada_micro_skip")
    config = config_from_init_kwargs(meta["G_init_kwargs"])
    assert config.num_ws == 8
    v = jax.eval_shape(lambda: init_variables(config, jax.random.key(0)))
    assert count_params(v["params"]) == 47787


def test_config_that_disagrees_with_params_is_refused(tmp_path, variables):
    path = save_checkpoint(tmp_path / "ck", CONFIG, {"G_ema": variables})
    meta = json.loads((path / "config.json").read_text())
    meta["generator"]["channel_max"] = 8
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(GvjaxError, match="shape"):
        load_checkpoint(path)


def test_existing_destination_needs_force(tmp_path, variables):
    path = save_checkpoint(tmp_path / "ck", CONFIG, {"G_ema": variables})
    with pytest.raises(GvjaxError, match="already exists"):
        save_checkpoint(path, CONFIG, {"G_ema": variables})
    save_checkpoint(path, CONFIG, {"G_ema": variables}, force=True)
    assert load_checkpoint(path).config == CONFIG


@pytest.mark.parametrize("damage", ["missing", "no_config", "bad_json", "foreign_json", "no_params"])
def test_damaged_checkpoints_give_clear_errors(tmp_path, variables, damage):
    path = save_checkpoint(tmp_path / "ck", CONFIG, {"G_ema": variables})
    if damage == "missing":
        path = tmp_path / "nope"
    elif damage == "no_config":
        (path / "config.json").unlink()
    elif damage == "bad_json":
        (path / "config.json").write_text("{not json")
    elif damage == "foreign_json":
        (path / "config.json").write_text('{"model": "something else"}')
    elif damage == "no_params":
        shutil.rmtree(path / "G_ema")
    with pytest.raises(GvjaxError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_failed_write_leaves_nothing(tmp_path):
    bad = {"G_ema": {"params": {"x": object()}}}
    with pytest.raises(Exception):
        save_checkpoint(tmp_path / "ck", CONFIG, bad)
    assert list(tmp_path.iterdir()) == []
