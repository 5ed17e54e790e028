"""Sources -> gvjax checkpoints: `load_source` (in memory) and `convert_checkpoint` (to disk).

A source is a file people have:

* 'nvidia-pkl': an NVIDIA network pickle (stylegan2-ada-pytorch `training.networks`, or the
  stylegan3 repo's `training.networks_stylegan2`): a dict with `G_ema` and usually `G`, `D`,
  `augment_pipe`, `training_set_kwargs`;
* 'nvidia-tf-pkl': an NVIDIA TensorFlow network pickle (NVlabs/stylegan2, stylegan2-ada TF): the
  tuple `(G, D, Gs)` of `dnnlib.tflib.network.Network`s; `Gs` plays G_ema (see `convert.tensorflow`);
* 'rosinality-pt': a rosinality/stylegan2-pytorch `torch.save` file: `g_ema` and `latent_avg`
  (convert_weight.py), or a training checkpoint with `g`, `d`, `g_ema`, optimiser states and
  `args`, without `latent_avg`;
* 'nvidia-sg3-pkl': a stylegan3-repo network pickle whose `G_ema` (and `G`) are StyleGAN3-T/R
  generators (`training.networks_stylegan3.Generator`, see `convert.stylegan3`); its config is a
  `gvjax.models.stylegan3.StyleGAN3Config`, its `D` the StyleGAN2 discriminator, kept raw as above.

`SOURCE_FORMATS` is the one table of (name, detect, read) that `load_source` dispatches through.
`G_ema` (and `G`) become gvjax generator variables; `D` is kept as its raw state
(`{'params': ..., 'buffers': ...}` in NVIDIA's / rosinality's names; a TF D is renamed into
NVIDIA's) with its class and init kwargs in `extra['D']`, for the training stage. Nothing in a
source is executed: files are read with `gvjax.convert.torch_io.load_torch_file`, TF pickles with
`gvjax.convert.tensorflow.load_tf_pickle`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gvjax.checkpoint import Checkpoint, check_shapes, is_checkpoint, load_checkpoint, read_config, save_checkpoint
from gvjax.config import GeneratorConfig
from gvjax.convert import nvidia, rosinality, stylegan3, tensorflow
from gvjax.convert.safe_pickle import PersistentObject, PickledNamespace
from gvjax.convert.torch_io import load_torch_file, module_attributes, module_buffer_names, module_state_dict
from gvjax.errors import GvjaxError
from gvjax.outputs import sha256_file
from gvjax.models.stylegan3 import StyleGAN3Config

#: rosinality checkpoints without `latent_avg`: w_avg is the mean of this many mapped z (as its mean_latent)
W_AVG_SAMPLES = 4096
W_AVG_SEED = 0


class UnsupportedCheckpointError(GvjaxError):
    """A readable file that is not a StyleGAN2 generator gvjax can convert."""


@dataclasses.dataclass(frozen=True)
class SourceFormat:
    """One source format: `detect(obj)` on the loaded file, `read(obj)` -> (config, networks, provenance, extra)."""

    name: str
    detect: Callable[[Any], bool]
    read: Callable[[Any], tuple[GeneratorConfig, dict, dict, dict]]


def source_format(obj: Any) -> SourceFormat:
    """The `SOURCE_FORMATS` row that detects a loaded source object; UnsupportedCheckpointError if none does."""
    for fmt in SOURCE_FORMATS:
        if fmt.detect(obj):
            return fmt
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:6])
        found = f"a dict with keys {keys}" if keys else "an empty dict"
    else:
        found = type(obj).__name__
    raise UnsupportedCheckpointError(
        f"not a StyleGAN2 checkpoint: expected an NVIDIA network pickle (with G_ema, or TensorFlow's (G, D, Gs)) "
        f"or a rosinality checkpoint (with g_ema), found {found}"
    )


def read_source_file(path: Path) -> Any:
    """The unpickled object of a source file: TF network pickles by their own allow-list, the rest as torch files."""
    return tensorflow.load_tf_pickle(path) if tensorflow.is_tf_pickle(path) else load_torch_file(path)


def load_source(path: str | os.PathLike) -> Checkpoint:
    """Convert an NVIDIA .pkl (torch or TensorFlow) or rosinality .pt file in memory.

    Returns a Checkpoint with networks 'G_ema' (always), 'G' and 'D' (when the file has them),
    provenance {source, source_name, sha256, format, class_name, init_kwargs or static_kwargs, num_fp16_res, ...}
    and extra (the discriminator's class and kwargs, training settings found in the file).
    Every failure is a one-line GvjaxError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise UnsupportedCheckpointError(f"{path} is a directory, not an NVIDIA .pkl or rosinality .pt file")
    obj = read_source_file(path)  # its errors already name the file
    try:
        fmt = source_format(obj)
        config, networks, provenance, extra = fmt.read(obj)
        expected = _expected_shapes(config)
        for name in ("G_ema", "G"):
            if name in networks:
                check_shapes(expected, networks[name], name)
    except GvjaxError as e:
        raise type(e)(f"{path.name}: {e}") from None
    provenance = {
        "source": str(path.resolve()),
        "source_name": path.name,
        "sha256": sha256_file(path),
        "format": fmt.name,
        **provenance,
    }
    return Checkpoint(config, networks, provenance, extra)


def _expected_shapes(config: GeneratorConfig | StyleGAN3Config) -> dict:
    if isinstance(config, StyleGAN3Config):
        from gvjax.models.stylegan3 import variable_shapes
    else:
        from gvjax.model import variable_shapes

    return variable_shapes(config)


# --- NVIDIA ---------------------------------------------------------------------------------------


def _generator(obj: Any, name: str) -> tuple[GeneratorConfig, dict, dict[str, Any]]:
    """(config, variables, {class_name, init_kwargs, num_fp16_res}) of a pickled generator."""
    if not isinstance(obj, PersistentObject):
        raise UnsupportedCheckpointError(f"{name} is not an NVIDIA network module ({type(obj).__name__})")
    attrs = module_attributes(obj)
    nvidia.check_generator(obj.class_name, attrs)
    init_kwargs = attrs[""]["init_kwargs"]
    config = nvidia.config_from_init_kwargs(init_kwargs, nvidia.module_overrides(attrs))
    try:
        variables = nvidia.variables_from_state_dict(module_state_dict(obj), config)
    except GvjaxError as e:
        raise type(e)(f"{name}: {e}") from None
    info = {
        "class_name": nvidia.source_class_name(init_kwargs),
        "init_kwargs": init_kwargs,
        "num_fp16_res": config.num_fp16_res,
    }
    return config, variables, info


def _raw_network(obj: Any, name: str) -> tuple[dict, dict[str, Any]]:
    """(variables, {class_name, init_kwargs, module_overrides, format}) of a pickled D kept as its raw state.

    module_overrides: `nvidia.discriminator_overrides`, what the modules say about
    architecture / conv_clamp / num_fp16_res (the stylegan3 repo leaves them out of the kwargs).
    """
    if not isinstance(obj, PersistentObject):
        raise UnsupportedCheckpointError(f"{name} is not an NVIDIA network module ({type(obj).__name__})")
    attrs = module_attributes(obj)
    variables = nvidia.nest(module_state_dict(obj), module_buffer_names(obj))
    info = {
        "class_name": obj.class_name,
        "init_kwargs": attrs[""]["init_kwargs"],
        "module_overrides": nvidia.discriminator_overrides(attrs),
        "format": "nvidia-pkl",
    }
    return variables, info


def _from_nvidia(obj: dict, generator: Callable[[Any, str], tuple] = _generator) -> tuple[GeneratorConfig, dict, dict, dict]:
    """(config, networks, provenance, extra) of an NVIDIA network pickle's dict.

    generator(module, name) -> (config, variables, info) reads G_ema and G: `_generator` for
    StyleGAN2, `stylegan3.read_generator` for StyleGAN3.
    """
    config, g_ema, info = generator(obj["G_ema"], "G_ema")
    networks = {"G_ema": g_ema}
    if obj.get("G") is not None:
        g_config, networks["G"], _ = generator(obj["G"], "G")
        if g_config != config:
            raise UnsupportedCheckpointError("G and G_ema have different configs")
    extra: dict[str, Any] = {}
    if obj.get("D") is not None:
        networks["D"], extra["D"] = _raw_network(obj["D"], "D")
    if isinstance(obj.get("augment_pipe"), PersistentObject):
        pipe = module_attributes(obj["augment_pipe"])[""]
        extra["augment_pipe"] = {"class_name": pipe["class_name"], "init_kwargs": pipe["init_kwargs"]}
    if isinstance(obj.get("training_set_kwargs"), dict):
        extra["training_set_kwargs"] = _plain_dict(obj["training_set_kwargs"])
    provenance = {**info, "networks": sorted(networks)}
    return config, networks, provenance, extra


def _plain_dict(d: dict) -> dict:
    """The JSON-able (str-keyed, plain-valued) entries of d."""
    return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, (str, int, float, bool, type(None)))}


