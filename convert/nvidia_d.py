"""NVIDIA StyleGAN2 discriminator weights -> gvjax discriminator variables.

gvjax's discriminator parameter tree mirrors NVIDIA's `D.state_dict()` (the dotted name is
the tree path, shapes identical), so `D_NAME_TABLE` only says which names are parameters and
which are derived FIR buffers. `load_discriminator` turns what the convert stage stores for a
pickle's `D` (the raw state plus `extra['D']` with the init kwargs) into a config and
variables for `gvjax.discriminator.Discriminator`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gvjax.discriminator import DiscriminatorConfig, d_variable_shapes
from gvjax.convert.nvidia import PARAMS, RESAMPLE_FILTER, table_collection
from gvjax.errors import GvjaxError
from gvjax.ops import setup_filter

# (pattern on the D state-dict name, what it is)
D_NAME_TABLE: tuple[tuple[str, str], ...] = (
    (r"(^|\.)resample_filter$", RESAMPLE_FILTER),
    (r"^b\d+\.(fromrgb|conv0|conv1)\.(weight|bias)$", PARAMS),
    (r"^b\d+\.skip\.weight$", PARAMS),
    (r"^b4\.(conv|fc|out)\.(weight|bias)$", PARAMS),
    (r"^mapping\.(embed|fc\d+)\.(weight|bias)$", PARAMS),
)

D_CLASSES = ("Discriminator",)


def d_collection_of(name: str) -> str:
    """PARAMS or RESAMPLE_FILTER for NVIDIA D state-dict entry `name`, by `D_NAME_TABLE`."""
    return table_collection(name, D_NAME_TABLE, "discriminator")


def d_config_from_init_kwargs(kwargs: dict[str, Any], module_overrides: dict[str, Any] | None = None) -> DiscriminatorConfig:
    """DiscriminatorConfig from NVIDIA's Discriminator init kwargs (`block_kwargs`, `mapping_kwargs`, `epilogue_kwargs`).

    `module_overrides` (`architecture`, `conv_clamp`, `num_fp16_res` read from the pickled
    modules by the converter) win over the kwargs, which the stylegan3 repo leaves incomplete.
    """
    kwargs = {**kwargs, **(module_overrides or {})}
    block = dict(kwargs.get("block_kwargs") or {})
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    epilogue = dict(kwargs.get("epilogue_kwargs") or {})
    for what, src in (("block", block), ("epilogue", epilogue), ("", kwargs)):
        if src.get("activation", "lrelu") != "lrelu":
            raise GvjaxError(f"discriminator {what} activation {src['activation']!r} is not supported (lrelu only)")
    for key in ("embed_features", "layer_features"):
        if mapping.get(key) is not None and mapping[key] != kwargs.get("cmap_dim", mapping[key]):
            raise GvjaxError(f"discriminator mapping {key}={mapping[key]} differs from cmap_dim; not supported")
    try:
        fields = dict(
            c_dim=int(kwargs.get("c_dim", 0)),
            img_resolution=int(kwargs["img_resolution"]),
            img_channels=int(kwargs.get("img_channels", 3)),
            architecture=str(kwargs.get("architecture", block.get("architecture", "resnet"))),
            channel_base=int(kwargs.get("channel_base", 32768)),
            channel_max=int(kwargs.get("channel_max", 512)),
            conv_clamp=None if kwargs.get("conv_clamp") is None else float(kwargs["conv_clamp"]),
            cmap_dim=None if kwargs.get("cmap_dim") is None else int(kwargs["cmap_dim"]),
            mbstd_group_size=epilogue.get("mbstd_group_size", 4),
            mbstd_num_channels=int(epilogue.get("mbstd_num_channels", 1)),
            mapping_layers=int(mapping.get("num_layers", 8)),
            mapping_lr_multiplier=float(mapping.get("lr_multiplier", 0.01)),
            resample_filter=tuple(block.get("resample_filter", (1, 3, 3, 1))),
            num_fp16_res=int(kwargs.get("num_fp16_res", 0)),
        )
    except KeyError as e:
        raise GvjaxError(f"discriminator init kwargs lack {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise GvjaxError(f"discriminator init kwargs are malformed: {e}") from None
    return DiscriminatorConfig(**fields)


def d_variables_from_state_dict(state: dict[str, np.ndarray], config: DiscriminatorConfig) -> dict:
    """NVIDIA D state dict (flat names without the `D.` prefix) -> `{'params': ...}`, shape-checked.

    FIR buffers are checked against `config.resample_filter` and dropped.
    """
    from gvjax.checkpoint import check_shapes

    params: dict = {}
    expected_filter = setup_filter(config.resample_filter)
    for name, value in state.items():
        value = np.asarray(value)
        if d_collection_of(name) == RESAMPLE_FILTER:
            if value.shape != expected_filter.shape or not np.allclose(value, expected_filter, atol=1e-7):
                raise GvjaxError(f"D.{name} is not the FIR filter {list(config.resample_filter)} the config says")
            continue
        node = params
        *path, leaf = name.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = np.asarray(value, dtype=np.float32)
    variables = {"params": params}
    check_shapes(d_variable_shapes(config), variables, "D")
    return variables


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict -> `{'a.b.c': leaf}`."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def load_discriminator(raw: dict, info: dict[str, Any]) -> tuple[DiscriminatorConfig, dict]:
    """(config, variables) from a converted checkpoint's raw `D` network and its `extra['D']`.

    raw: `{'params': ..., 'buffers': ...}` nested by NVIDIA's names (what `gvjax convert`
    stores). info: `{'class_name', 'init_kwargs', 'format'}`. Only NVIDIA pickles' StyleGAN2
    discriminators are understood (TF pickles' Ds are converted into their layout); anything else
    is a one-line GvjaxError, with `info['unsupported']` as the reason where the converter gave one.
    """
    fmt, class_name = info.get("format"), info.get("class_name")
    if fmt != "nvidia-pkl":
        why = info.get("unsupported") or "NVIDIA pickles only"
        raise GvjaxError(f"discriminator from a {fmt or 'unknown'} source is not supported ({why})")
    if class_name not in D_CLASSES:
        raise GvjaxError(f"unknown discriminator class {class_name!r}: expected a StyleGAN2 'Discriminator'")
    config = d_config_from_init_kwargs(info.get("init_kwargs") or {}, info.get("module_overrides"))
    state = {**flatten(raw.get("params", {})), **flatten(raw.get("buffers", {}))}
    return config, d_variables_from_state_dict(state, config)
