"""Write NVIDIA TensorFlow network pickles from numpy arrays, without TensorFlow or dnnlib.

The byte stream is what ``pickle.dump((G, D, Gs), f)`` of NVlabs/stylegan2 (protocol 4) or
stylegan2-ada TF (protocol 3) writes: each network as ``NEWOBJ(dnnlib.tflib.network.Network, ())``
then ``BUILD(state)``; arrays, dtypes and scalars as numpy 1.x reduces them
(``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` + BUILD, ``numpy.dtype``,
``numpy.core.multiarray.scalar``). It reuses checkpoint_writer's pure-Python pickler and its `Ref`
stand-ins for foreign globals.

`tf_generator` / `tf_discriminator` turn NVIDIA torch state dicts into TF networks by the inverse
of the rules of stylegan2-ada-pytorch's `legacy.py` (tests/data/stylegan2/README.md, "How
legacy.py maps them"), written here independently of `gvjax.convert.tensorflow`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
from checkpoint_writer import Ref, _Writer

NETWORK = Ref("dnnlib.tflib.network", "Network")
_NUMPY = {"_reconstruct": Ref("numpy.core.multiarray", "_reconstruct"), "scalar": Ref("numpy.core.multiarray", "scalar")}
_NDARRAY, _DTYPE = Ref("numpy", "ndarray"), Ref("numpy", "dtype")
SOURCE_PLACEHOLDER = "# network source removed (written by tests/tf_pickle_writer.py)\n"


class Network:
    """A ``dnnlib.tflib.network.Network`` (or `ref`, e.g. ProGAN's ``tfutil.Network``): `state` is what its ``__getstate__`` returns."""

    def __init__(self, state: dict, ref: Ref = NETWORK):
        self.state, self.ref = state, ref


def network(name: str, build_func_name: str, static_kwargs: dict, variables: list, components: dict | None = None,
            version: int = 4, **v5_fields) -> Network:
    """A Network state in NVIDIA's key order; version 5 (stylegan2-ada) adds input/output shapes and names."""
    state = {"version": version, "name": name, "static_kwargs": dict(static_kwargs), "components": dict(components or {}),
             "build_module_src": SOURCE_PLACEHOLDER, "build_func_name": build_func_name, "variables": list(variables)}
    if version >= 5:
        state.update({key: v5_fields.get(key) for key in ("input_shapes", "output_shapes", "input_names", "output_names")})
    return Network(state)


class _TFWriter(_Writer):
    """checkpoint_writer's pickler with numpy objects reduced as numpy 1.x does and Networks as NEWOBJ + BUILD."""

    dispatch = _Writer.dispatch.copy()

    def reducer_override(self, obj):
        if isinstance(obj, (np.ndarray, np.generic, np.dtype)):
            fn, args, *state = obj.__reduce__()
            if isinstance(obj, np.ndarray):
                args = (_NDARRAY,) + args[1:]
            return (_DTYPE if isinstance(obj, np.dtype) else _NUMPY[fn.__name__], args, *state)
        return NotImplemented

    def _save_network(self, obj: Network):
        self.save(obj.ref)
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    dispatch[Network] = _save_network


def write_tf_pickle(path: str | Path, obj: Any, protocol: int = 4) -> None:
    """pickle.dump(obj, protocol) with TF networks and numpy arrays as NVIDIA's TF pickles hold them."""
    with open(path, "wb") as f:
        _TFWriter(f, protocol).dump(obj)


# --- NVIDIA torch state dicts -> TF variables ----------------------------------------------------------

G_LAYERS = {"conv0": "Conv0_up", "conv1": "Conv1", "torgb": "ToRGB", "skip": "Skip"}
D_LAYERS = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip", "conv": "Conv"}


def _tf_conv(w: np.ndarray, flip: bool) -> np.ndarray:
    """[out, in, kh, kw] -> [kh, kw, in, out], flipped spatially where TF runs a transposed conv."""
    w = w.transpose(2, 3, 1, 0)
    return np.ascontiguousarray(w[::-1, ::-1] if flip else w)


def _tf_generator_variable(name: str, value: np.ndarray) -> tuple[str, str, Any] | None:
    """(component key, TF name, TF value) of an NVIDIA generator tensor; None for FIR buffers."""
    if name.endswith("resample_filter"):
        return None
    if name == "mapping.w_avg":
        return "", "dlatent_avg", value
    m = re.fullmatch(r"mapping\.(fc(\d+)|embed)\.(weight|bias)", name)
    if m:
        layer = "LabelEmbed" if m[1] == "embed" else f"Dense{m[2]}"
        return "mapping", f"{layer}/{m[3]}", np.ascontiguousarray(value.T)
    if name == "synthesis.b4.const":
        return "synthesis", "4x4/Const/const", value[None]
    res, layer, rest = re.fullmatch(r"synthesis\.b(\d+)\.(\w+)\.(.+)", name).groups()
    scope = "4x4/Conv" if (res, layer) == ("4", "conv1") else f"{res}x{res}/{G_LAYERS[layer]}"
    if rest == "noise_const":
        k = int(np.log2(int(res)))
        return "synthesis", f"noise{0 if res == '4' else 2 * k - 5 + int(layer[-1])}", value[None, None]
    if rest == "weight":
        return "synthesis", f"{scope}/weight", _tf_conv(value, flip=layer in ("conv0", "skip"))
    if rest == "affine.weight":
        return "synthesis", f"{scope}/mod_weight", np.ascontiguousarray(value.T)
    if rest == "affine.bias":
        return "synthesis", f"{scope}/mod_bias", value - np.float32(1)
    if rest == "noise_strength":
        return "synthesis", f"{scope}/noise_strength", np.float32(value)  # 0-d: a numpy scalar, as TF's Session.run gives
    return "synthesis", f"{scope}/{rest}", value


_RANK = {"Const": 0, "Conv": 1, "Conv0_up": 1, "Conv1": 2, "Skip": 3, "ToRGB": 4,
         "const": 0, "weight": 0, "mod_weight": 1, "mod_bias": 2, "noise_strength": 3, "bias": 4}


def _creation_order(name: str) -> tuple:
    """TF's variable creation order in G_synthesis: the noise inputs, then 4x4, 8x8, ... layer by layer."""
    if name.startswith("noise"):
        return (0, int(name[5:]))
    res, layer, param = name.split("/")
    return (1, int(res.split("x")[0]), _RANK[layer], _RANK[param])


def tf_generator(state: dict[str, np.ndarray], static_kwargs: dict, num_ws: int, *, version: int = 4, name: str = "Gs",
                 synthesis_func: str = "G_synthesis_stylegan2") -> Network:
    """A TF G_main network (own variables, `synthesis` and `mapping` components) holding an NVIDIA generator state dict."""
    own, parts = ([("lod", np.float32(0))] if version < 5 else []), {"synthesis": [], "mapping": []}
    for key, value in state.items():
        entry = _tf_generator_variable(key, np.asarray(value))
        if entry is not None:
            (own if entry[0] == "" else parts[entry[0]]).append(entry[1:])
    parts["synthesis"].sort(key=lambda item: _creation_order(item[0]))
    parts["mapping"].sort(key=lambda item: (item[0].startswith("Dense"), int("0" + re.sub(r"\D", "", item[0])), item[0].endswith("bias")))
    z, c, w, res, ch = (static_kwargs.get(k) for k in ("latent_size", "label_size", "dlatent_size", "resolution", "num_channels"))
    shapes = dict(
        G=dict(input_shapes=[[None, z], [None, c]], output_shapes=[[None, ch, res, res]], input_names=["latents_in", "labels_in"], output_names=["images_out"]),
        synthesis=dict(input_shapes=[[None, num_ws, w]], output_shapes=[[None, ch, res, res]], input_names=["dlatents_in"], output_names=["images_out"]),
        mapping=dict(input_shapes=[[None, z], [None, c]], output_shapes=[[None, num_ws, w]], input_names=["latents_in", "labels_in"], output_names=["dlatents_out"]),
    )
    comps = {
        "synthesis": network("G_synthesis", synthesis_func, static_kwargs, parts["synthesis"], version=version, **shapes["synthesis"]),
        "mapping": network("G_mapping", "G_mapping", {"dlatent_broadcast": num_ws, **static_kwargs}, parts["mapping"], version=version, **shapes["mapping"]),
    }
    return network(name, "G_main", static_kwargs, own, comps, version=version, **shapes["G"])


def tf_discriminator(state: dict[str, np.ndarray], static_kwargs: dict, *, version: int = 4, build_func_name: str = "D_stylegan2") -> Network:
    """A TF D network holding an NVIDIA torch Discriminator state dict (weights transposed, never flipped)."""
    variables = []
    for key, value in state.items():
        if key.endswith("resample_filter"):
            continue
        m = re.fullmatch(r"b(\d+)\.(\w+)\.(weight|bias)", key) or re.fullmatch(r"mapping\.(embed|fc)(\d*)\.(weight|bias)", key)
        if key.startswith("mapping."):
            tf = f"LabelEmbed/{m[3]}" if m[1] == "embed" else f"Mapping{m[2]}/{m[3]}"
        elif m[2] in ("fc", "out"):
            tf = f"{'4x4/Dense0' if m[2] == 'fc' else 'Output'}/{m[3]}"
        else:
            tf = f"{m[1]}x{m[1]}/{D_LAYERS[m[2]]}/{m[3]}"
        dense = key.startswith("mapping.") or m[2] in ("fc", "out")
        value = np.asarray(value)
        variables.append((tf, np.ascontiguousarray(value.T) if dense else _tf_conv(value, flip=False) if value.ndim == 4 else value))
    res, ch, c = (static_kwargs.get(k) for k in ("resolution", "num_channels", "label_size"))
    return network("D", build_func_name, static_kwargs, variables, version=version, input_shapes=[[None, ch, res, res], [None, c]],
                   output_shapes=[[None, 1]], input_names=["images_in", "labels_in"], output_names=["scores_out"])
