"""NVIDIA TensorFlow network pickles (NVlabs/stylegan2, stylegan2-ada TF) through gvjax.convert.

* parity: `tf_micro_skip.pkl` (NVIDIA's TF layout; its expected outputs come from NVIDIA's own
  TF->torch conversion, legacy.py) through `gvjax convert` and in memory, every key within 1e-4,
  and the D logits;
* config variety: TF pickles of both layouts written by tests/tf_pickle_writer.py from random
  weights agree with the same weights written as NVIDIA torch pickles (tests/checkpoint_writer.py);
* security: payloads inside a TF pickle are refused, naming the global, and never run;
* refusals: one line, exit 2, nothing written; other TF pickles (StyleGAN1, ProGAN, D-only) named;
* the pipeline: inspect, generate, render and train --from take the TF pickle directly.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checkpoint_writer import (
    Reduce,
    Ref,
    discriminator_class,
    generator_attributes,
    generator_module,
    module_tree,
    nvidia_discriminator_state,
    nvidia_generator_state,
    write_nvidia_pickle,
)
from conftest import STYLEGAN2, assert_close, load_expected, run_cli
from test_convert import assert_same_arrays, converted, flat  # noqa: F401 (converted: the CLI round-trip fixture)
from test_convert import test_nvidia_round_trip_reproduces_expected as check_round_trip
from test_convert_errors import assert_refused
from test_discriminator_parity import nhwc
from test_safe_pickle import PAYLOADS, assert_payload_is_live
from tf_pickle_writer import _NDARRAY, _NUMPY, Network, network, tf_discriminator, tf_generator, write_tf_pickle

from gvjax.config import GeneratorConfig
from gvjax.convert import load_any, load_source
from gvjax.convert.nvidia import state_dict_from_variables
from gvjax.convert.nvidia_d import flatten, load_discriminator
from gvjax.convert.safe_pickle import UnsafePickleError
from gvjax.discriminator import Discriminator
from gvjax.errors import GvjaxError
from gvjax.model import Generator, variable_shapes

PKL = STYLEGAN2 / "tf_micro_skip.pkl"
META, _ = load_expected("tf_micro_skip")


# --- parity on the fixture ----------------------------------------------------------------------------


def test_convert_cli_reproduces_expected(converted):  # noqa: F811
    check_round_trip(converted, "tf_micro_skip")


@pytest.mark.parametrize("load", [load_source, lambda p: load_any(p, all_networks=True)[0]], ids=["load_source", "load_any"])
def test_in_memory_reproduces_expected(load):
    ckpt = load(PKL)
    check_round_trip(lambda filename: (None, ckpt), "tf_micro_skip")


def test_discriminator_logits():
    ckpt = load_source(PKL)
    _, e = load_expected("tf_micro_skip")
    assert ckpt.extra["D"]["format"] == "nvidia-pkl" and ckpt.extra["D"]["converted_from"] == "nvidia-tf-pkl"
    config, variables = load_discriminator(ckpt.networks["D"], ckpt.extra["D"])  # what `gvjax train` does
    assert (config.channel_base, config.channel_max, config.mbstd_group_size) == (256, 32, 4)  # D_stylegan2: min(4, N)
    run = jax.jit(lambda img: Discriminator(config).apply(variables, img))
    assert_close(run(nhwc(e["d_img_real"])), e["d_logits_real"], "d_logits_real")
    assert_close(run(nhwc(e["img_const"])), e["d_logits_gen"], "d_logits_gen")


def test_networks_and_provenance():
    ckpt = load_source(PKL)
    assert ckpt.config.to_dict() == GeneratorConfig(
        z_dim=32, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=32).to_dict()
    # G is the trained network: other trainables, the same non-trainable noise and w_avg as Gs
    g, gs = flat(ckpt.networks["G"]), flat(ckpt.variables)
    assert sorted(g) == sorted(gs)
    assert not np.array_equal(g["params.mapping.fc0.weight"], gs["params.mapping.fc0.weight"])
    np.testing.assert_array_equal(g["buffers.synthesis.b8.conv0.noise_const"], gs["buffers.synthesis.b8.conv0.noise_const"])
    prov = ckpt.provenance
    assert prov["format"] == "nvidia-tf-pkl" and prov["tf_layout"] == "NVlabs/stylegan2" and prov["state_version"] == 4
    assert prov["static_kwargs"]["Gs"] == META["static_kwargs"]["G"]
    assert prov["static_kwargs"]["Gs/mapping"] == META["static_kwargs"]["G_mapping"]
    assert prov["static_kwargs"]["D"] == META["static_kwargs"]["D"]
    assert prov["build_func_names"] == {"Gs": "G_main", "Gs/synthesis": "G_synthesis_stylegan2", "Gs/mapping": "G_mapping", "D": "D_stylegan2"}
    assert prov["networks"] == ["D", "G", "G_ema"]


def test_writer_rebuilds_the_fixture_variables():
    """tf_pickle_writer's inverse rules, applied to the converted networks, give the fixture's TF variables
    exactly (names, order, values): the writer the config-variety tests rely on writes NVIDIA's layout."""
    ckpt = load_source(PKL)
    with np.load(STYLEGAN2 / "tf_micro_skip_state.npz") as npz:
        want = {k: npz[k] for k in npz.files}
    gs = tf_generator(state_dict_from_variables(ckpt.variables, ckpt.config), META["static_kwargs"]["G"], ckpt.config.num_ws)
    d = tf_discriminator(flatten(ckpt.networks["D"]["params"]), META["static_kwargs"]["D"])
    comps = gs.state["components"]
    ours = [(f"Gs.{n}", v) for n, v in gs.state["variables"]]
    ours += [(f"Gs.{comps[key].state['name']}/{n}", v) for key in ("synthesis", "mapping") for n, v in comps[key].state["variables"]]
    ours += [(f"D.{n}", v) for n, v in d.state["variables"]]
    assert [n for n, _ in ours] == [k for k in want if k.startswith("Gs.")] + [k for k in want if k.startswith("D.")]
    for name, value in ours:
        np.testing.assert_array_equal(np.asarray(value), want[name], err_msg=name)
    assert comps["mapping"].state["static_kwargs"] == META["static_kwargs"]["G_mapping"]


