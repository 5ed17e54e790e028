"""NVIDIA StyleGAN3 generators (stylegan3 repo, `training.networks_stylegan3.Generator`) -> gvjax variables.

A stylegan3-repo network pickle is read like a StyleGAN2 one (`gvjax.convert.source`, through the
restricted unpickler; its module state holds small numeric numpy arrays, which it admits). Its `G_ema`
and `G` are StyleGAN3 generators, its `D` the StyleGAN2 discriminator, kept raw as for StyleGAN2 pickles.

The init kwargs omit every default, so the config is read from the pickled modules where they record
it (`SynthesisNetwork`: `num_layers`, `num_critical`, `margin_size`, `output_scale`, `num_fp16_res`;
each `SynthesisLayer`: `conv_kernel`, `conv_clamp`, `magnitude_ema_beta`, taps, factors, radial
filters; `MappingNetwork`: `num_layers`, `w_avg_beta`, its layers' `bias_gain`), else from the kwargs,
else NVIDIA's defaults. The layer table that config implies (`synthesis_layout`) must then equal every
pickled layer's attributes (names, sizes, sampling rates, cutoffs, half-widths, channels, padding...),
and the pickled lowpass filters must equal the designed ones (`FILTER_ATOL`): they are derived from the
config, not stored. Anything else is refused in one line that names the difference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gvjax.convert import nvidia
from gvjax.convert.nvidia import BUFFERS, DESIGNED, PARAMS, _pick, image_fields, table_lookup
from gvjax.convert.safe_pickle import PersistentObject
from gvjax.convert.torch_io import module_attributes, module_state_dict
from gvjax.errors import GvjaxError
from gvjax.models.stylegan3 import StyleGAN3Config, layer_filters, synthesis_layout

FORMAT = "nvidia-sg3-pkl"
CLASS_NAME = "training.networks_stylegan3.Generator"
#: max |pickled - designed| of a lowpass filter tap (the designs agree to float32 rounding)
FILTER_ATOL = 1e-6

# (pattern on the state-dict name, what it is: a parameter, a buffer, or a filter designed from the config)
NAME_TABLE: tuple[tuple[str, str], ...] = (
    (r"^mapping\.w_avg$", BUFFERS),
    (r"^mapping\.(embed|fc\d+)\.(weight|bias)$", PARAMS),
    (r"^synthesis\.input\.(transform|freqs|phases)$", BUFFERS),
    (r"^synthesis\.input\.(weight|affine\.weight|affine\.bias)$", PARAMS),
    (r"^synthesis\.L\d+_\d+_\d+\.magnitude_ema$", BUFFERS),
    (r"^synthesis\.L\d+_\d+_\d+\.(up|down)_filter$", DESIGNED),
    (r"^synthesis\.L\d+_\d+_\d+\.(weight|bias|affine\.weight|affine\.bias)$", PARAMS),
)
MODULE_CLASSES = {"": "Generator", "synthesis": "SynthesisNetwork", "synthesis.input": "SynthesisInput", "mapping": "MappingNetwork"}
#: LayerSpec fields a pickled SynthesisLayer records under the same name
LAYER_FIELDS = (
    "is_torgb", "is_critically_sampled", "use_fp16", "in_channels", "out_channels", "in_size", "out_size", "in_sampling_rate",
    "out_sampling_rate", "tmp_sampling_rate", "in_cutoff", "out_cutoff", "in_half_width", "out_half_width",
    "conv_kernel", "up_factor", "up_taps", "down_factor", "down_taps", "down_radial", "padding",
)


class UnsupportedStyleGAN3Error(GvjaxError):
    """A StyleGAN3 network whose modules or tensors are not what `training.networks_stylegan3` writes."""


def kind_of(attrs: dict[str, dict]) -> str | None:
    """'T' or 'R' if `attrs` (`module_attributes` of a pickled generator) is a StyleGAN3 network, else None."""
    return nvidia.stylegan3_config(attrs)


def is_stylegan3_pickle(obj: Any) -> bool:
    """Whether a loaded source is an NVIDIA network pickle whose G_ema is a StyleGAN3 generator."""
    g_ema = obj.get("G_ema") if isinstance(obj, dict) else None
    return isinstance(g_ema, PersistentObject) and kind_of(module_attributes(g_ema)) is not None


def collection_of(name: str) -> str:
    """PARAMS, BUFFERS or DESIGNED for a StyleGAN3 generator state-dict entry, by `NAME_TABLE`."""
    what = table_lookup(name, NAME_TABLE)
    if what is None:
        raise UnsupportedStyleGAN3Error(f"unexpected tensor {name!r}")
    return what


def read_generator(obj: Any, name: str) -> tuple[StyleGAN3Config, dict, dict[str, Any]]:
    """(config, variables, {class_name, family, kind, init_kwargs, num_fp16_res}) of a pickled StyleGAN3 generator.

    Refusals are one line: `StyleGAN3-T network (...) is not supported in this form: <what differs>`.
    """
    if not isinstance(obj, PersistentObject):
        raise GvjaxError(f"{name} is not an NVIDIA network module ({type(obj).__name__})")
    attrs = module_attributes(obj)
    kind = kind_of(attrs) or "?"
    try:
        config = config_from_modules(attrs)
        variables = variables_from_state_dict(module_state_dict(obj), config)
    except GvjaxError as e:
        raise UnsupportedStyleGAN3Error(
            f"{name}: StyleGAN3-{kind} network (stylegan3 repo, {CLASS_NAME}) is not supported in this form: {e}"
        ) from None
    info = {
        "class_name": CLASS_NAME,
        "family": "stylegan3",
        "kind": kind,
        "init_kwargs": attrs[""]["init_kwargs"],
        "num_fp16_res": config.num_fp16_res,
    }
    return config, variables, info


# --- the config ------------------------------------------------------------------------------------


def config_from_modules(attrs: dict[str, dict]) -> StyleGAN3Config:
    """StyleGAN3Config from a pickled generator's `module_attributes`, checked against every layer's attributes."""
    for path, cls in MODULE_CLASSES.items():
        if attrs.get(path, {}).get("class_name") != cls:
            raise UnsupportedStyleGAN3Error(f"module '{path or 'G'}' is not a {cls}")
    syn = attrs["synthesis"]
    names = syn.get("layer_names")
    if not isinstance(names, list) or not names or not all(f"synthesis.{n}" in attrs for n in names):
        raise UnsupportedStyleGAN3Error("the synthesis network does not list its layers (layer_names)")
    layers = [attrs[f"synthesis.{n}"] for n in names]
    try:
        config = StyleGAN3Config(**_config_fields(attrs, layers))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise UnsupportedStyleGAN3Error(f"malformed init kwargs or module attributes ({type(e).__name__}: {e})") from None
    _check_layout(config, attrs["synthesis.input"], names, layers)
    return config


def _config_fields(attrs: dict[str, dict], layers: list[dict]) -> dict[str, Any]:
    """The StyleGAN3Config fields: module attributes, else init kwargs, else NVIDIA's defaults."""
    kwargs = attrs[""]["init_kwargs"]
    syn, mapping = attrs["synthesis"], attrs["mapping"]
    mapping_kwargs = dict(kwargs.get("mapping_kwargs") or {})
    first, torgb = layers[0], layers[-1]  # L0 (a conv layer, with filters) and ToRGB
    clamps = [layer["conv_clamp"] for layer in layers if "conv_clamp" in layer]
    radial = [layer["down_radial"] for layer in layers if "down_radial" in layer]
    up = first.get("up_factor", 1)
    fields = dict(
        **image_fields(kwargs),
        mapping_layers=int(_pick("num_layers", 2, mapping, mapping_kwargs)),
        mapping_lr_multiplier=float(_pick("bias_gain", None, attrs.get("mapping.fc0", {})) or _pick("lr_multiplier", 0.01, mapping_kwargs)),
        w_avg_beta=_pick("w_avg_beta", 0.998, mapping, mapping_kwargs),
        channel_base=int(_pick("channel_base", 32768, kwargs)),
        channel_max=int(_pick("channel_max", 512, kwargs)),
        num_layers=int(_pick("num_layers", 14, syn, kwargs)),
        num_critical=int(_pick("num_critical", 2, syn, kwargs)),
        first_cutoff=float(_pick("first_cutoff", 2, kwargs)),
        first_stopband=float(_pick("first_stopband", 2**2.1, kwargs)),
        last_stopband_rel=float(_pick("last_stopband_rel", 2**0.3, kwargs)),
        margin_size=int(_pick("margin_size", 10, syn, kwargs)),
        output_scale=float(_pick("output_scale", 0.25, syn, kwargs)),
        conv_kernel=int(_pick("conv_kernel", 3, first, kwargs)),
        filter_size=int(first["up_taps"] // up if up > 1 and "up_taps" in first else _pick("filter_size", 6, kwargs)),
        lrelu_upsampling=int(
            first["tmp_sampling_rate"] // max(first["in_sampling_rate"], first["out_sampling_rate"])
            if all(k in first for k in ("tmp_sampling_rate", "in_sampling_rate", "out_sampling_rate"))
            else _pick("lrelu_upsampling", 2, kwargs)
        ),
        use_radial_filters=bool(any(radial) if radial else kwargs.get("use_radial_filters", False)),
        conv_clamp=nvidia._one_value(clamps, "conv_clamp") if clamps else kwargs.get("conv_clamp", 256),
        magnitude_ema_beta=float(_pick("magnitude_ema_beta", 0.999, torgb, kwargs)),
        num_fp16_res=int(_pick("num_fp16_res", 4, syn, kwargs)),
    )
    if fields["conv_clamp"] is not None:
        fields["conv_clamp"] = float(fields["conv_clamp"])
    return fields


def _same(pickled: Any, ours: Any) -> bool:
    """Whether a pickled attribute equals our value (sizes may be [w, h] lists; floats to 1e-9 relative)."""
    if isinstance(ours, tuple):
        return isinstance(pickled, (list, tuple)) and len(pickled) == len(ours) and all(map(_same, pickled, ours))
    if isinstance(pickled, (list, tuple)):  # [width, height] of a square map
        return len(pickled) == 2 and all(_same(p, ours) for p in pickled)
    if isinstance(ours, bool) or isinstance(pickled, bool):
        return bool(pickled) == ours
    if isinstance(pickled, (int, float)) and isinstance(ours, (int, float)):
        return math.isclose(pickled, ours, rel_tol=1e-9, abs_tol=1e-12)
    return False


def _check_layout(config: StyleGAN3Config, pickled_input: dict, names: list[str], layers: list[dict]) -> None:
    """UnsupportedStyleGAN3Error naming the first pickled attribute that `synthesis_layout(config)` does not reproduce."""
    input_spec, specs = synthesis_layout(config)
    ours = [spec.name for spec in specs]
    if names != ours:
        raise UnsupportedStyleGAN3Error(f"layers {names} differ from the {ours} its config implies")
    for field in ("channels", "size", "sampling_rate", "bandwidth"):
        if field in pickled_input and not _same(pickled_input[field], getattr(input_spec, field)):
            raise UnsupportedStyleGAN3Error(
                f"input.{field} is {pickled_input[field]}, its config implies {getattr(input_spec, field)}"
            )
    for spec, layer in zip(specs, layers):
        if layer.get("class_name") != "SynthesisLayer":
            raise UnsupportedStyleGAN3Error(f"module '{spec.name}' is not a SynthesisLayer")
        for field in LAYER_FIELDS:
            if field in layer and not _same(layer[field], getattr(spec, field)):
                raise UnsupportedStyleGAN3Error(f"{spec.name}.{field} is {layer[field]}, its config implies {getattr(spec, field)}")


# --- the tensors -----------------------------------------------------------------------------------


def variables_from_state_dict(state: dict[str, np.ndarray], config: StyleGAN3Config) -> dict:
    """NVIDIA StyleGAN3 generator state dict (names without the `G_ema.` prefix) -> gvjax variables (float32).

    Lowpass filters are checked against `layer_filters` (within FILTER_ATOL) and dropped.
    """
    specs = {spec.name: spec for spec in synthesis_layout(config)[1]}
    kept, buffers = {}, set()
    for name, value in state.items():
        what = collection_of(name)
        if what == DESIGNED:
            _, layer, which = name.split(".")
            designed = _designed(specs, layer, which)
            value = np.asarray(value)
            if designed is None or value.shape != designed.shape or not np.allclose(value, designed, rtol=0, atol=FILTER_ATOL):
                raise UnsupportedStyleGAN3Error(f"{name} is not the lowpass filter its config designs")
            continue
        kept[name] = np.asarray(value, dtype=np.float32)
        if what == BUFFERS:
            buffers.add(name)
    for layer, spec in specs.items():
        for which in ("up_filter", "down_filter"):
            if _designed(specs, layer, which) is not None and f"synthesis.{layer}.{which}" not in state:
                raise UnsupportedStyleGAN3Error(f"synthesis.{layer}.{which} is missing")
    return nvidia.nest(kept, buffers)


def _designed(specs: dict, layer: str, which: str) -> np.ndarray | None:
    """The designed `which` ('up_filter' / 'down_filter') of `layer`; UnsupportedStyleGAN3Error for an unknown layer."""
    if layer not in specs:
        raise UnsupportedStyleGAN3Error(f"unexpected layer {layer!r}")
    up, down = layer_filters(specs[layer])
    return up if which == "up_filter" else down
