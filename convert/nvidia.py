"""NVIDIA StyleGAN2 generator weights <-> gvjax variables, and what a network pickle says about them.

gvjax's parameter tree mirrors NVIDIA's state dict: the dotted name is the tree path and
the shapes are identical. `NAME_TABLE` is the one place that says where each name goes; the
rosinality converter (`convert/rosinality.py`) renames into these names and reuses it.

A network pickle names only the bare class ('Generator') and drops nothing else we need: the
init kwargs (nested in stylegan2-ada-pytorch, flat in the stylegan3 repo's
`training.networks_stylegan2`) and each module's attributes (`module_overrides`), which are the
robust source of `conv_clamp`, `architecture` and `num_fp16_res`. StyleGAN3 (R/T) generators are
also called 'Generator'; `stylegan3_config` recognises them by their kwargs and modules.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError
from gvjax.ops import setup_filter

#: What a state-dict entry is, in the name tables of every converter (the first row that matches wins).
PARAMS, BUFFERS = "params", "buffers"  # stored in that collection of gvjax's variables
RESAMPLE_FILTER = "resample filter"  # StyleGAN2's FIR filter: derived from config.resample_filter, checked, not stored
DESIGNED = "designed lowpass filter"  # StyleGAN3's up/down filters: designed from the config, checked, not stored

# (pattern on the state-dict name, what it is)
NAME_TABLE: tuple[tuple[str, str], ...] = (
    (r"^mapping\.w_avg$", BUFFERS),
    (r"^synthesis\.b\d+\.conv[01]\.noise_const$", BUFFERS),
    (r"(^|\.)resample_filter$", RESAMPLE_FILTER),
    (r"^mapping\.(embed|fc\d+)\.(weight|bias)$", PARAMS),
    (r"^synthesis\.b4\.const$", PARAMS),
    (r"^synthesis\.b\d+\.(conv[01]|torgb)\.(weight|bias|noise_strength)$", PARAMS),
    (r"^synthesis\.b\d+\.(conv[01]|torgb)\.affine\.(weight|bias)$", PARAMS),
    (r"^synthesis\.b\d+\.skip\.weight$", PARAMS),
)


def table_lookup(name: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """What the first `(pattern, what)` row of `table` matching `name` says it is; None if no row does."""
    for pattern, what in table:
        if re.search(pattern, name):
            return what
    return None


def table_collection(name: str, table: tuple[tuple[str, str], ...], network: str) -> str:
    """`table_lookup` for a StyleGAN2 `network`: a name no row matches is a one-line GvjaxError."""
    what = table_lookup(name, table)
    if what is None:
        raise GvjaxError(f"unexpected {network} tensor {name!r}: not a StyleGAN2 (stylegan2-ada-pytorch) {network}")
    return what


def collection_of(name: str) -> str:
    """PARAMS, BUFFERS or RESAMPLE_FILTER for NVIDIA generator state-dict entry `name`, by `NAME_TABLE`."""
    return table_collection(name, NAME_TABLE, "generator")


def config_from_init_kwargs(kwargs: dict[str, Any], module_attrs: dict[str, Any] | None = None) -> GeneratorConfig:
    """GeneratorConfig from a Generator's init kwargs.

    Accepts stylegan2-ada-pytorch's nesting (`mapping_kwargs`, `synthesis_kwargs`) and the
    stylegan3 repo's flat kwargs. `module_attrs` (optional, from the pickled module state, see
    `module_overrides`) overrides `conv_clamp`, `architecture` and `num_fp16_res`, whose
    defaults the stylegan3 repo does not store in the kwargs.
    """
    try:
        cfg = _config_fields(kwargs, module_attrs or {})
    except KeyError as e:
        raise GvjaxError(f"generator init kwargs lack {e.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise GvjaxError(f"generator init kwargs are malformed: {e}") from None
    return GeneratorConfig(**cfg)


def _pick(key: str, default, *sources: dict):
    """The first non-None `key` of `sources`, else `default`."""
    for src in sources:
        if key in src and src[key] is not None:
            return src[key]
    return default


def image_fields(kwargs: dict[str, Any]) -> dict[str, int]:
    """The latent, label and image sizes of NVIDIA generator init kwargs (both families'; KeyError if missing)."""
    return dict(
        z_dim=int(kwargs["z_dim"]),
        w_dim=int(kwargs["w_dim"]),
        c_dim=int(kwargs.get("c_dim", 0)),
        img_resolution=int(kwargs["img_resolution"]),
        img_channels=int(kwargs.get("img_channels", 3)),
    )


def _config_fields(kwargs: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """The GeneratorConfig fields of config_from_init_kwargs (KeyError / TypeError on bad kwargs)."""
    syn = dict(kwargs.get("synthesis_kwargs") or {})
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    flat = {k: v for k, v in kwargs.items() if k not in ("synthesis_kwargs", "mapping_kwargs")}
    cfg = dict(
        **image_fields(kwargs),
        mapping_layers=int(_pick("num_layers", 8, mapping, flat)),
        mapping_lr_multiplier=float(_pick("lr_multiplier", 0.01, mapping)),
        embed_features=_pick("embed_features", None, mapping),
        layer_features=_pick("layer_features", None, mapping),
        w_avg_beta=_pick("w_avg_beta", 0.995, mapping),
        channel_base=int(_pick("channel_base", 32768, syn, flat)),
        channel_max=int(_pick("channel_max", 512, syn, flat)),
        architecture=str(attrs.get("architecture", _pick("architecture", "skip", syn, flat))),
        conv_clamp=attrs.get("conv_clamp", _pick("conv_clamp", None, syn, flat)),
        resample_filter=tuple(_pick("resample_filter", (1, 3, 3, 1), syn, flat)),
        num_fp16_res=int(attrs.get("num_fp16_res", _pick("num_fp16_res", 0, syn, flat))),
    )
    if cfg["conv_clamp"] is not None:
        cfg["conv_clamp"] = float(cfg["conv_clamp"])
    return cfg


GENERATOR_CLASS = "Generator"
#: init kwargs only StyleGAN3 generators (stylegan3 repo, training.networks_stylegan3) take
STYLEGAN3_KWARGS = ("magnitude_ema_beta", "conv_kernel", "use_radial_filters", "num_critical", "first_cutoff", "margin_size")
#: submodule classes only StyleGAN3 synthesis networks have
STYLEGAN3_CLASSES = ("SynthesisInput",)


def stylegan3_config(attrs: dict[str, dict]) -> str | None:
    """'R' or 'T' if `attrs` (`module_attributes` of a pickled generator) is a StyleGAN3 network, else None.

    StyleGAN3-R is the config with radially symmetric filters (`use_radial_filters`, 1x1 convs).
    """
    kwargs = {}
    for entry in attrs.values():
        kwargs.update(entry.get("init_kwargs") or {})
    classes = {entry.get("class_name") for entry in attrs.values()}
    if not (classes & set(STYLEGAN3_CLASSES) or any(k in kwargs for k in STYLEGAN3_KWARGS)):
        return None
    radial = any(entry.get("use_radial_filters") for entry in attrs.values())
    return "R" if radial or kwargs.get("use_radial_filters") or kwargs.get("conv_kernel") == 1 else "T"


def source_class_name(init_kwargs: dict[str, Any]) -> str:
    """Qualified class of a pickled StyleGAN2 'Generator', told apart by its kwargs layout.

    stylegan2-ada-pytorch's `training.networks.Generator` takes `synthesis_kwargs` as one dict;
    the stylegan3 repo's `training.networks_stylegan2.Generator` takes them flat.
    """
    return "training.networks.Generator" if "synthesis_kwargs" in init_kwargs else "training.networks_stylegan2.Generator"


def _one_value(values: list, what: str):
    """The single value all modules agree on; GvjaxError if they disagree."""
    distinct = []
    for v in values:
        if v not in distinct:
            distinct.append(v)
    if len(distinct) > 1:
        raise GvjaxError(f"the pickled modules disagree on {what}: {distinct}")
    return distinct[0]


def module_overrides(attrs: dict[str, dict]) -> dict[str, Any]:
    """`architecture`, `conv_clamp`, `num_fp16_res` of a pickled generator, from its modules' attributes.

    attrs: `module_attributes(G)` ({submodule path: plain attributes}). Blocks carry
    `architecture` and `use_fp16` (num_fp16_res counts the blocks with use_fp16, i.e. the
    effective value); SynthesisLayer / ToRGBLayer carry `conv_clamp`. Keys are omitted where no
    module records them.
    """
    blocks = [a for a in attrs.values() if a.get("class_name") == "SynthesisBlock"]
    layers = [a for a in attrs.values() if a.get("class_name") in ("SynthesisLayer", "ToRGBLayer")]
    return _block_overrides(blocks, layers)


def _block_overrides(blocks: list[dict], layers: list[dict]) -> dict[str, Any]:
    """`architecture` and `num_fp16_res` from block attributes, `conv_clamp` from layer attributes."""
    out: dict[str, Any] = {}
    archs = [a["architecture"] for a in blocks if "architecture" in a]
    if archs:
        out["architecture"] = _one_value(archs, "the architecture")
    clamps = [a["conv_clamp"] for a in layers if "conv_clamp" in a]
    if clamps:
        out["conv_clamp"] = _one_value(clamps, "conv_clamp")
    fp16 = [a["use_fp16"] for a in blocks if "use_fp16" in a]
    if fp16:
        out["num_fp16_res"] = sum(bool(v) for v in fp16)
    return out


def discriminator_overrides(attrs: dict[str, dict]) -> dict[str, Any]:
    """`architecture`, `conv_clamp`, `num_fp16_res` of a pickled Discriminator, from its modules' attributes.

    The counterpart of `module_overrides` (the stylegan3 repo does not store these D kwargs
    either): DiscriminatorBlock carries `architecture` and `use_fp16`; the Conv2dLayers carry
    `conv_clamp`, except the resnet `skip` convs, which NVIDIA builds without one.
    """
    blocks = [a for a in attrs.values() if a.get("class_name") == "DiscriminatorBlock"]
    convs = [a for p, a in attrs.items() if a.get("class_name") == "Conv2dLayer" and not p.endswith(".skip")]
    return _block_overrides(blocks, convs)


def check_generator(class_name: str, attrs: dict[str, dict]) -> None:
    """Refuse, with one line, a pickled network that is not a StyleGAN2 generator we can convert."""
    kind = stylegan3_config(attrs)
    if kind is not None:
        raise GvjaxError(
            f"StyleGAN3-{kind} network (stylegan3 repo, training.networks_stylegan3.Generator) is not "
            "supported: gvjax converts StyleGAN2 generators only"
        )
    if class_name != GENERATOR_CLASS:
        raise GvjaxError(
            f"unknown generator class {class_name!r}: expected a StyleGAN2 'Generator' "
            "(stylegan2-ada-pytorch training.networks or the stylegan3 repo's training.networks_stylegan2)"
        )


def nest(state: dict[str, np.ndarray], buffers: set[str] | frozenset = frozenset()) -> dict:
    """`{'params': ..., 'buffers': ...}` trees from a flat state dict, splitting names at '.'.

    Keeps the arrays as they are (no copy, any dtype); for networks gvjax stores without
    interpreting them (the discriminator, until it has a Flax module).
    """
    tree: dict = {"params": {}, "buffers": {}}
    for name, value in state.items():
        _set(tree["buffers" if name in buffers else "params"], name.split("."), value)
    return tree


def _set(tree: dict, path: list[str], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def variables_from_state_dict(state: dict[str, np.ndarray], config: GeneratorConfig) -> dict:
    """NVIDIA generator state dict (numpy, names without the `G_ema.` prefix) -> gvjax variables.

    FIR buffers are not stored; they are checked against `config.resample_filter`. float32
    arrays are used as they are (not copied), others are converted.
    """
    variables: dict = {"params": {}, "buffers": {}}
    expected_filter = setup_filter(config.resample_filter)
    for name, value in state.items():
        collection = collection_of(name)
        value = np.asarray(value)
        if collection == RESAMPLE_FILTER:
            if value.shape != expected_filter.shape or not np.allclose(value, expected_filter, atol=1e-7):
                raise GvjaxError(f"{name} is not the FIR filter {list(config.resample_filter)} the config says")
            continue
        _set(variables[collection], name.split("."), np.asarray(value, dtype=np.float32))
    return variables


def state_dict_from_variables(variables: dict, config: GeneratorConfig) -> dict[str, np.ndarray]:
    """gvjax variables -> NVIDIA state-dict entries (without FIR buffers), the inverse of the above."""
    out = {}
    for collection in ("params", "buffers"):
        stack = [((), variables.get(collection, {}))]
        while stack:
            path, node = stack.pop()
            if isinstance(node, dict):
                stack.extend((path + (k,), v) for k, v in node.items())
            else:
                out[".".join(path)] = np.asarray(node)
    return out