# --- NVIDIA TensorFlow ------------------------------------------------------------------------------


def _tf_generator(net: Any, name: str, layout: tensorflow.Layout) -> tuple[GeneratorConfig, dict]:
    """(config, variables) of a TF generator network."""
    try:
        config = tensorflow.generator_config(net, layout)
        return config, tensorflow.generator_variables(net, config)
    except GvjaxError as e:
        raise type(e)(f"{name}: {e}") from None
    except (TypeError, ValueError) as e:  # static_kwargs of the wrong types
        raise UnsupportedCheckpointError(f"{name}: malformed static_kwargs ({e})") from None


def _tf_discriminator(net: Any, layout: tensorflow.Layout) -> tuple[dict, dict[str, Any]]:
    """(raw variables, extra['D']) of a TF discriminator.

    In NVIDIA's torch names and layout, with the equivalent torch init kwargs (format 'nvidia-pkl'),
    when gvjax's discriminator can load it; otherwise its TF variables as they are, with the reason
    as `unsupported` (the training stage then reports it and starts from a fresh D).
    """
    from gvjax.convert.nvidia_d import load_discriminator

    variables = tensorflow.tf_variables(net)
    try:
        info = {"class_name": "Discriminator", "init_kwargs": tensorflow.discriminator_kwargs(net, layout),
                "format": "nvidia-pkl", "module_overrides": {}, "converted_from": tensorflow.FORMAT}
        raw = nvidia.nest(tensorflow.discriminator_state(variables))
        load_discriminator(raw, info)
        return raw, info
    except (GvjaxError, TypeError, ValueError) as e:
        raw = nvidia.nest({k.replace("/", "."): v for k, v in variables.items()})
        return raw, {"class_name": tensorflow.builder(net), "format": tensorflow.FORMAT, "unsupported": str(e)}


