"""NVIDIA TensorFlow network pickles -> NVIDIA torch state dicts (then `convert.nvidia` / `convert.nvidia_d`).

Most community StyleGAN2 models are TF pickles: ``pickle.dump((G, D, Gs))`` of
``dnnlib.tflib.network.Network`` objects, each a state dict (`version`, `name`, `static_kwargs`,
`components`, `build_module_src`, `build_func_name`, `variables` = [(TF name, numpy value)]).
They are read with `SafeUnpickler` and `TF_ALLOWED_GLOBALS` (numeric numpy arrays, nothing else;
``build_module_src`` is never run). Two layouts (`LAYOUTS`), told apart by the synthesis build
function: NVlabs/stylegan2 (state version 4, `G_synthesis_stylegan2`, `D_stylegan2`, a `lod`
variable) and NVlabs/stylegan2-ada TF (version 5, `G_synthesis`, `D_main`, label embeddings,
`conv_clamp` / `num_fp16_res`).

`G_TABLE` / `D_TABLE` rename every TF variable (component key + name, as stylegan2-ada-pytorch's
`legacy.py` prefixes them) into NVIDIA's torch state-dict names and layouts; weights are raw in both
(the equalized-lr gains and lr multipliers are applied at run time the same way):

* conv weights ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``; the G's up-sampling convs (`Conv0_up`,
  `Skip`) run as a transposed convolution in TF, so their kernel is also flipped in both spatial axes;
* dense ``[in, out]`` -> ``[out, in]``; ``mod_bias`` -> ``affine.bias`` ``+ 1`` (TF adds the 1 at run time);
* ``G_synthesis/noise<i>`` ``[1, 1, r, r]`` -> the ``noise_const`` of layer i; ``dlatent_avg`` -> ``w_avg``.

The configs come from `static_kwargs` with the TF build functions' defaults (`TF_DEFAULTS`): TF
itself ignores any other kwarg, and so does this converter. Channels follow TF's
``nf(stage) = clip(int(fmap_base / 2**(stage * fmap_decay)), fmap_min, fmap_max)``, expressed as
NVIDIA's `channel_base` / `channel_max` (``2 * fmap_base`` / ``fmap_max`` when these agree).
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickletools
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gvjax.config import GeneratorConfig
from gvjax.convert import nvidia
from gvjax.convert.rosinality import _one as drop_leading
from gvjax.convert.rosinality import channel_base_max
from gvjax.convert.safe_pickle import TF_ALLOWED_GLOBALS, CorruptCheckpointError, PickledArray, TFNetwork
from gvjax.errors import GvjaxError

FORMAT = "nvidia-tf-pkl"


class UnsupportedTFNetworkError(GvjaxError):
    """A TensorFlow network pickle that is not a StyleGAN2 gvjax can convert (named in the message)."""


# --- reading the file --------------------------------------------------------------------------------

#: (module, name) of the network classes TF pickles start with
TF_CLASSES = {key for key, value in TF_ALLOWED_GLOBALS.items() if isinstance(value, type) and issubclass(value, TFNetwork)}


def is_tf_pickle(path: str | Path) -> bool:
    """Whether the first global of the pickle in `path` is a TF network class (parsed, nothing run)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if len(head) < 2 or head[0] != 0x80:
        return False
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(head)):
            if op.name == "GLOBAL":
                return tuple(arg.split(" ", 1)) in TF_CLASSES
            if op.name == "STACK_GLOBAL":
                return tuple(strings[-2:]) in TF_CLASSES
            if isinstance(arg, str):
                strings.append(arg)
    except ValueError:
        return False  # the head ends inside an opcode, or is not a pickle
    return False


def load_tf_pickle(path: str | Path) -> Any:
    """The unpickled object of a TF network pickle: `TFNetwork`s holding numpy arrays, nothing executed.

    Errors are one-line GvjaxErrors naming the file (truncated, corrupt, refused global).
    """
    from gvjax.convert.torch_io import _unpickle  # pickle's errors as one-line GvjaxErrors

    path = Path(path)
    with open(path, "rb") as f:  # `is_tf_pickle` has just read it
        try:
            return _unpickle(f, allowed=TF_ALLOWED_GLOBALS)
        except GvjaxError as exc:
            raise type(exc)(f"{path.name}: {exc}") from None


