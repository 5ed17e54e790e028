"""NVIDIA StyleGAN2 generator weights <-> gvjax variables.

gvjax's parameter tree mirrors NVIDIA's state dict: the dotted name is the tree path and
the shapes are identical. `NAME_TABLE` is the one place that says where each name goes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError
from gvjax.ops import setup_filter

# (pattern on the state-dict name, collection in gvjax's variables; None: derived from the config)
NAME_TABLE: tuple[tuple[str, str | None], ...] = (
    (r"^mapping\.w_avg$", "buffers"),
    (r"^synthesis\.b\d+\.conv[01]\.noise_const$", "buffers"),
    (r"(^|\.)resample_filter$", None),
    (r"^mapping\.(embed|fc\d+)\.(weight|bias)$", "params"),
    (r"^synthesis\.b4\.const$", "params"),
    (r"^synthesis\.b\d+\.(conv[01]|torgb)\.(weight|bias|noise_strength)$", "params"),
    (r"^synthesis\.b\d+\.(conv[01]|torgb)\.affine\.(weight|bias)$", "params"),
    (r"^synthesis\.b\d+\.skip\.weight$", "params"),
)


def collection_of(name: str) -> str | None:
    """The gvjax collection of NVIDIA state-dict entry `name` (None: derived, not stored)."""
    for pattern, collection in NAME_TABLE:
        if re.search(pattern, name):
            return collection
    raise GvjaxError(f"unexpected generator tensor {name!r}: not a StyleGAN2 (stylegan2-ada-pytorch) generator")


def config_from_init_kwargs(kwargs: dict[str, Any], module_attrs: dict[str, Any] | None = None) -> GeneratorConfig:
    """GeneratorConfig from a Generator's init kwargs.

    Accepts stylegan2-ada-pytorch's nesting (`mapping_kwargs`, `synthesis_kwargs`) and the
    stylegan3 repo's flat kwargs. `module_attrs` (optional, from the pickled module state)
    overrides `conv_clamp`, `architecture` and `num_fp16_res`, whose defaults the stylegan3
    repo does not store in the kwargs.
    """
    syn = dict(kwargs.get("synthesis_kwargs") or {})
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    flat = {k: v for k, v in kwargs.items() if k not in ("synthesis_kwargs", "mapping_kwargs")}

    def pick(key, default=None, *sources):
        for src in sources:
            if key in src and src[key] is not None:
                return src[key]
        return default

    attrs = module_attrs or {}
    cfg = dict(
        z_dim=int(kwargs["z_dim"]),
        w_dim=int(kwargs["w_dim"]),
        c_dim=int(kwargs.get("c_dim", 0)),
        img_resolution=int(kwargs["img_resolution"]),
        img_channels=int(kwargs.get("img_channels", 3)),
        mapping_layers=int(pick("num_layers", 8, mapping, flat)),
        mapping_lr_multiplier=float(pick("lr_multiplier", 0.01, mapping)),
        embed_features=pick("embed_features", None, mapping),
        layer_features=pick("layer_features", None, mapping),
        w_avg_beta=pick("w_avg_beta", 0.995, mapping),
        channel_base=int(pick("channel_base", 32768, syn, flat)),
        channel_max=int(pick("channel_max", 512, syn, flat)),
        architecture=str(attrs.get("architecture", pick("architecture", "skip", syn, flat))),
        conv_clamp=attrs.get("conv_clamp", pick("conv_clamp", None, syn, flat)),
        num_fp16_res=int(attrs.get("num_fp16_res", pick("num_fp16_res", 0, syn, flat))),
    )
    if cfg["conv_clamp"] is not None:
        cfg["conv_clamp"] = float(cfg["conv_clamp"])
    return GeneratorConfig(**cfg)


def _set(tree: dict, path: list[str], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def variables_from_state_dict(state: dict[str, np.ndarray], config: GeneratorConfig) -> dict:
    """NVIDIA generator state dict (numpy, names without the `G_ema.` prefix) -> gvjax variables.

    FIR buffers are not stored; they are checked against `config.resample_filter`.
    """
    variables: dict = {"params": {}, "buffers": {}}
    expected_filter = setup_filter(config.resample_filter)
    for name, value in state.items():
        collection = collection_of(name)
        value = np.asarray(value)
        if collection is None:
            if value.shape != expected_filter.shape or not np.allclose(value, expected_filter, atol=1e-7):
                raise GvjaxError(f"{name} is not the FIR filter {list(config.resample_filter)} the config says")
            continue
        _set(variables[collection], name.split("."), value.astype(np.float32))
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