# --- config variety: TF pickles of both layouts vs the torch path ----------------------------------------

LAYOUT = {  # version, protocol, synthesis and D build functions
    4: (4, "G_synthesis_stylegan2", "D_stylegan2"),
    5: (3, "G_synthesis", "D_main"),
}
CASES = {
    # name: (version, GeneratorConfig, extra TF kwargs of G, extra TF kwargs of D)
    # NVlabs/stylegan2: no mapping_fmaps -> its G_mapping's 512-wide hidden layers; conv_clamp is not a
    # kwarg of G_synthesis_stylegan2 (TF ignores it, so must we)
    "v4-resnet-depth8-lrmul": (4, GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=8, mapping_lr_multiplier=0.05,
                                                  layer_features=512, channel_base=128, channel_max=16, architecture="resnet"),
                               {"conv_clamp": 256}, {}),
    # fmap_decay 0: the same channels everywhere, channel_base/channel_max not 2 * fmap_base / fmap_max
    "v4-orig-1ch-fmaps": (4, GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, img_channels=1, mapping_layers=2,
                                             channel_base=256, channel_max=16, architecture="orig"),
                          {"fmap_base": 64, "fmap_decay": 0.0, "fmap_min": 4, "mapping_fmaps": 16, "architecture": "orig"},
                          {"fmap_base": 64, "fmap_decay": 0.0, "fmap_min": 4, "mbstd_group_size": 2}),
    "v5-resnet-clamp-fp16": (5, GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128,
                                                channel_max=16, architecture="resnet", conv_clamp=256.0, num_fp16_res=2),
                             {}, {"conv_clamp": 256, "num_fp16_res": 2, "mbstd_group_size": 4}),
    # label embedding: ada's default label_fmaps is latent_size (12 here, not w_dim); D with 2 mapping layers
    "v5-cond-depth8-lrmul": (5, GeneratorConfig(z_dim=12, w_dim=16, c_dim=3, img_resolution=16, mapping_layers=8,
                                                mapping_lr_multiplier=0.05, embed_features=12, channel_base=128, channel_max=16),
                             {}, {"mapping_layers": 2, "mapping_lrmul": 0.2}),
    "v5-orig-1ch-fmaps": (5, GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, img_channels=1, mapping_layers=2,
                                             channel_base=256, channel_max=16, architecture="orig"),
                          {"fmap_base": 64, "fmap_decay": 0, "architecture": "orig"}, {"fmap_base": 64, "fmap_decay": 0}),
}