def is_tf_networks(obj: Any) -> bool:
    """Whether a loaded source is a TF network or a tuple of them."""
    if isinstance(obj, (tuple, list)):
        return len(obj) > 0 and all(isinstance(net, TFNetwork) for net in obj)
    return isinstance(obj, TFNetwork)


# --- the networks' fields -------------------------------------------------------------------------


def field(net: TFNetwork, key: str, kind: type | tuple[type, ...]) -> Any:
    """`net.state[key]`, which must be a `kind`; CorruptCheckpointError otherwise."""
    value = net.state.get(key)
    if not isinstance(value, kind):
        name = net.state.get("name")
        raise CorruptCheckpointError(f"TF network {name!r:.40} has no valid {key!r} ({type(value).__name__})")
    return value


def builder(net: TFNetwork) -> str:
    return field(net, "build_func_name", str)


def components(net: TFNetwork) -> dict[str, TFNetwork]:
    comps = net.state.get("components") or {}
    if not isinstance(comps, dict) or not all(isinstance(c, TFNetwork) for c in comps.values()):
        raise CorruptCheckpointError(f"TF network {net.state.get('name')!r:.40} has malformed components")
    return comps


def _value(value: Any, name: str) -> np.ndarray:
    """A TF variable's value as a numpy array (numpy scalars become 0-d arrays)."""
    if isinstance(value, PickledArray) and value.array is not None:
        return value.array
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return np.asarray(value)
    raise CorruptCheckpointError(f"TF variable {name!r:.60} is not a numeric array ({type(value).__name__})")


MAX_DEPTH = 8  # components of components ... (NVIDIA's nest one level)


def tf_variables(net: TFNetwork, prefix: str = "") -> dict[str, np.ndarray]:
    """{name: array} of a network and its components, a component's names prefixed by its key + '/'."""
    if prefix.count("/") > MAX_DEPTH:
        raise CorruptCheckpointError(f"TF network components are nested more than {MAX_DEPTH} deep")
    out = {}
    for item in field(net, "variables", (list, tuple)):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            raise CorruptCheckpointError(f"TF network {net.state.get('name')!r:.40} has a malformed variable entry")
        out[prefix + item[0]] = _value(item[1], prefix + item[0])
    for key, comp in components(net).items():
        out.update(tf_variables(comp, f"{prefix}{key}/"))
    return out


def jsonable(value: Any, depth: int = 0) -> Any:
    """static_kwargs as JSON data: numpy values as Python ones, tuples as lists, anything else as its repr."""
    if depth > MAX_DEPTH:
        return "..."
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PickledArray) and value.array is not None:
        return value.array.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    return repr(value)[:200]


# --- layouts, defaults and what other TF pickles are --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    """One repository's TF StyleGAN2: its build function names and network state version."""

    repo: str
    version: int
    synthesis: str
    discriminator: str
    generator: str = "G_main"
    mapping: str = "G_mapping"


LAYOUTS = (
    Layout("NVlabs/stylegan2", 4, synthesis="G_synthesis_stylegan2", discriminator="D_stylegan2"),
    Layout("NVlabs/stylegan2-ada", 5, synthesis="G_synthesis", discriminator="D_main"),
)

_FMAPS = dict(fmap_base=16384, fmap_decay=1.0, fmap_min=1, fmap_max=512, resample_kernel=[1, 3, 3, 1], nonlinearity="lrelu")
_MAPPING = dict(latent_size=512, label_size=0, dlatent_size=512, mapping_layers=8, mapping_lrmul=0.01,
                mapping_nonlinearity="lrelu", normalize_latents=True)
_SYNTHESIS = dict(dlatent_size=512, num_channels=3, resolution=1024, architecture="skip", **_FMAPS)
_D = dict(num_channels=3, resolution=1024, label_size=0, architecture="resnet", mbstd_num_features=1, **_FMAPS)

