"""The model-family seam: one registry builds both families, checkpoints say their family
(format version 2), and a version-1 checkpoint written before families still loads."""

import json
import shutil

import jax
import numpy as np
import pytest
from conftest import DATA, STYLEGAN2, load_expected, load_state, run_cli

from gvjax import models
from gvjax.checkpoint import VERSION, load_checkpoint, read_config, save_checkpoint
from gvjax.config import GeneratorConfig
from gvjax.models.stylegan3 import StyleGAN3Config

V1 = DATA / "checkpoint_v1_micro"  # written by gvjax 0.1.0 (format 1) from ada_micro_skip's G_ema
SG3 = DATA / "stylegan3"


def test_a_version_1_checkpoint_loads_through_the_migration():
    raw = json.loads((V1 / "config.json").read_text())
    assert raw["version"] == 1 and "family" not in raw
    meta = read_config(V1)
    assert meta["version"] == VERSION and meta["family"] == "stylegan2"
    ckpt = load_checkpoint(V1)
    assert isinstance(ckpt.config, GeneratorConfig)
    state = load_state("ada_micro_skip", "G_ema.")
    assert np.array_equal(ckpt.variables["params"]["synthesis"]["b4"]["const"], state["synthesis.b4.const"])


def test_one_registry_builds_both_families():
    sg2 = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8)
    sg3 = StyleGAN3Config.from_dict(json.loads(json.dumps(load_sg3_config())))
    for config, family in ((sg2, "stylegan2"), (sg3, "stylegan3")):
        assert models.family_of(config) == family
        assert models.config_from_dict(family, config.to_dict()) == config
        gen = models.generator(config)
        shapes = models.variable_shapes(config)
        variables = models.family_module(family).init_variables(config, jax.random.key(0))
        assert jax.tree.map(lambda a: a.shape, variables) == jax.tree.map(lambda a: a.shape, shapes)
        ws = gen.apply(variables, np.zeros(config.z_dim, np.float32), method="map")
        assert ws.shape == (config.num_ws, config.w_dim)
    with pytest.raises(Exception, match="unknown model family"):
        models.family_module("stylegan1")


def load_sg3_config():
    from gvjax.convert import load_source

    return load_source(SG3 / "sg3t_micro.pkl").config.to_dict()


def test_checkpoints_record_their_family_and_stylegan3_round_trips(tmp_path):
    r = run_cli("convert", SG3 / "sg3r_micro.pkl", tmp_path / "r")
    assert r.returncode == 0, r.stderr
    meta = read_config(tmp_path / "r")
    assert meta["version"] == 2 and meta["family"] == "stylegan3"
    ckpt = load_checkpoint(tmp_path / "r")
    assert isinstance(ckpt.config, StyleGAN3Config) and not ckpt.config.to_dict().get("architecture")
    r = run_cli("inspect", tmp_path / "r")
    assert r.returncode == 0 and "conv_kernel=1" in r.stdout, r.stderr
    # generate takes it (the registry's generator), the images equal the in-memory model's
    r = run_cli("generate", tmp_path / "r", "--seeds", "0-1", "--outdir", tmp_path / "img", "--npy")
    assert r.returncode == 0, r.stderr
    from gvjax.generate import generate_images

    ours = dict(generate_images(ckpt.config, ckpt.variables, [0, 1]))
    assert np.abs(np.load(tmp_path / "img" / "seed0001.npy") - ours[1]).max() < 1e-5
    assert not (tmp_path / "v.mp4").exists() and not (tmp_path / "run").exists()


def test_a_v2_checkpoint_without_a_known_family_is_one_line(tmp_path):
    shutil.copytree(V1, tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    (tmp_path / "c" / "config.json").write_text(json.dumps({**meta, "version": 2, "family": "stylegan9"}))
    r = run_cli("inspect", tmp_path / "c")
    assert r.returncode == 2 and "unknown model family 'stylegan9'" in r.stderr


def test_stylegan2_checkpoints_are_written_as_version_2(tmp_path):
    meta, _ = load_expected("ada_micro_skip")
    from gvjax.convert.nvidia import config_from_init_kwargs, variables_from_state_dict

    config = config_from_init_kwargs(meta["G_init_kwargs"])
    save_checkpoint(tmp_path / "c", config, {"G_ema": variables_from_state_dict(load_state("ada_micro_skip", "G_ema."), config)})
    raw = json.loads((tmp_path / "c" / "config.json").read_text())
    assert raw["version"] == 2 and raw["family"] == "stylegan2"
    assert STYLEGAN2.exists()