def tf_kwargs(config: GeneratorConfig, extra: dict) -> dict:
    """static_kwargs a TF training run stores for `config` (the loop's three, then G_args)."""
    kwargs = {"num_channels": config.img_channels, "resolution": config.img_resolution, "label_size": config.c_dim,
              "fmap_base": config.channel_base // 2, "fmap_max": config.channel_max, "latent_size": config.z_dim,
              "dlatent_size": config.w_dim, "mapping_layers": config.mapping_layers, "mapping_lrmul": config.mapping_lr_multiplier,
              "architecture": config.architecture}
    if config.conv_clamp is not None:
        kwargs.update(conv_clamp=config.conv_clamp, num_fp16_res=config.num_fp16_res)
    return {**kwargs, **extra}


def torch_g_kwargs(config: GeneratorConfig) -> dict:
    return {"z_dim": config.z_dim, "w_dim": config.w_dim, "c_dim": config.c_dim, "img_resolution": config.img_resolution,
            "img_channels": config.img_channels,
            "mapping_kwargs": {"num_layers": config.mapping_layers, "lr_multiplier": config.mapping_lr_multiplier,
                               "layer_features": config.layer_features, "embed_features": config.embed_features},
            "synthesis_kwargs": {"channel_base": config.channel_base, "channel_max": config.channel_max, "num_fp16_res": config.num_fp16_res,
                                 "conv_clamp": config.conv_clamp, "architecture": config.architecture}}


def torch_d_kwargs(config: GeneratorConfig, version: int, d_extra: dict) -> dict:
    """The torch Discriminator computing what the TF D of these kwargs computes (read from the TF code)."""
    group = d_extra.get("mbstd_group_size", 4 if version == 4 else None)  # D_stylegan2 default 4; D_main: whole batch
    cmap = min(config.channel_base // 4, config.channel_max) if config.c_dim else None  # D_main: nf(0)
    return {"c_dim": config.c_dim, "img_resolution": config.img_resolution, "img_channels": config.img_channels,
            "architecture": "resnet", "channel_base": config.channel_base, "channel_max": config.channel_max,
            "num_fp16_res": d_extra.get("num_fp16_res", 0), "conv_clamp": d_extra.get("conv_clamp"), "cmap_dim": cmap,
            "block_kwargs": {}, "mapping_kwargs": {"num_layers": d_extra.get("mapping_layers", 0), "lr_multiplier": d_extra.get("mapping_lrmul", 0.1)},
            "epilogue_kwargs": {"mbstd_group_size": group, "mbstd_num_channels": 1}}


def random_generator_state(config: GeneratorConfig, rng) -> tuple[dict, set]:
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), variable_shapes(config))
    return nvidia_generator_state(variables)