def _from_tensorflow(obj: Any) -> tuple[GeneratorConfig, dict, dict, dict]:
    """(config, networks, provenance, extra) of a TF network pickle's (G, D, Gs)."""
    g, d, gs = tensorflow.split_networks(obj)
    layout = tensorflow.layout_of(gs)
    config, g_ema = _tf_generator(gs, "Gs", layout)
    networks = {"G_ema": g_ema}
    if g is not None:
        g_config, networks["G"] = _tf_generator(g, "G", layout)
        if g_config != config:
            raise UnsupportedCheckpointError("G and Gs have different configs")
    extra: dict[str, Any] = {}
    nets = {"Gs": gs, **{f"Gs/{k}": c for k, c in tensorflow.components(gs).items()}}
    if d is not None:
        networks["D"], extra["D"] = _tf_discriminator(d, layout)
        nets["D"] = d
    provenance = {
        "class_name": f"{layout.repo} {tensorflow.builder(gs)}",
        "tf_layout": layout.repo,
        "state_version": gs.state.get("version"),
        "build_func_names": {k: tensorflow.builder(n) for k, n in nets.items()},
        "static_kwargs": {k: tensorflow.jsonable(n.state.get("static_kwargs")) for k, n in nets.items()},
        "num_fp16_res": config.num_fp16_res,
        "networks": sorted(networks),
    }
    return config, networks, provenance, extra


# --- rosinality -----------------------------------------------------------------------------------


