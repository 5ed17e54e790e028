"""Converting NVIDIA .pkl and rosinality .pt files (gvjax.convert) through the CLI and the library.

Round trips: each fixture file -> `gvjax convert` -> load -> every key of its `*_expected.npz`
(written by NVIDIA's / rosinality's own code) within 1e-4. Config variety: hand-built files
(tests/checkpoint_writer.py writes NVIDIA pickles and torch zip files from numpy, without torch)
for what the fixtures do not cover. No torch here.
"""

import hashlib
import json

import jax
import numpy as np
import pytest
from checkpoint_writer import (
    FIR,
    EasyDict,
    Namespace,
    discriminator_class,
    generator_attributes,
    generator_module,
    module_tree,
    nvidia_discriminator_state,
    nvidia_generator_state,
    write_nvidia_pickle,
    write_torch_zip,
)
from conftest import (
    DATA,
    NVIDIA_FIXTURES,
    STYLEGAN2,
    activations,
    assert_close,
    load_expected,
    load_state,
    mapping_fn,
    nchw,
    nvidia_activation,
    run_cli,
    synthesis_fn,
)

from gvjax.checkpoint import check_shapes, load_checkpoint
from gvjax.cli import load_model
from gvjax.config import GeneratorConfig
from gvjax.convert import convert_checkpoint, load_source, rosinality
from gvjax.convert.nvidia import variables_from_state_dict
from gvjax.errors import GvjaxError
from gvjax.images import read_png
from gvjax.model import Generator, count_params, variable_shapes

# README of the fixtures: parameter counts of G_ema and D.
PARAMS = {
    "ada_micro_skip": {"G_ema": 47787, "G": 47787, "D": 54889},
    "ada_micro_cond": {"G_ema": 48971, "G": 48971, "D": 64520},
    "ada_micro_resnet": {"G_ema": 46562, "G": 46562, "D": 54889},
    "rosi_micro": {"G_ema": 79379},
}


def flat(tree, prefix=""):
    """{dotted name: array} of a nested dict."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else key
        out.update(flat(value, name) if isinstance(value, dict) else {name: np.asarray(value)})
    return out


def assert_same_arrays(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Factory: fixture file name -> its checkpoint written by `gvjax convert` (every network loaded)."""
    root = tmp_path_factory.mktemp("converted")
    done = {}

    def convert(filename):
        if filename not in done:
            dst = root / filename.replace(".", "_")
            r = run_cli("convert", STYLEGAN2 / filename, dst)
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith(f"wrote {dst}"), r.stdout
            networks = tuple(json.loads((dst / "config.json").read_text())["networks"])
            done[filename] = (dst, load_checkpoint(dst, networks))
        return done[filename]

    return convert


# --- round trips through the CLI -------------------------------------------------------------------

NVIDIA_INPUTS = {"z", "c", "z_wrand", "d_img_real"}
# Outputs of NVIDIA's D: gvjax has no discriminator module yet (the training stage adds it); the
# converted D is checked instead tensor for tensor against the reference state in test_nvidia_networks.
NVIDIA_D_OUTPUTS = {"d_logits_real", "d_logits_gen"}


@pytest.mark.parametrize("name", NVIDIA_FIXTURES)
def test_nvidia_round_trip_reproduces_expected(converted, name):
    _, ckpt = converted(f"{name}.pkl")
    _, e = load_expected(name)
    gen, v = Generator(ckpt.config), ckpt.variables
    checked = set()

    def check(key, ours):
        assert_close(ours, e[key], f"{name}: {key}")
        checked.add(key)

    np.testing.assert_array_equal(v["buffers"]["mapping"]["w_avg"], e["w_avg"])
    checked.add("w_avg")
    mapping = mapping_fn(gen, v)
    check("ws", mapping(e["z"], e["c"]))
    check("ws_psi07", mapping_fn(gen, v, 0.7)(e["z"], e["c"]))
    check("ws_psi07_cutoff4", mapping_fn(gen, v, 0.7, 4)(e["z"], e["c"]))
    check("ws_rand", np.stack([np.asarray(mapping(zi, e["c"]))[:, 0] for zi in e["z_wrand"]], axis=1))
    synth = synthesis_fn(gen, v)
    check("img_const", nchw(synth(e["ws"])))
    check("img_none", nchw(synthesis_fn(gen, v, "none")(e["ws"])))
    check("img_wrand_const", nchw(synth(e["ws_rand"])))
    c = e["c"] if ckpt.config.c_dim else None
    full = jax.jit(jax.vmap(lambda z, c: gen.apply(v, z, c, truncation_psi=0.7), in_axes=(0, None if c is None else 0)))
    check("img_psi07_const", nchw(full(e["z"], c)))
    mapping_acts, synthesis_acts = activations(gen, v, e["z"], e["c"], e["ws"])
    for key in (k for k in e if k.startswith("act.")):
        check(key, nvidia_activation(key, mapping_acts, synthesis_acts))
    assert set(e) == checked | NVIDIA_INPUTS | NVIDIA_D_OUTPUTS