def random_discriminator_state(config: GeneratorConfig, d_extra: dict, rng) -> tuple[dict, set]:
    """NVIDIA D state for `config`, conditional (label mapping, cmap-wide output) when c_dim > 0."""
    state, buffers = nvidia_discriminator_state(config.img_resolution, config.channel_base, config.channel_max, config.img_channels, rng)
    if config.c_dim:
        cmap = min(config.channel_base // 4, config.channel_max)
        shapes = {"mapping.embed.weight": (cmap, config.c_dim), "mapping.embed.bias": (cmap,),
                  "b4.out.weight": (cmap, cmap), "b4.out.bias": (cmap,)}
        for i in range(d_extra.get("mapping_layers", 0)):
            shapes.update({f"mapping.fc{i}.weight": (cmap, cmap), f"mapping.fc{i}.bias": (cmap,)})
        state.update({k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()})
    return state, buffers


def write_both(tmp_path, case: str):
    """(TF pickle, NVIDIA torch pickle) holding the same random G, D, G_ema/Gs of CASES[case]."""
    version, config, g_extra, d_extra = CASES[case]
    protocol, synthesis, d_func = LAYOUT[version]
    rng = np.random.default_rng(len(case))
    (gs_state, buffers), (g_state, _) = random_generator_state(config, rng), random_generator_state(config, rng)
    d_state, d_buffers = random_discriminator_state(config, d_extra, rng)
    kwargs = tf_kwargs(config, g_extra)
    d_kwargs = {**{k: kwargs[k] for k in ("num_channels", "resolution", "label_size", "fmap_base", "fmap_max")}, **d_extra}
    tf_nets = (tf_generator(g_state, kwargs, config.num_ws, version=version, name="G", synthesis_func=synthesis),
               tf_discriminator(d_state, d_kwargs, version=version, build_func_name=d_func),
               tf_generator(gs_state, kwargs, config.num_ws, version=version, synthesis_func=synthesis))
    tf_path, torch_path = tmp_path / f"{case}-tf.pkl", tmp_path / f"{case}-torch.pkl"
    write_tf_pickle(tf_path, tf_nets, protocol)
    g_kwargs, attrs = torch_g_kwargs(config), generator_attributes(config.img_resolution, config.architecture, config.conv_clamp, config.num_fp16_res)
    d_init = torch_d_kwargs(config, version, d_extra)
    d_module = module_tree(d_state, d_buffers, discriminator_class, lambda p: {"_init_kwargs": d_init} if p == "" else {})
    write_nvidia_pickle(torch_path, {"G": generator_module(g_kwargs, g_state, buffers, attrs), "D": d_module,
                                     "G_ema": generator_module(g_kwargs, gs_state, buffers, attrs)})
    return tf_path, torch_path


def assert_float32_equal(got: dict, want: dict):
    """Same names; values equal but for one float32 rounding of `x - 1 + 1` (TF stores affine biases minus 1)."""
    assert sorted(got) == sorted(want)
    for name, b in want.items():
        a = got[name]
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32, name
        bound = np.finfo(np.float32).eps * (1 + np.abs(b)) if name.endswith("affine.bias") else 0
        assert np.all(np.abs(a - b) <= bound), f"{name}: max |diff| {np.abs(a - b).max():.3g}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_configs_agree_with_the_torch_path(tmp_path, case):
    version, config, _, _ = CASES[case]
    tf_path, torch_path = write_both(tmp_path, case)
    ours, torch = load_source(tf_path), load_source(torch_path)
    assert ours.config == torch.config == config
    assert ours.provenance["state_version"] == version and ours.provenance["format"] == "nvidia-tf-pkl"
    for name in ("G_ema", "G"):
        assert_float32_equal(flat(ours.networks[name]), flat(torch.networks[name]))
    # D goes through the training stage's loader to the same config and weights
    d_ours, d_torch = load_discriminator(ours.networks["D"], ours.extra["D"]), load_discriminator(torch.networks["D"], torch.extra["D"])
    assert d_ours[0] == d_torch[0]
    assert_same_arrays(flat(d_ours[1]), flat(d_torch[1]))


def test_conditional_outputs_agree_with_the_torch_path(tmp_path):
    """Beyond equal tensors: the conditional v5 model maps and draws the same (label embedding, truncation)."""
    tf_path, torch_path = write_both(tmp_path, "v5-cond-depth8-lrmul")
    ours, torch = load_source(tf_path), load_source(torch_path)
    z = np.random.RandomState(0).randn(2, 12).astype(np.float32)
    c = np.eye(3, dtype=np.float32)[[2, 0]]
    run = lambda ckpt: jax.vmap(lambda z, c: Generator(ckpt.config).apply(ckpt.variables, z, c, truncation_psi=0.7))(z, c)  # noqa: E731
    a, b = np.asarray(run(ours)), np.asarray(run(torch))
    assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max())