#: (repo, build function) -> the defaults of the kwargs gvjax reads, as that function declares them
TF_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # NVlabs/stylegan2 training/networks_stylegan2.py
    ("NVlabs/stylegan2", "G_main"): dict(dlatent_avg_beta=0.995),
    ("NVlabs/stylegan2", "G_mapping"): dict(_MAPPING, mapping_fmaps=512),
    ("NVlabs/stylegan2", "G_synthesis_stylegan2"): _SYNTHESIS,
    ("NVlabs/stylegan2", "D_stylegan2"): dict(_D, mbstd_group_size=4),
    # NVlabs/stylegan2-ada training/networks.py
    ("NVlabs/stylegan2-ada", "G_main"): dict(dlatent_avg_beta=0.995),
    ("NVlabs/stylegan2-ada", "G_mapping"): dict(_MAPPING, mapping_fmaps=None, label_fmaps=None),
    ("NVlabs/stylegan2-ada", "G_synthesis"): dict(_SYNTHESIS, fmap_const=None, use_noise=True, num_fp16_res=0, conv_clamp=None),
    ("NVlabs/stylegan2-ada", "D_main"): dict(
        _D, mapping_layers=0, mapping_fmaps=None, mapping_lrmul=0.1, mbstd_group_size=None, num_fp16_res=0,
        conv_clamp=None, use_pagan=False, score_max=1, use_spectral_norm=False, adaptive_dropout=0,
    ),
}

#: kwargs whose other values make a network gvjax does not compute -> the value it needs
REQUIRED = {
    "nonlinearity": "lrelu", "mapping_nonlinearity": "lrelu", "normalize_latents": True, "use_noise": True,
    "fmap_const": None, "use_pagan": False, "score_max": 1, "use_spectral_norm": False, "adaptive_dropout": 0,
}

#: build function -> what a file built by it is, for the TF pickles gvjax does not convert
FOREIGN_BUILDERS = {
    "G_style": "a StyleGAN1 generator (NVlabs/stylegan G_style: progressive growing with lod, AdaIN)",
    "G_paper": "a Progressive GAN generator (tkarras/progressive_growing_of_gans G_paper)",
    "G_synthesis_stylegan_revised": "a StyleGAN2 config A-D generator (G_synthesis_stylegan_revised: progressive growing)",
}
D_BUILDERS = ("D_stylegan2", "D_main", "D_stylegan", "D_basic", "D_paper")


def _refuse(what: str) -> UnsupportedTFNetworkError:
    return UnsupportedTFNetworkError(
        f"{what} is not supported: gvjax converts the StyleGAN2 TensorFlow pickles of NVlabs/stylegan2 and stylegan2-ada (G, D, Gs)"
    )


def split_networks(obj: Any) -> tuple[TFNetwork | None, TFNetwork | None, TFNetwork]:
    """(G, D, Gs) of a loaded TF pickle: the tuple NVIDIA writes, by position, or a lone generator as Gs."""
    if isinstance(obj, TFNetwork):
        if builder(obj) in D_BUILDERS:
            raise _refuse(f"a discriminator-only file ({builder(obj)}, no generator)")
        return None, None, obj
    if len(obj) == 3:
        return obj[0], obj[1], obj[2]
    names = {field(net, "name", str): net for net in obj}
    if "Gs" not in names:
        listed = ", ".join(repr(n) for n in names)
        raise UnsupportedTFNetworkError(f"a tuple of {len(obj)} TF networks ({listed}) without Gs: expected (G, D, Gs)")
    return names.get("G"), names.get("D"), names["Gs"]


def layout_of(gs: TFNetwork) -> Layout:
    """The `Layout` of generator `gs`; a one-line refusal naming StyleGAN1, ProGAN, configs A-D, ..."""
    if builder(gs) in FOREIGN_BUILDERS:
        raise _refuse(FOREIGN_BUILDERS[builder(gs)])
    if isinstance(gs, TFNetwork) and gs.class_name != TFNetwork.class_name:
        raise _refuse(f"a {gs.class_name} network ({builder(gs)})")
    comps = components(gs)
    if builder(gs) != "G_main" or set(comps) != {"mapping", "synthesis"}:
        raise _refuse(f"TF generator {builder(gs)!r} with components {sorted(comps)}")
    synthesis = builder(comps["synthesis"])
    if synthesis in FOREIGN_BUILDERS:
        raise _refuse(FOREIGN_BUILDERS[synthesis])
    for layout in LAYOUTS:
        if synthesis == layout.synthesis and builder(comps["mapping"]) == layout.mapping:
            return layout
    raise _refuse(f"TF synthesis network {synthesis!r} (mapping {builder(comps['mapping'])!r})")