def _rosi_activation(key, mapping_acts, synthesis_acts):
    """Our value for a rosinality `act.*` key: style.i -> mapping.fc<i-1>, conv layers, modulations, and
    to_rgb outputs, which in rosinality include the upsampled skip image (our block's `img`)."""
    parts = key.split(".")[1:]
    if parts[0] == "style":
        return mapping_acts[("mapping", f"fc{int(parts[1]) - 1}")]
    layer = ".".join(parts[:2]) if parts[0] in ("convs", "to_rgbs") else parts[0]
    path = tuple(rosinality.nvidia_name(f"{layer}.conv.weight")[0].split(".")[:-1])  # ('synthesis', 'b8', 'conv0')
    if key.endswith(".conv.modulation"):
        return synthesis_acts[path + ("affine",)]
    if path[-1] == "torgb":
        return nchw(synthesis_acts[path[:-1]][1])
    return nchw(synthesis_acts[path])


def test_rosinality_round_trip_reproduces_expected(converted):
    _, ckpt = converted("rosi_micro.pt")
    _, e = load_expected("rosi_micro")
    gen, v = Generator(ckpt.config), ckpt.variables
    no_label = np.zeros((4, 0), np.float32)
    checked = set()

    def check(key, ours):
        assert_close(ours, e[key], f"rosi_micro: {key}")
        checked.add(key)

    np.testing.assert_array_equal(v["buffers"]["mapping"]["w_avg"], e["latent_avg"])
    checked.add("latent_avg")
    ws = mapping_fn(gen, v)(e["z"], no_label)
    check("w", np.asarray(ws)[:, 0])
    check("img_w", nchw(synthesis_fn(gen, v)(ws)))  # randomize_noise=False: the stored noises
    check("img_w_zero_noise", nchw(synthesis_fn(gen, v, "none")(ws)))  # noise=[zeros]: adds nothing
    check("wplus", np.stack([np.asarray(mapping_fn(gen, v)(z, no_label))[:, 0] for z in e["z_wplus"]], axis=1))
    check("img_wplus", nchw(synthesis_fn(gen, v)(e["wplus"])))
    check("img_z_psi07", nchw(jax.jit(jax.vmap(lambda z: gen.apply(v, z, truncation_psi=0.7)))(e["z"])))
    mapping_acts, synthesis_acts = activations(gen, v, e["z"], no_label, ws)
    for key in (k for k in e if k.startswith("act.")):
        check(key, _rosi_activation(key, mapping_acts, synthesis_acts))
    assert len([k for k in checked if k.startswith("act.")]) == 24
    assert set(e) == checked | {"z", "z_wplus"}


# --- what else the converted checkpoints hold ---------------------------------------------------------