def test_d_gvjax_cannot_load_is_kept_with_its_reason(tmp_path):
    """A TF D whose 4x4 Dense0 is wider than the 4x4 channels (small fmap_base) has no torch equivalent:
    the G still converts; D stays in its TF names and training reports why it starts from a fresh D."""
    config = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=64)
    state, _ = random_generator_state(config, np.random.default_rng(0))
    kwargs = tf_kwargs(config, {"mapping_fmaps": 16})
    d = network("D", "D_stylegan2", {"resolution": 16, "fmap_base": 64, "fmap_max": 64}, [("4x4/Dense0/weight", np.zeros((512, 64), np.float32))])
    path = tmp_path / "wide-dense.pkl"
    write_tf_pickle(path, (tf_generator(state, kwargs, config.num_ws, name="G"), d, tf_generator(state, kwargs, config.num_ws)))
    ckpt = load_source(path)
    assert ckpt.config == config and ckpt.extra["D"]["format"] == "nvidia-tf-pkl"
    assert "nf(0)=64" in ckpt.extra["D"]["unsupported"]
    np.testing.assert_array_equal(ckpt.networks["D"]["params"]["4x4"]["Dense0"]["weight"], np.zeros((512, 64), np.float32))
    with pytest.raises(GvjaxError, match=r"nvidia-tf-pkl source is not supported \(.*nf\(0\)=64"):
        load_discriminator(ckpt.networks["D"], ckpt.extra["D"])


# --- small TF pickles for refusals ---------------------------------------------------------------------

SMALL = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64, channel_max=8)
SMALL_KWARGS = tf_kwargs(SMALL, {"mapping_fmaps": 8})


def small_networks(version=4) -> tuple[Network, Network, Network]:
    state, _ = random_generator_state(SMALL, np.random.default_rng(1))
    d_state, _ = nvidia_discriminator_state(8, 64, 8)
    g = lambda name: tf_generator(state, SMALL_KWARGS, SMALL.num_ws, version=version, name=name)  # noqa: E731
    return g("G"), tf_discriminator(d_state, {k: SMALL_KWARGS[k] for k in ("resolution", "fmap_base", "fmap_max")}), g("Gs")


def stylegan1_networks() -> tuple[Network, Network, Network]:
    """A StyleGAN1 pickle's (G, D, Gs): G_style with mapping / synthesis components, lod, AdaIN style layers."""
    v = lambda *shape: np.ones(shape, np.float32)  # noqa: E731
    kwargs = {"num_channels": 3, "resolution": 8, "label_size": 0}

    def g(name):
        synthesis = network("G_synthesis", "G_synthesis", kwargs, [("lod", np.float32(0)), ("noise0", v(1, 1, 4, 4)),
                            ("4x4/Const/const", v(1, 8, 4, 4)), ("4x4/Const/StyleMod/weight", v(8, 16))], version=3)
        mapping = network("G_mapping", "G_mapping", kwargs, [("Dense0/weight", v(8, 8))], version=3)
        return network(name, "G_style", kwargs, [("lod", np.float32(0)), ("dlatent_avg", v(8))], {"synthesis": synthesis, "mapping": mapping}, version=3)

    return g("G"), network("D", "D_basic", kwargs, [("lod", np.float32(0))], version=3), g("Gs")


def test_small_networks_load(tmp_path):
    path = tmp_path / "small.pkl"
    write_tf_pickle(path, small_networks())
    ckpt = load_source(path)
    assert ckpt.config == SMALL and list(ckpt.networks) == ["G_ema", "G", "D"]
    assert ckpt.extra["D"]["format"] == "nvidia-pkl"