def _rosinality_generator(state: Any, name: str, config: GeneratorConfig | None) -> tuple[GeneratorConfig, dict, dict]:
    """(config, variables without w_avg, inferred ctor args) of a rosinality generator state dict.

    config: that of g_ema, which `state` must match (None for g_ema itself).
    """
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise UnsupportedCheckpointError(f"{name} is not a state dict of tensors")
    inferred, ctor = rosinality.config_from_state_dict(state)
    if config is not None and inferred != config:
        raise UnsupportedCheckpointError(f"{name} and g_ema have different shapes")
    try:
        variables = nvidia.variables_from_state_dict(rosinality.nvidia_state_dict(state, None), inferred)
    except GvjaxError as e:
        raise type(e)(f"{name}: {e}") from None
    return inferred, variables, ctor


def estimate_w_avg(config: GeneratorConfig, variables: dict, n: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> np.ndarray:
    """Mean of `mapping(z)` over n standard-normal z (RandomState(seed)): `[w_dim]` float32.

    rosinality's own `mean_latent(4096)`, for checkpoints that do not store `latent_avg`.
    `variables` needs a `mapping.w_avg` buffer of the right shape (its value is not used).
    """
    import jax

    from gvjax.model import Generator

    gen = Generator(config)
    z = np.random.RandomState(seed).randn(n, config.z_dim).astype(np.float32)
    ws = jax.jit(jax.vmap(lambda z: gen.apply(variables, z, method="map")[0]))(z)
    return np.asarray(ws, np.float64).mean(axis=0).astype(np.float32)


def _set_w_avg(config: GeneratorConfig, variables: dict, w_avg: np.ndarray | None) -> np.ndarray:
    """Set `variables['buffers']['mapping']['w_avg']` in place (estimated when None); returns it."""
    mapping = variables["buffers"].setdefault("mapping", {})
    if w_avg is None:
        mapping["w_avg"] = np.zeros((config.w_dim,), np.float32)
        w_avg = estimate_w_avg(config, variables)
    mapping["w_avg"] = w_avg
    return w_avg


def _from_rosinality(obj: dict) -> tuple[GeneratorConfig, dict, dict, dict]:
    """(config, networks, provenance, extra) of a rosinality checkpoint dict."""
    latent_avg = obj.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, np.ndarray):
        raise UnsupportedCheckpointError(f"latent_avg is not a tensor ({type(latent_avg).__name__})")
    config, g_ema, ctor = _rosinality_generator(obj["g_ema"], "g_ema", None)
    w_avg = None if latent_avg is None else np.asarray(latent_avg, np.float32).reshape(-1)
    w_avg = _set_w_avg(config, g_ema, w_avg)
    networks = {"G_ema": g_ema}
    if obj.get("g") is not None:
        _, networks["G"], _ = _rosinality_generator(obj["g"], "g", config)
        _set_w_avg(config, networks["G"], w_avg)
    extra: dict[str, Any] = {}
    args = obj.get("args")
    args = _plain_dict(args.values) if isinstance(args, PickledNamespace) else None
    if isinstance(obj.get("d"), dict):
        d_state = obj["d"]
        if not all(isinstance(v, np.ndarray) for v in d_state.values()):
            raise UnsupportedCheckpointError("d is not a state dict of tensors")
        networks["D"] = nvidia.nest(d_state, {k for k in d_state if k.endswith(".kernel")})
        d_kwargs = {"size": ctor["size"], "channel_multiplier": (args or {}).get("channel_multiplier", ctor["channel_multiplier"])}
        extra["D"] = {"class_name": "model.Discriminator", "init_kwargs": d_kwargs, "format": "rosinality-pt"}
    if args is not None:
        extra["args"] = args
    if isinstance(obj.get("ada_aug_p"), (int, float)):
        extra["ada_aug_p"] = float(obj["ada_aug_p"])
    provenance = {
        "class_name": "model.Generator",
        "init_kwargs": ctor,
        "init_kwargs_inferred": True,
        "num_fp16_res": 0,
        "w_avg": "latent_avg" if latent_avg is not None else f"estimated: mean of mapping(z) over {W_AVG_SAMPLES} z (seed {W_AVG_SEED})",
        "networks": sorted(networks),
    }
    return config, networks, provenance, extra