@pytest.mark.parametrize("name", NVIDIA_FIXTURES)
def test_nvidia_networks_and_provenance(converted, name):
    dst, ckpt = converted(f"{name}.pkl")
    meta, _ = load_expected(name)
    # G in the same layout as G_ema, D as its raw state: both equal the reference tensors.
    for net in ("G_ema", "G"):
        ours = flat(ckpt.networks[net])
        want = {("buffers." if k.endswith(("w_avg", "noise_const")) else "params.") + k: v
                for k, v in load_state(name, f"{net}.").items() if not k.endswith("resample_filter")}
        assert_same_arrays(ours, want)
    d_ref = load_state(name, "D.")
    d = flat(ckpt.networks["D"])
    assert_same_arrays(d, {("buffers." if k.endswith("resample_filter") else "params.") + k: v for k, v in d_ref.items()})
    assert not np.array_equal(ckpt.networks["G"]["params"]["mapping"]["fc0"]["weight"], ckpt.variables["params"]["mapping"]["fc0"]["weight"])
    assert {k: count_params(t["params"]) for k, t in ckpt.networks.items()} == PARAMS[name]

    prov = ckpt.provenance
    assert prov["sha256"] == hashlib.sha256((STYLEGAN2 / f"{name}.pkl").read_bytes()).hexdigest()
    assert prov["format"] == "nvidia-pkl" and prov["source_name"] == f"{name}.pkl"
    assert prov["class_name"] == "training.networks.Generator"
    assert prov["init_kwargs"] == meta["G_init_kwargs"] and prov["num_fp16_res"] == 0
    assert ckpt.extra["D"] == {
        "class_name": "Discriminator", "init_kwargs": meta["D_init_kwargs"], "format": "nvidia-pkl",
        "module_overrides": {"architecture": "resnet", "conv_clamp": None, "num_fp16_res": 0},
    }
    assert ckpt.extra["training_set_kwargs"]["resolution"] == 32
    assert ("augment_pipe" in ckpt.extra) == (name != "ada_micro_resnet")
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith(".")] == []  # no temporary sibling left


def test_inspect_checkpoint_and_sources(converted):
    dst, _ = converted("ada_micro_cond.pkl")
    r = run_cli("inspect", dst, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["format"] == "gvjax" and info["source_format"] == "nvidia-pkl"
    assert info["resolution"] == 32 and info["num_ws"] == 8 and info["generator"]["c_dim"] == 4
    assert info["channels"] == {"4": 32, "8": 32, "16": 16, "32": 8}
    assert info["parameters"] == PARAMS["ada_micro_cond"]
    r = run_cli("inspect", STYLEGAN2 / "rosi_micro.pt")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.strip().splitlines())
    assert lines["format"].strip() == "rosinality-pt" and lines["class"].strip() == "model.Generator"
    assert lines["resolution"].strip().startswith("32x32") and lines["parameters"].strip() == "G_ema 79,379"
    assert lines["channels"].strip() == "4:32 8:32 16:32 32:32"


def test_rosinality_provenance(converted):
    _, ckpt = converted("rosi_micro.pt")
    prov = ckpt.provenance
    assert prov["format"] == "rosinality-pt" and prov["class_name"] == "model.Generator"
    assert prov["init_kwargs"]["size"] == 32 and prov["init_kwargs"]["n_mlp"] == 2
    assert prov["init_kwargs"]["channels"] == {"4": 32, "8": 32, "16": 32, "32": 32}
    assert prov["init_kwargs"]["channel_multiplier"] is None  # the fixture's table is patched
    assert prov["w_avg"] == "latent_avg" and list(ckpt.networks) == ["G_ema"]
    assert count_params(ckpt.variables["params"]) == PARAMS["rosi_micro"]["G_ema"]


def test_commands_take_source_files_directly(converted, tmp_path):
    # load_model converts in memory: the same arrays as the written checkpoint
    _, ckpt = converted("ada_micro_cond.pkl")
    assert_same_arrays(flat(load_model(str(STYLEGAN2 / "ada_micro_cond.pkl")).variables), flat(ckpt.variables))
    # and `gvjax generate SRC` reproduces NVIDIA's generate.py on the pickle itself
    out = tmp_path / "out"
    r = run_cli("generate", STYLEGAN2 / "ada_micro_cond.pkl", "--seeds", "0-3", "--trunc", "0.7", "--class", "2", "--outdir", out, "--npy")
    assert r.returncode == 0, r.stderr
    floats = np.load(DATA / "generate_ref" / "cond_class2_seeds.npz")["images"]
    for seed in range(4):
        assert np.abs(np.load(out / f"seed{seed:04d}.npy") - floats[seed]).max() <= 1e-4
        ref = read_png(DATA / "generate_ref" / "cond_class2" / f"seed{seed:04d}.png").astype(int)
        assert np.abs(read_png(out / f"seed{seed:04d}.png").astype(int) - ref).max() <= 1


# --- config variety: NVIDIA ------------------------------------------------------------------------