def _progan(tmp_path):
    nets = [network(n, f, {"resolution": 8}, [("lod", np.float32(0))], version=2) for n, f in (("G", "G_paper"), ("D", "D_paper"), ("Gs", "G_paper"))]
    for net in nets:
        net.ref = Ref("tfutil", "Network")
    path = tmp_path / "progan.pkl"
    write_tf_pickle(path, tuple(nets))
    return path


def _write(tmp_path, name, obj, protocol=4):
    path = tmp_path / name
    write_tf_pickle(path, obj, protocol)
    return path


OTHER_TF_PICKLES = {
    # case: (make(tmp_path) -> path, fragment of the refusal)
    "StyleGAN1": (lambda t: _write(t, "stylegan1.pkl", stylegan1_networks()), "a StyleGAN1 generator (NVlabs/stylegan G_style"),
    "Progressive GAN": (_progan, "a Progressive GAN generator"),
    "D only": (lambda t: _write(t, "d.pkl", small_networks()[1]), "a discriminator-only file (D_stylegan2, no generator)"),
    "config A-D": (lambda t: _write(t, "config-d.pkl", _config_d()), "StyleGAN2 config A-D generator (G_synthesis_stylegan_revised"),
    "v4 conditional": (lambda t: _write(t, "cond.pkl", _v4_conditional()), "conditional NVlabs/stylegan2 generator (G_mapping/LabelConcat"),
    "unknown activation": (lambda t: _write(t, "relu.pkl", _with_kwargs(nonlinearity="relu")), "G_synthesis_stylegan2 with nonlinearity='relu' is not supported (gvjax computes nonlinearity='lrelu')"),
    # 16x16 channels 16, 12, 12: fmap_min flattens a table NVIDIA's channel_base / channel_max cannot
    "fmap_min binds": (lambda t: _write(t, "fmin.pkl", _with_kwargs(resolution=16, fmap_max=64, fmap_min=12)),
                       "G channels from fmap_base=32, fmap_decay=1.0, fmap_min=12, fmap_max=64: channel table {4: 16, 8: 12, 16: 12} has no"),
}


def _config_d():
    g, d, gs = small_networks()
    for net in (g, gs):
        net.state["components"]["synthesis"].state["build_func_name"] = "G_synthesis_stylegan_revised"
    return g, d, gs


def _v4_conditional():
    g, d, gs = small_networks()
    for net in (g, gs):
        for part in (net, *net.state["components"].values()):
            part.state["static_kwargs"]["label_size"] = 2
        net.state["components"]["mapping"].state["variables"].insert(0, ("LabelConcat/weight", np.ones((2, 8), np.float32)))
    return g, d, gs


def _with_kwargs(**kwargs):
    g, d, gs = small_networks()
    for net in (g, gs):
        for part in (net, *net.state["components"].values()):
            part.state["static_kwargs"].update(kwargs)
    return g, d, gs


@pytest.mark.parametrize("case", sorted(OTHER_TF_PICKLES))
def test_other_tf_pickles_are_named(tmp_path, case):
    make, fragment = OTHER_TF_PICKLES[case]
    path = make(tmp_path)
    with pytest.raises(GvjaxError) as info:
        load_source(path)
    msg = str(info.value)
    assert fragment in msg and msg.startswith(path.name) and "\n" not in msg, msg


# --- security: payloads inside a TF pickle -----------------------------------------------------------------


class ArrayWithPayload:
    """Pickles as numpy's array reconstruction whose state carries `payload` where the dtype goes."""

    def __init__(self, payload):
        self.payload = payload

    def __reduce__(self):
        return _NUMPY["_reconstruct"], (_NDARRAY, (0,), b"b"), (1, (2,), self.payload, False, b"\0" * 8)


def _payload(key, marker):
    """(global, Reduce) of test_safe_pickle's payload `key` (its opcodes' global and argument, as an object)."""
    name, _ = PAYLOADS[key](marker)
    module, fn = name.rsplit(".", 1)
    arg = f"touch '{marker}'" if fn == "system" else f"open({str(marker)!r}, 'w').close()"
    return name, Reduce(Ref(module, fn), arg)