def tf_kwargs(net: TFNetwork, layout: Layout, build_func: str) -> dict[str, Any]:
    """The kwargs `build_func` of `layout` reads, from `net`'s static_kwargs or that function's defaults."""
    defaults = TF_DEFAULTS[(layout.repo, build_func)]
    given = field(net, "static_kwargs", dict)
    kwargs = {key: given.get(key, default) for key, default in defaults.items()}
    for key, needed in REQUIRED.items():
        if key in kwargs and kwargs[key] != needed:
            raise UnsupportedTFNetworkError(f"{build_func} with {key}={kwargs[key]!r} is not supported (gvjax computes {key}={needed!r})")
    return kwargs


def _nf(kw: dict[str, Any]) -> Callable[[int], int]:
    """TF's channel count of a stage, nf(stage); a layer at resolution 2**k has nf(k - 1) channels."""
    return lambda stage: int(np.clip(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))), kw["fmap_min"], kw["fmap_max"]))


def channel_base_and_max(kw: dict[str, Any], resolutions: list[int], what: str) -> tuple[int, int]:
    """NVIDIA's (channel_base, channel_max) giving TF's nf table at `resolutions`."""
    nf = _nf(kw)
    table = {r: nf(int(math.log2(r)) - 1) for r in resolutions}
    base, cmax = 2 * int(kw["fmap_base"]), int(kw["fmap_max"])
    if all(min(base // r, cmax) == c for r, c in table.items()):
        return base, cmax
    try:
        return channel_base_max(table)
    except GvjaxError as e:
        fmaps = ", ".join(f"{k}={kw[k]}" for k in ("fmap_base", "fmap_decay", "fmap_min", "fmap_max"))
        raise UnsupportedTFNetworkError(f"{what} channels from {fmaps}: {e}") from None


def _filter(kw: dict[str, Any]) -> tuple[float, ...]:
    """resample_kernel as 1-D taps; TF's None is the box filter [1, 1]."""
    k = kw["resample_kernel"]
    return (1.0, 1.0) if k is None else tuple(float(v) for v in k)


def _resolutions(res: int, what: str) -> list[int]:
    if res < 4 or res & (res - 1):
        raise UnsupportedTFNetworkError(f"{what} resolution {res} is not a power of two >= 4")
    return [2**k for k in range(2, int(math.log2(res)) + 1)]


# --- generator ----------------------------------------------------------------------------------------


def generator_config(net: TFNetwork, layout: Layout) -> GeneratorConfig:
    """GeneratorConfig of a TF G_main network (its components' static_kwargs, with the TF defaults)."""
    comps = components(net)
    top = tf_kwargs(net, layout, layout.generator)
    m = tf_kwargs(comps["mapping"], layout, layout.mapping)
    s = tf_kwargs(comps["synthesis"], layout, layout.synthesis)
    c_dim = int(m["label_size"])
    if c_dim and layout.version < 5:
        raise _refuse(
            "a conditional NVlabs/stylegan2 generator (G_mapping/LabelConcat: the label embedding is normalised "
            "together with z, which NVIDIA's torch code and gvjax do not compute)"
        )
    z_dim, w_dim = int(m["latent_size"]), int(m["dlatent_size"])
    layer_features = w_dim if m["mapping_fmaps"] is None else int(m["mapping_fmaps"])
    embed_features = z_dim if m.get("label_fmaps") is None else int(m["label_fmaps"])
    res = int(s["resolution"])
    channel_base, channel_max = channel_base_and_max(s, _resolutions(res, "G"), "G")
    return GeneratorConfig(
        z_dim=z_dim, w_dim=w_dim, c_dim=c_dim, img_resolution=res, img_channels=int(s["num_channels"]),
        mapping_layers=int(m["mapping_layers"]), mapping_lr_multiplier=float(m["mapping_lrmul"]),
        embed_features=embed_features if c_dim and embed_features != w_dim else None,
        layer_features=layer_features if layer_features != w_dim else None,
        w_avg_beta=None if top["dlatent_avg_beta"] is None else float(top["dlatent_avg_beta"]),
        channel_base=channel_base, channel_max=channel_max, architecture=str(s["architecture"]),
        conv_clamp=None if s.get("conv_clamp") is None else float(s["conv_clamp"]),
        resample_filter=_filter(s), num_fp16_res=int(s.get("num_fp16_res", 0)),
    )


# (pattern on the TF name, NVIDIA name template, transform); None: not stored (TF's `lod`).
# Templates use the named groups; `res` is the resolution, `layer` is renamed by the table's layer map.
G_TABLE: tuple[tuple[str, str | None, str | None], ...] = (
    (r"lod", None, None),
    (r"dlatent_avg", "mapping.w_avg", "same"),
    (r"mapping/Dense(?P<i>\d+)/(?P<p>weight|bias)", "mapping.fc{i}.{p}", "transpose"),
    (r"mapping/LabelEmbed/(?P<p>weight|bias)", "mapping.embed.{p}", "transpose"),
    (r"synthesis/noise(?P<noise>\d+)", "{noise}.noise_const", "noise"),
    (r"synthesis/4x4/Const/const", "synthesis.b4.const", "drop_batch"),
    (r"synthesis/(?P<res>\d+)x\d+/(?P<layer>Conv0_up|Skip)/weight", "synthesis.b{res}.{layer}.weight", "flip_conv"),
    (r"synthesis/(?P<res>\d+)x\d+/(?P<layer>Conv|Conv1|ToRGB)/weight", "synthesis.b{res}.{layer}.weight", "conv"),
    (r"synthesis/(?P<res>\d+)x\d+/(?P<layer>Conv|Conv0_up|Conv1|ToRGB)/mod_weight", "synthesis.b{res}.{layer}.affine.weight", "transpose"),
    (r"synthesis/(?P<res>\d+)x\d+/(?P<layer>Conv|Conv0_up|Conv1|ToRGB)/mod_bias", "synthesis.b{res}.{layer}.affine.bias", "plus_one"),
    (r"synthesis/(?P<res>\d+)x\d+/(?P<layer>Conv|Conv0_up|Conv1|ToRGB)/(?P<p>bias|noise_strength)", "synthesis.b{res}.{layer}.{p}", "same"),
)
G_LAYERS = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb", "Skip": "skip"}

D_TABLE: tuple[tuple[str, str | None, str | None], ...] = (
    (r"(?P<res>\d+)x\d+/(?P<layer>FromRGB|Conv0|Conv1_down|Conv|Skip)/weight", "b{res}.{layer}.weight", "conv"),
    (r"(?P<res>\d+)x\d+/(?P<layer>FromRGB|Conv0|Conv1_down|Conv)/bias", "b{res}.{layer}.bias", "same"),
    (r"4x4/Dense0/(?P<p>weight|bias)", "b4.fc.{p}", "transpose"),
    (r"Output/(?P<p>weight|bias)", "b4.out.{p}", "transpose"),
    (r"LabelEmbed/(?P<p>weight|bias)", "mapping.embed.{p}", "transpose"),
    (r"Mapping(?P<i>\d+)/(?P<p>weight|bias)", "mapping.fc{i}.{p}", "transpose"),
)
D_LAYERS = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1", "Conv": "conv", "Skip": "skip"}


def _noise_layer(i: str) -> str:
    """NVIDIA layer of TF noise input i: 0 -> b4.conv1; then conv0 / conv1 of b8, b16, ..."""
    i = int(i)
    if i == 0:
        return "synthesis.b4.conv1"
    return f"synthesis.b{2 ** ((i + 5) // 2)}.conv{(i + 1) % 2}"


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "same": lambda x: x,
    "transpose": lambda x: x.T,  # dense [in, out] -> [out, in]; a bias is unchanged
    "conv": lambda x: x.transpose(3, 2, 0, 1),  # [kh, kw, in, out] -> [out, in, kh, kw]
    "flip_conv": lambda x: x[::-1, ::-1].transpose(3, 2, 0, 1),  # TF's up-sampling conv is transposed
    "plus_one": lambda x: x + np.float32(1),  # TF's modulation adds its 1 at run time
    "drop_batch": lambda x: drop_leading(x, 1),
    "noise": lambda x: drop_leading(x, 2),
}
_NDIM = {"conv": 4, "flip_conv": 4}


def nvidia_state(variables: dict[str, np.ndarray], table, layers: dict[str, str], what: str) -> dict[str, np.ndarray]:
    """TF variables {name: array} -> NVIDIA state dict {name: array} through `table` (views, no copies)."""
    out = {}
    for name, value in variables.items():
        for pattern, template, transform in table:
            m = re.fullmatch(pattern, name)
            if m:
                break
        else:
            raise UnsupportedTFNetworkError(f"unexpected TF {what} variable {name!r}: not a StyleGAN2 {what}")
        if template is None:
            continue
        groups = dict(m.groupdict())
        if "layer" in groups:
            groups["layer"] = layers[groups["layer"]]
        if "noise" in groups:
            groups["noise"] = _noise_layer(groups["noise"])
        if value.ndim != _NDIM.get(transform, value.ndim):
            raise UnsupportedTFNetworkError(f"TF {what} variable {name!r} has shape {list(value.shape)}, expected a conv kernel")
        try:
            out[template.format(**groups)] = TRANSFORMS[transform](value)
        except GvjaxError as e:
            raise UnsupportedTFNetworkError(f"TF {what} variable {name!r}: {e}") from None
    return out


def generator_variables(net: TFNetwork, config: GeneratorConfig) -> dict:
    """gvjax variables of a TF G_main network (through NVIDIA's names: `nvidia.variables_from_state_dict`)."""
    return nvidia.variables_from_state_dict(nvidia_state(tf_variables(net), G_TABLE, G_LAYERS, "generator"), config)


# --- discriminator ------------------------------------------------------------------------------------


def discriminator_kwargs(net: TFNetwork, layout: Layout) -> dict[str, Any]:
    """NVIDIA torch `Discriminator` init kwargs computing what TF's D of `layout` computes."""
    if builder(net) != layout.discriminator:
        raise UnsupportedTFNetworkError(f"TF discriminator {builder(net)!r} is not the {layout.discriminator} of a {layout.repo} file")
    kw = tf_kwargs(net, layout, layout.discriminator)
    c_dim, res = int(kw["label_size"]), int(kw["resolution"])
    if c_dim and layout.version < 5:
        raise UnsupportedTFNetworkError("a conditional NVlabs/stylegan2 D (Output summed against the raw label) has no NVIDIA torch equivalent")
    channel_base, channel_max = channel_base_and_max(kw, _resolutions(res, "D"), "D")
    nf0 = _nf(kw)(0)
    if nf0 != min(channel_base // 4, channel_max):
        raise UnsupportedTFNetworkError(
            f"D 4x4/Dense0 has nf(0)={nf0} features; NVIDIA's torch D (and gvjax's) has the 4x4 channels, {min(channel_base // 4, channel_max)}"
        )
    group, features = kw["mbstd_group_size"], int(kw["mbstd_num_features"])
    if layout.version < 5 and int(group) <= 1:  # D_stylegan2 runs the layer only for groups > 1
        features = 0
    return {
        "c_dim": c_dim, "img_resolution": res, "img_channels": int(kw["num_channels"]), "architecture": str(kw["architecture"]),
        "channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": int(kw.get("num_fp16_res", 0)),
        "conv_clamp": None if kw.get("conv_clamp") is None else float(kw["conv_clamp"]),
        "cmap_dim": int(kw.get("mapping_fmaps") or nf0) if c_dim else None,
        "block_kwargs": {"resample_filter": list(_filter(kw))},
        "mapping_kwargs": {"num_layers": int(kw.get("mapping_layers", 0)), "lr_multiplier": float(kw.get("mapping_lrmul", 0.1))},
        "epilogue_kwargs": {"mbstd_group_size": None if group is None else int(group), "mbstd_num_channels": features},
    }


def discriminator_state(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NVIDIA torch D state dict (no FIR buffers) of a TF D network's `tf_variables`."""
    return nvidia_state(variables, D_TABLE, D_LAYERS, "discriminator")