def fixture_generator_state(name="ada_micro_skip"):
    """(state, buffer names) of a fixture's G_ema, from its numpy state file."""
    state = load_state(name, "G_ema.")
    return state, {k for k in state if k.endswith(("resample_filter", "noise_const", "w_avg"))}


FLAT_KWARGS = {  # the stylegan3 repo's networks_stylegan2: synthesis kwargs flat, its defaults not stored
    "z_dim": 32, "c_dim": 0, "w_dim": 32, "img_resolution": 32, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2}, "channel_base": 256, "channel_max": 32, "fused_modconv_default": "inference_only",
}


def stylegan3_repo_discriminator(d_kwargs):
    """A 32x32 D as the stylegan3 repo pickles it: kwargs without conv_clamp / num_fp16_res, modules with them."""
    state, buffers = nvidia_discriminator_state(32, channel_base=256, channel_max=32)

    def attributes(path):
        if path == "":
            return {"_init_kwargs": d_kwargs}
        cls = discriminator_class(path)
        if cls == "DiscriminatorBlock":
            return {"architecture": "resnet", "use_fp16": int(path[1:]) >= 16}  # num_fp16_res=2 at 32x32
        if cls == "Conv2dLayer":
            return {"conv_clamp": None if path.endswith(".skip") else 256}  # NVIDIA's skip convs have no clamp
        return {}

    return module_tree(state, buffers, discriminator_class, attributes), state


def test_stylegan3_repo_pickle_takes_clamp_and_fp16_from_module_state(tmp_path):
    state, buffers = fixture_generator_state()
    attrs = generator_attributes(32, "skip", conv_clamp=256, num_fp16_res=2)
    d_kwargs = {"c_dim": 0, "img_resolution": 32, "img_channels": 3, "channel_base": 256, "channel_max": 32,
                "block_kwargs": {"freeze_layers": 0}, "mapping_kwargs": {}, "epilogue_kwargs": {"mbstd_group_size": 4}}
    d_module, d_state = stylegan3_repo_discriminator(d_kwargs)
    src = tmp_path / "sg3repo.pkl"
    write_nvidia_pickle(src, {"G": None, "D": d_module, "G_ema": generator_module(FLAT_KWARGS, state, buffers, attrs)})
    ckpt = load_source(src)
    assert ckpt.config.conv_clamp == 256.0 and ckpt.config.num_fp16_res == 2 and ckpt.config.architecture == "skip"
    assert ckpt.provenance["class_name"] == "training.networks_stylegan2.Generator"
    assert ckpt.provenance["init_kwargs"] == FLAT_KWARGS and ckpt.provenance["num_fp16_res"] == 2
    assert list(ckpt.networks) == ["G_ema", "D"]
    assert ckpt.extra["D"]["init_kwargs"] == d_kwargs
    assert ckpt.extra["D"]["module_overrides"] == {"architecture": "resnet", "conv_clamp": 256, "num_fp16_res": 2}
    assert_same_arrays(flat(ckpt.networks["D"]), {("buffers." if k.endswith("resample_filter") else "params.") + k: v for k, v in d_state.items()})
    # same weights as ada_micro_skip: same images (its activations stay far below the clamp)
    _, e = load_expected("ada_micro_skip")
    assert_close(nchw(synthesis_fn(Generator(ckpt.config), ckpt.variables)(e["ws"])), e["img_const"], "img_const")


def test_conv_clamp_from_init_kwargs_when_modules_do_not_record_it(tmp_path):
    state, buffers = fixture_generator_state()
    meta, _ = load_expected("ada_micro_skip")
    kwargs = json.loads(json.dumps(meta["G_init_kwargs"]))
    kwargs["synthesis_kwargs"].update(conv_clamp=256, num_fp16_res=3)
    src = tmp_path / "clamp.pkl"
    write_nvidia_pickle(src, {"G_ema": generator_module(kwargs, state, buffers)})  # modules without attributes
    ckpt = load_source(src)
    assert ckpt.config.conv_clamp == 256.0 and ckpt.config.num_fp16_res == 3
    assert ckpt.provenance["class_name"] == "training.networks.Generator"