def _in_variables(nets, payload):
    variables = nets[2].state["components"]["synthesis"].state["variables"]
    variables[3] = (variables[3][0], ArrayWithPayload(payload))


def _in_static_kwargs(nets, payload):
    nets[2].state["static_kwargs"]["fmap_base"] = payload


def _in_components(nets, payload):
    nets[2].state["components"]["mapping"] = payload


@pytest.mark.parametrize("where, payload", [(_in_variables, "posix.system"), (_in_static_kwargs, "builtins.eval"), (_in_components, "builtins.exec")],
                         ids=["array-reconstruction", "static_kwargs", "components"])
def test_payload_in_tf_pickle_is_refused(tmp_path, where, payload):
    marker = tmp_path / "pwned"
    name, call = _payload(payload, marker)
    nets = list(small_networks())
    where(nets, call)
    path = _write(tmp_path, "evil.pkl", tuple(nets))
    assert_payload_is_live(path.read_bytes(), name, marker)
    with pytest.raises(UnsafePickleError) as info:
        load_source(path)
    msg = str(info.value)
    assert f"'{name}'" in msg and msg.startswith(path.name) and "\n" not in msg, msg
    assert not marker.exists(), "the payload ran"


def test_torch_globals_are_refused_in_a_tf_pickle(tmp_path):
    """The TF allow-list holds nothing of torch: a TF pickle cannot smuggle in a torch storage loader."""
    nets = list(small_networks())
    nets[2].state["static_kwargs"]["x"] = Reduce(Ref("torch.storage", "_load_from_bytes"), b"\x80\x02N.")
    with pytest.raises(UnsafePickleError, match="'torch.storage._load_from_bytes'"):
        load_source(_write(tmp_path, "torchy.pkl", tuple(nets)))


# --- errors through the CLI: one line, exit 2, nothing written ------------------------------------------------