SOURCE_FORMATS: tuple[SourceFormat, ...] = (
    SourceFormat(stylegan3.FORMAT, stylegan3.is_stylegan3_pickle, lambda obj: _from_nvidia(obj, stylegan3.read_generator)),
    SourceFormat("nvidia-pkl", lambda obj: isinstance(obj, dict) and isinstance(obj.get("G_ema"), PersistentObject), _from_nvidia),
    SourceFormat(tensorflow.FORMAT, tensorflow.is_tf_networks, _from_tensorflow),
    SourceFormat("rosinality-pt", lambda obj: isinstance(obj, dict) and isinstance(obj.get("g_ema"), dict), _from_rosinality),
)
FORMATS = tuple(fmt.name for fmt in SOURCE_FORMATS)


# --- to disk, and any model path --------------------------------------------------------------------


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, force: bool = False) -> Path:
    """Convert source file `src` into the gvjax checkpoint directory `dst`; returns its path.

    `dst` is written to a temporary sibling and renamed at the end (see `save_checkpoint`); an
    existing `dst` is refused unless `force`. Checked before the source is read, so a refusal
    is immediate.
    """
    dst = Path(dst)
    if dst.exists() and not force:
        raise GvjaxError(f"{dst} already exists (use --force to overwrite)")
    if not dst.absolute().parent.is_dir():
        raise GvjaxError(f"output directory {dst.absolute().parent} does not exist")
    ckpt = load_source(src)
    return save_checkpoint(dst, ckpt.config, ckpt.networks, provenance=ckpt.provenance, extra=ckpt.extra, force=force)


def load_any(path: str | os.PathLike, all_networks: bool = False) -> tuple[Checkpoint, str]:
    """(Checkpoint, format) of a gvjax checkpoint directory ('gvjax'), a gvjax model npz ('gvjax-npz', the
    bundled model's format) or a source file.

    Checkpoints load G_ema only unless `all_networks`; sources always hold every network.
    """
    path = Path(path)
    if not path.exists():
        raise GvjaxError(f"no such model: {path}")
    if path.is_dir():
        if not is_checkpoint(path):
            raise GvjaxError(f"{path} is not a gvjax checkpoint directory")
        networks = tuple(read_config(path).get("networks", ["G_ema"])) if all_networks else ("G_ema",)
        return load_checkpoint(path, networks), "gvjax"
    if path.suffix.lower() == ".npz":
        from gvjax.bundled import NPZ_FORMAT, npz_checkpoint

        return npz_checkpoint(path), NPZ_FORMAT
    ckpt = load_source(path)
    return ckpt, ckpt.provenance["format"]


def describe(ckpt: Checkpoint, fmt: str) -> dict[str, Any]:
    """What `gvjax inspect` shows: format, class, resolution, generator config, parameter counts.

    fmt: 'gvjax' for a checkpoint directory, else the source format. Parameter counts are of
    each network's 'params' collection (buffers such as w_avg, noise_const and FIR filters are
    not counted, as in NVIDIA's and rosinality's counts).
    """
    from gvjax.model import count_params

    cfg, prov = ckpt.config, ckpt.provenance
    return {
        "format": fmt,
        "source_format": prov.get("format"),
        "class_name": prov.get("class_name"),
        "resolution": cfg.img_resolution,
        "img_channels": cfg.img_channels,
        "num_ws": cfg.num_ws,
        "channels": _channels(cfg),
        "generator": cfg.to_dict(),
        "parameters": {name: count_params(tree.get("params", {})) for name, tree in sorted(ckpt.networks.items())},
        "provenance": prov,
    }


def _channels(cfg: GeneratorConfig | StyleGAN3Config) -> dict[str, int]:
    """Feature channels by block resolution (StyleGAN2) or by layer name (StyleGAN3)."""
    if isinstance(cfg, StyleGAN3Config):
        from gvjax.models.stylegan3 import synthesis_layout

        return {spec.name: spec.out_channels for spec in synthesis_layout(cfg)[1]}
    return {str(r): cfg.channels(r) for r in cfg.block_resolutions}