@pytest.mark.parametrize(
    "config",
    [
        GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=8, channel_base=128, channel_max=16, architecture="orig"),
        GeneratorConfig(z_dim=16, w_dim=16, c_dim=3, img_resolution=16, mapping_layers=8, channel_base=128, channel_max=16,
                        architecture="resnet", conv_clamp=256.0, num_fp16_res=2),
    ],
    ids=["orig-depth8", "resnet-depth8-cond-clamp"],
)
def test_nvidia_configs_convert_exactly(tmp_path, config):
    rng = np.random.default_rng(7)
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), variable_shapes(config))
    state, buffers = nvidia_generator_state(variables)
    kwargs = {
        "z_dim": config.z_dim, "w_dim": config.w_dim, "mapping_kwargs": {"num_layers": config.mapping_layers},
        "synthesis_kwargs": {"channel_base": config.channel_base, "channel_max": config.channel_max,
                             "num_fp16_res": config.num_fp16_res, "conv_clamp": config.conv_clamp, "architecture": config.architecture},
        "c_dim": config.c_dim, "img_resolution": config.img_resolution, "img_channels": 3,
    }
    attrs = generator_attributes(config.img_resolution, config.architecture, config.conv_clamp, config.num_fp16_res)
    src, dst = tmp_path / "g.pkl", tmp_path / "ckpt"
    write_nvidia_pickle(src, {"G_ema": generator_module(kwargs, state, buffers, attrs)})
    convert_checkpoint(src, dst)
    ckpt = load_checkpoint(dst)
    assert ckpt.config == config
    assert_same_arrays(flat(ckpt.variables), flat(variables))


# --- config variety: rosinality ---------------------------------------------------------------------