def _truncated(tmp_path):
    path = tmp_path / "cut-tf.pkl"
    path.write_bytes(PKL.read_bytes()[: PKL.stat().st_size // 2])
    return path


def _object_array(tmp_path):
    nets = small_networks()
    nets[2].state["components"]["synthesis"].state["variables"].append(("evil", np.array([1, "x"], dtype=object)))
    return _write(tmp_path, "object.pkl", nets)


CLI_ERRORS = {
    "truncated": (_truncated, "truncated"),
    "StyleGAN1": (lambda t: _write(t, "stylegan1.pkl", stylegan1_networks()), "StyleGAN1 generator"),
    "object array": (_object_array, "refused numpy.dtype('O8')"),
    "no Gs": (lambda t: _write(t, "g-d.pkl", small_networks()[:2]), "a tuple of 2 TF networks ('G', 'D') without Gs"),
}


@pytest.mark.parametrize("case", sorted(CLI_ERRORS))
def test_cli_refuses_with_one_line(tmp_path, case):
    make, fragment = CLI_ERRORS[case]
    src = make(tmp_path)
    assert src.name in assert_refused(tmp_path, src, fragment)


# --- inspect and the rest of the pipeline ---------------------------------------------------------------------


def test_inspect_shows_format_config_and_static_kwargs(converted):  # noqa: F811
    r = run_cli("inspect", PKL, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "nvidia-tf-pkl" and info["class_name"] == "NVlabs/stylegan2 G_main"
    assert info["generator"] == load_source(PKL).config.to_dict() and info["channels"] == {"4": 32, "8": 32, "16": 16, "32": 8}
    assert info["parameters"] == {"G_ema": 47787, "G": 47787, "D": 54889}  # README of the fixture
    assert info["provenance"]["static_kwargs"]["Gs"] == META["static_kwargs"]["G"]
    r = run_cli("inspect", PKL)
    assert r.returncode == 0, r.stderr
    assert "nvidia-tf-pkl" in r.stdout.splitlines()[1]
    dst, _ = converted("tf_micro_skip.pkl")
    info = json.loads(run_cli("inspect", dst, "--json").stdout)
    assert info["source_format"] == "nvidia-tf-pkl" and info["provenance"]["static_kwargs"]["D"] == META["static_kwargs"]["D"]


def test_generate_takes_the_tf_pickle(tmp_path):
    out = tmp_path / "out"
    r = run_cli("generate", PKL, "--seeds", "0-1", "--trunc", "0.7", "--outdir", out, "--npy")
    assert r.returncode == 0, r.stderr
    ckpt = load_source(PKL)
    gen = Generator(ckpt.config)
    for seed in (0, 1):
        z = np.random.RandomState(seed).randn(1, 32).astype(np.float32)[0]
        assert_close(np.load(out / f"seed{seed:04d}.npy"), gen.apply(ckpt.variables, jnp.asarray(z), truncation_psi=0.7), f"seed {seed}")


@pytest.mark.slow
def test_render_takes_the_tf_pickle(tmp_path):
    from gvjax.demo_audio import write_wav

    t = np.arange(11025) / 22050
    song = write_wav(tmp_path / "song.wav", (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 22050)
    r = run_cli("render", song, "-o", tmp_path / "tf.mp4", "--model", PKL, "--duration", 0.5, "--fps", 4, "--quiet")
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "tf.json").read_text())
    assert record["frames"] == 2 and (tmp_path / "tf.mp4").stat().st_size > 0


@pytest.mark.slow
def test_train_starts_from_the_tf_pickle(tmp_path):
    """`gvjax train --from tf.pkl`: step 0 holds the converted G, G_ema and D (the D through nvidia_d's loader)."""
    import orbax.checkpoint as ocp

    r = run_cli("dataset", "fruit", tmp_path / "data", "--count", 4, "--res", 32, "--seed", 0)
    assert r.returncode == 0, r.stderr
    r = run_cli("train", tmp_path / "data", "--from", PKL, "--out", tmp_path / "run", "--kimg", 0.004, "--batch", 4, "--snap", 1,
                "--pl-weight", 0, "--gamma", 0,  # one step, without the regularisers (their compile is most of the time)
                "--ema-rampup", 0,  # and G_ema's whole half-life from step 0 (with the ramp-up, step 0's beta is 0)
                "--lr", 0.004, "--d-lr", 0.001)  # G keeps --lr, D takes its own
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fresh discriminator" not in r.stderr
    step0 = ocp.StandardCheckpointer().restore((tmp_path / "run" / "checkpoints" / "0" / "default").absolute())
    ckpt = load_source(PKL)
    _, d = load_discriminator(ckpt.networks["D"], ckpt.extra["D"])
    for name, want in (("G_ema", ckpt.networks["G_ema"]), ("G", ckpt.networks["G"]), ("D", d)):
        assert_same_arrays(flat(jax.tree.map(np.asarray, step0[name]["params"])), flat(want["params"]))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1]
    assert log[0]["ema_beta"] == pytest.approx(0.5 ** (4 / (4 * 10 / 32 * 1000)), rel=1e-6)  # the default half-life, batch * 10 / 32 kimg
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["ema_rampup"] is None and (resolved["g_lr"], resolved["d_lr"]) == (0.004, 0.001)
    # Adam's first step moves each stored weight by lr * g / (|g| + eps), about +-lr (times the lazy
    # regularisation's interval / (interval + 1)): the largest move of each network is its own rate
    # (among weights below 4 in size, whose float32 spacing is under 5e-7; the mapping's are ~100x larger)
    step1 = ocp.StandardCheckpointer().restore((tmp_path / "run" / "checkpoints" / "1" / "default").absolute())
    for name, lr, interval in (("G", 0.004, resolved["g_reg_interval"]), ("D", 0.001, resolved["d_reg_interval"])):
        pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(step0[name]["params"]), jax.tree.leaves(step1[name]["params"]))]
        moved = max(float(np.max(np.abs(b - a)[np.abs(a) < 4], initial=0)) for a, b in pairs)
        assert moved == pytest.approx(lr * interval / (interval + 1), rel=1e-3), name