def rosinality_shapes(size: int, style_dim: int, n_mlp: int, channels: dict[int, int]) -> dict[str, tuple]:
    """{name: shape} of rosinality's `model.Generator(size, style_dim, n_mlp)` state dict with `channels`
    (its `self.channels` table), written from its constructor; FIR kernels included."""
    s = {}
    for i in range(1, n_mlp + 1):  # style.0 is PixelNorm
        s[f"style.{i}.weight"], s[f"style.{i}.bias"] = (style_dim, style_dim), (style_dim,)
    s["input.input"] = (1, channels[4], 4, 4)

    def styled_conv(name, cin, cout, up):
        s[f"{name}.conv.weight"] = (1, cout, cin, 3, 3)
        if up:
            s[f"{name}.conv.blur.kernel"] = (4, 4)
        s[f"{name}.conv.modulation.weight"], s[f"{name}.conv.modulation.bias"] = (cin, style_dim), (cin,)
        s[f"{name}.noise.weight"], s[f"{name}.activate.bias"] = (1,), (cout,)

    def to_rgb(name, cin, up):
        s[f"{name}.bias"] = (1, 3, 1, 1)
        if up:
            s[f"{name}.upsample.kernel"] = (4, 4)
        s[f"{name}.conv.weight"] = (1, 3, cin, 1, 1)
        s[f"{name}.conv.modulation.weight"], s[f"{name}.conv.modulation.bias"] = (cin, style_dim), (cin,)

    styled_conv("conv1", channels[4], channels[4], False)
    to_rgb("to_rgb1", channels[4], False)
    log_size, cin = int(np.log2(size)), channels[4]
    for i in range(3, log_size + 1):
        cout = channels[2**i]
        styled_conv(f"convs.{2 * (i - 3)}", cin, cout, True)
        styled_conv(f"convs.{2 * (i - 3) + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{i - 3}", cout, True)
        cin = cout
    for layer in range((log_size - 2) * 2 + 1):
        r = 2 ** ((layer + 5) // 2)
        s[f"noises.noise_{layer}"] = (1, 1, r, r)
    return s


def stock_channels(size: int, multiplier: int) -> dict[int, int]:
    """rosinality's stock `self.channels` for `channel_multiplier`, up to `size`."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier, 128: 128 * multiplier,
             256: 64 * multiplier, 512: 32 * multiplier, 1024: 16 * multiplier}
    return {r: c for r, c in table.items() if r <= size}


ROSI_FIR = FIR * 4  # make_kernel([1, 3, 3, 1]) * upsample_factor**2


@pytest.mark.parametrize("multiplier", [1, 2])
def test_rosinality_channel_multiplier_from_shapes(multiplier):
    # A stock 256x256 generator, shapes only (zero-stride arrays: no memory): the inferred config
    # reproduces the stock table, and every tensor lands on a parameter of the right shape.
    shapes = rosinality_shapes(256, 512, 8, stock_channels(256, multiplier))
    state = {k: ROSI_FIR if k.endswith("kernel") else np.broadcast_to(np.float32(0), shape) for k, shape in shapes.items()}
    config, ctor = rosinality.config_from_state_dict(state)
    assert {r: config.channels(r) for r in config.block_resolutions} == stock_channels(256, multiplier)
    assert (config.img_resolution, config.z_dim, config.mapping_layers, config.num_ws) == (256, 512, 8, 14)
    assert ctor["channel_multiplier"] == multiplier
    variables = variables_from_state_dict(rosinality.nvidia_state_dict(state, np.zeros(512, np.float32)), config)
    check_shapes(variable_shapes(config), variables, "rosinality")
    rosinality_params = sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith("kernel") and not k.startswith("noises."))
    assert count_params(variables["params"]) == rosinality_params


def rosinality_mapping(state, z, n_mlp, lr_mul=0.01):
    """rosinality's `Generator.get_latent` in float64 numpy: PixelNorm, then n_mlp EqualLinear + fused lrelu."""
    x = z / np.sqrt(np.mean(z**2, axis=1, keepdims=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        weight, bias = state[f"style.{i}.weight"].astype(np.float64), state[f"style.{i}.bias"].astype(np.float64)
        x = x @ (weight * lr_mul / np.sqrt(weight.shape[1])).T + bias * lr_mul
        x = np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)
    return x


def random_rosinality_state(rng, shapes):
    return {k: ROSI_FIR if k.endswith("kernel") else (rng.standard_normal(s) * (100 if k.startswith("style.") else 1)).astype(np.float32)
            for k, s in shapes.items()}


def rosinality_discriminator_state(rng, size, channels):
    """A rosinality `model.Discriminator` state dict (ConvLayer / ResBlock / final layers) with random values."""
    s, c = {}, channels
    s["convs.0.0.weight"], s["convs.0.1.bias"] = (c[size], 3, 1, 1), (c[size],)
    res, k = size, 1
    while res > 4:
        cin, cout = c[res], c[res // 2]
        s.update({f"convs.{k}.conv1.0.weight": (cin, cin, 3, 3), f"convs.{k}.conv1.1.bias": (cin,),
                  f"convs.{k}.conv2.0.kernel": (4, 4), f"convs.{k}.conv2.1.weight": (cout, cin, 3, 3),
                  f"convs.{k}.conv2.2.bias": (cout,), f"convs.{k}.skip.0.kernel": (4, 4), f"convs.{k}.skip.1.weight": (cout, cin, 1, 1)})
        res, k = res // 2, k + 1
    s.update({"final_conv.0.weight": (c[4], c[4] + 1, 3, 3), "final_conv.1.bias": (c[4],),
              "final_linear.0.weight": (c[4], c[4] * 16), "final_linear.0.bias": (c[4],),
              "final_linear.1.weight": (1, c[4]), "final_linear.1.bias": (1,)})
    return random_rosinality_state(rng, s)


def test_rosinality_training_checkpoint(tmp_path):
    # What rosinality's train.py saves: g, d, g_ema, optimiser states, args (an argparse.Namespace),
    # ada_aug_p, and no latent_avg. Here: size 16, n_mlp 8, a non-stock channel table.
    rng = np.random.default_rng(5)
    channels = {4: 16, 8: 16, 16: 8}
    shapes = rosinality_shapes(16, 16, 8, channels)
    g_ema, g = random_rosinality_state(rng, shapes), random_rosinality_state(rng, shapes)
    d = rosinality_discriminator_state(rng, 16, channels)
    optim = {"state": {0: {"step": np.array(3.0, np.float32), "exp_avg": np.ones(4, np.float32)}},
             "param_groups": [{"lr": 0.002, "betas": (0, 0.99), "params": [0]}]}
    args = Namespace(size=16, latent=16, n_mlp=8, channel_multiplier=2, iter=800000, path="lmdb/")
    src, dst = tmp_path / "000100.pt", tmp_path / "ckpt"
    write_torch_zip(src, {"g": g, "d": d, "g_ema": g_ema, "g_optim": optim, "d_optim": optim, "args": args, "ada_aug_p": 0.25})
    r = run_cli("convert", src, dst)
    assert r.returncode == 0, r.stderr
    ckpt = load_checkpoint(dst, ("G_ema", "G", "D"))
    cfg = ckpt.config
    assert {res: cfg.channels(res) for res in cfg.block_resolutions} == channels
    assert (cfg.img_resolution, cfg.w_dim, cfg.mapping_layers) == (16, 16, 8)

    p, b = ckpt.variables["params"], ckpt.variables["buffers"]
    spot = [  # one tensor per renaming rule of rosinality.ROSINALITY_TABLE
        (p["mapping"]["fc7"]["weight"], g_ema["style.8.weight"]),
        (p["synthesis"]["b4"]["const"], g_ema["input.input"][0]),
        (p["synthesis"]["b4"]["conv1"]["weight"], g_ema["conv1.conv.weight"][0]),
        (p["synthesis"]["b16"]["conv0"]["affine"]["bias"], g_ema["convs.2.conv.modulation.bias"]),
        (p["synthesis"]["b8"]["conv1"]["noise_strength"], g_ema["convs.1.noise.weight"][0]),
        (p["synthesis"]["b8"]["conv1"]["bias"], g_ema["convs.1.activate.bias"]),
        (p["synthesis"]["b16"]["torgb"]["bias"], g_ema["to_rgbs.1.bias"].reshape(3)),
        (p["synthesis"]["b8"]["torgb"]["weight"], g_ema["to_rgbs.0.conv.weight"][0]),
        (b["synthesis"]["b4"]["conv1"]["noise_const"], g_ema["noises.noise_0"][0, 0]),
        (b["synthesis"]["b16"]["conv1"]["noise_const"], g_ema["noises.noise_4"][0, 0]),
    ]
    for ours, theirs in spot:
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ckpt.networks["G"]["params"]["mapping"]["fc7"]["weight"], g["style.8.weight"])
    # no latent_avg: w_avg is rosinality's mean_latent, the mean of get_latent over 4096 z
    z = np.random.RandomState(0).randn(4096, 16).astype(np.float32).astype(np.float64)
    assert_close(b["mapping"]["w_avg"], rosinality_mapping(g_ema, z, 8).mean(axis=0), "w_avg")
    np.testing.assert_array_equal(ckpt.networks["G"]["buffers"]["mapping"]["w_avg"], b["mapping"]["w_avg"])
    assert "estimated" in ckpt.provenance["w_avg"]
    # d is kept as its raw state; args and ada_aug_p are recorded
    assert_same_arrays(flat(ckpt.networks["D"]), {("buffers." if k.endswith("kernel") else "params.") + k: v for k, v in d.items()})
    assert ckpt.extra["D"]["class_name"] == "model.Discriminator"
    assert ckpt.extra["D"]["init_kwargs"] == {"size": 16, "channel_multiplier": 2}
    assert ckpt.extra["args"] == {"size": 16, "latent": 16, "n_mlp": 8, "channel_multiplier": 2, "iter": 800000, "path": "lmdb/"}
    assert ckpt.extra["ada_aug_p"] == 0.25


def test_rosinality_channel_table_without_nvidia_equivalent_is_refused():
    shapes = rosinality_shapes(16, 8, 2, {4: 8, 8: 16, 16: 8})  # grows, then shrinks
    state = {k: ROSI_FIR if k.endswith("kernel") else np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}
    with pytest.raises(GvjaxError, match="no NVIDIA channel_base/channel_max equivalent"):
        rosinality.config_from_state_dict(state)


def test_easydict_kwargs_and_missing_networks(tmp_path):
    # G and D may be absent or None (G_ema-only pickles); init kwargs are EasyDicts in real pickles.
    state, buffers = fixture_generator_state("ada_micro_resnet")
    meta, _ = load_expected("ada_micro_resnet")
    src = tmp_path / "gema_only.pkl"
    write_nvidia_pickle(src, {"G_ema": generator_module(meta["G_init_kwargs"], state, buffers), "training_set_kwargs": EasyDict({"resolution": 32})})
    ckpt = load_source(src)
    assert list(ckpt.networks) == ["G_ema"] and ckpt.config.architecture == "resnet"
    assert ckpt.extra == {"training_set_kwargs": {"resolution": 32}}
