"""Write NVIDIA network pickles and torch.save zip files from numpy arrays, without torch.

For tests and benchmarks that need checkpoints the fixtures do not cover (other configs, other
kwargs layouts, large files). The byte streams reference only the globals real files use:

* NVIDIA pickles (``pickle.dump`` of the training snapshot dict, protocol 4): modules as
  ``torch_utils.persistence._reconstruct_persistent_obj(meta)``; tensors as
  ``torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(blob), ...)`` with ``blob`` a
  legacy-format storage file; parameters wrapped in ``torch._utils._rebuild_parameter``; init
  kwargs as ``dnnlib.util.EasyDict``.
* torch.save zip files (protocol 2 ``<name>/data.pkl`` with persistent ids
  ``('storage', torch.FloatStorage, key, 'cpu', numel)`` and raw little-endian records
  ``<name>/data/<key>``); ``Namespace`` objects as ``argparse.Namespace`` (rosinality's ``args``).

The writer is Python's own pure-Python pickler with stand-in objects for the foreign globals, so
nothing here imports torch, dnnlib or torch_utils.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SOURCE_PLACEHOLDER = "# network source removed (written by tests/checkpoint_writer.py)\n"
STORAGE_CLASS = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.int64): "LongStorage",
}


class Ref:
    """A global `module.name`, written as a GLOBAL opcode (never imported)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce wants a callable
        raise TypeError("a stand-in for a pickled global")


RECONSTRUCT = Ref("torch_utils.persistence", "_reconstruct_persistent_obj")
EASYDICT = Ref("dnnlib.util", "EasyDict")
REBUILD_TENSOR_V2 = Ref("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = Ref("torch._utils", "_rebuild_parameter")
LOAD_FROM_BYTES = Ref("torch.storage", "_load_from_bytes")
_STORAGE_REFS = {dtype: Ref("torch", name) for dtype, name in STORAGE_CLASS.items()}


class Reduce:
    """Pickles as `fn(*args)`."""

    def __init__(self, fn: Ref, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class Parameter:
    """An array pickled as a torch ``nn.Parameter`` (inside an NVIDIA module)."""

    def __init__(self, array: np.ndarray):
        self.array = array


class Namespace:
    """Pickled as ``argparse.Namespace`` with these attributes (NEWOBJ + BUILD, like pickle does)."""

    def __init__(self, **values):
        self.values = values


def EasyDict(d: dict) -> Reduce:
    """An NVIDIA ``dnnlib.EasyDict`` holding the items of d."""
    return Reduce(EASYDICT, dict(d))


def persistent_module(class_name: str, state: dict) -> Reduce:
    """An NVIDIA persistent object: `state` is the module's ``__dict__``."""
    meta = {"type": "class", "version": 6, "module_src": SOURCE_PLACEHOLDER, "class_name": class_name, "state": state}
    return Reduce(RECONSTRUCT, meta)


def legacy_storage_bytes(array: np.ndarray, key: str = "0") -> bytes:
    """The legacy torch.save file of one storage holding `array` (flattened), as NVIDIA embeds it."""
    array = np.ascontiguousarray(array)
    storage = Ref("torch", STORAGE_CLASS[array.dtype])
    pid = ("storage", storage, key, "cpu", int(array.size), None)
    head = pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    buf = io.BytesIO()
    _Writer(buf, 2, persistent=lambda obj: pid if obj is _PID_MARK else None).dump(_PID_MARK)
    tail = pickle.dumps([key], protocol=2) + struct.pack("<q", array.size)
    return b"".join([head, buf.getvalue(), tail, array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()])


_PID_MARK = object()


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """C-order strides in elements."""
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


class _Storage:
    """A tensor's storage inside the pickler (a persistent id in zip files, embedded bytes in pickles)."""

    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array).reshape(-1)


class _Writer(pickle._Pickler):
    """Pure-Python pickler writing Ref as GLOBAL, arrays as torch tensors.

    persistent: obj -> persistent id or None (zip files); without it storages are embedded with
    ``torch.storage._load_from_bytes`` (NVIDIA pickles).
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, protocol: int, persistent: Callable[[Any], Any] | None = None):
        super().__init__(file, protocol)
        self._persistent = persistent

    def persistent_id(self, obj):
        return None if self._persistent is None else self._persistent(obj)

    def reducer_override(self, obj):
        if isinstance(obj, Parameter):
            return REBUILD_PARAMETER, (obj.array, False, collections.OrderedDict())
        if isinstance(obj, np.ndarray):
            shape = tuple(int(n) for n in obj.shape)
            return REBUILD_TENSOR_V2, (_Storage(obj), 0, shape, _strides(shape), False, collections.OrderedDict())
        if isinstance(obj, _Storage) and self._persistent is None:
            return LOAD_FROM_BYTES, (legacy_storage_bytes(obj.array),)
        return NotImplemented

    def _save_ref(self, obj: Ref):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_namespace(self, obj: Namespace):
        self._save_ref(_NAMESPACE)
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self.save(dict(obj.values))
        self.write(pickle.BUILD)

    dispatch[Ref] = _save_ref
    dispatch[Namespace] = _save_namespace


_NAMESPACE = Ref("argparse", "Namespace")


def write_nvidia_pickle(path: str | Path, obj: Any) -> None:
    """pickle.dump(obj) as an NVIDIA snapshot: arrays become tensors with embedded storages."""
    with open(path, "wb") as f:
        _Writer(f, 4).dump(obj)


def write_torch_zip(path: str | Path, obj: Any, name: str = "archive") -> None:
    """torch.save(obj) in the zip format: arrays become tensors, one storage record each."""
    path = Path(path)
    storages: list[np.ndarray] = []

    def persistent(o):
        if isinstance(o, _Storage):
            storages.append(o.array)
            key = str(len(storages) - 1)
            return ("storage", _STORAGE_REFS[o.array.dtype], key, "cpu", int(o.array.size))
        return None

    buf = io.BytesIO()
    _Writer(buf, 2, persistent=persistent).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", buf.getvalue())
        z.writestr(f"{name}/byteorder", "little")
        for key, array in enumerate(storages):
            z.writestr(f"{name}/data/{key}", array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
        z.writestr(f"{name}/version", "3\n")


# --- NVIDIA module trees --------------------------------------------------------------------------


def module_tree(
    state: dict[str, np.ndarray],
    buffers: set[str],
    class_of: Callable[[str], str],
    state_of: Callable[[str], dict] = lambda path: {},
) -> Reduce:
    """Nested NVIDIA persistent modules holding the state dict `state` {dotted name: array}.

    buffers: names that are buffers (the rest are parameters). class_of(module path) -> class
    name ('' is the root). state_of(module path) -> extra ``__dict__`` entries (plain attributes,
    ``_init_kwargs``, ...).
    """
    nodes: dict[str, dict] = {"": {}}
    for name in state:
        parts = name.split(".")
        for i in range(1, len(parts)):
            nodes.setdefault(".".join(parts[:i]), {})
    tables = {path: {"_parameters": {}, "_buffers": {}, "_modules": {}} for path in nodes}
    for name, value in state.items():
        path, _, leaf = name.rpartition(".")
        if name in buffers:
            tables[path]["_buffers"][leaf] = value
        else:
            tables[path]["_parameters"][leaf] = Parameter(value)

    def build(path: str) -> Reduce:
        prefix = path + "." if path else ""
        children = [p for p in nodes if p.startswith(prefix) and p != path and "." not in p[len(prefix):]]
        table = tables[path]
        table["_modules"] = {c[len(prefix):]: build(c) for c in children}
        extra = dict(state_of(path))
        if "_init_kwargs" in extra:
            extra["_init_kwargs"] = EasyDict(extra["_init_kwargs"])
        return persistent_module(class_of(path), {"training": False, **table, "_init_args": (), **extra})

    return build("")


def generator_class(path: str) -> str:
    """NVIDIA class name of a generator submodule path ('' -> Generator)."""
    last = path.rsplit(".", 1)[-1]
    if path == "":
        return "Generator"
    if path in ("mapping", "synthesis"):
        return {"mapping": "MappingNetwork", "synthesis": "SynthesisNetwork"}[path]
    if path.count(".") == 1 and path.startswith("synthesis.b"):
        return "SynthesisBlock"
    return {"conv0": "SynthesisLayer", "conv1": "SynthesisLayer", "torgb": "ToRGBLayer", "skip": "Conv2dLayer"}.get(
        last, "FullyConnectedLayer"
    )


def generator_attributes(
    img_resolution: int, architecture: str = "skip", conv_clamp: float | None = None, num_fp16_res: int = 0
) -> Callable[[str], dict]:
    """module path -> the plain attributes stylegan2-ada-pytorch pickles for a Generator's modules.

    Blocks: `resolution`, `architecture`, `use_fp16` (res >= max(2**(log2(R) + 1 - num_fp16_res), 8));
    SynthesisLayer / ToRGBLayer: `conv_clamp`.
    """
    fp16_res = max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)

    def attributes(path: str) -> dict:
        cls = generator_class(path)
        if cls == "SynthesisBlock":
            res = int(path.split(".b")[1])
            return {"resolution": res, "architecture": architecture, "use_fp16": res >= fp16_res}
        if cls in ("SynthesisLayer", "ToRGBLayer"):
            return {"conv_clamp": conv_clamp}
        return {}

    return attributes


def generator_module(
    init_kwargs: dict,
    state: dict[str, np.ndarray],
    buffers: set[str],
    attributes: Callable[[str], dict] = lambda path: {},
    class_name: str = "Generator",
) -> Reduce:
    """An NVIDIA persistent generator: its state dict, `init_kwargs` at the root, `attributes(path)` per module."""

    def state_of(path: str) -> dict:
        extra = dict(attributes(path))
        if path == "":
            extra["_init_kwargs"] = init_kwargs
        return extra

    return module_tree(state, buffers, lambda path: class_name if path == "" else generator_class(path), state_of)


def discriminator_class(path: str) -> str:
    """NVIDIA class name of a discriminator submodule path ('' -> Discriminator)."""
    if path == "":
        return "Discriminator"
    if path == "b4":
        return "DiscriminatorEpilogue"
    if path == "mapping":
        return "MappingNetwork"
    if "." not in path:
        return "DiscriminatorBlock"
    return "FullyConnectedLayer" if path.rsplit(".", 1)[-1] in ("fc", "out") or path.startswith("mapping.") else "Conv2dLayer"


FIR = (np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64).astype(np.float32)


def flatten_variables(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{dotted name: array} of a nested dict."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten_variables(value, name) if isinstance(value, dict) else {name: np.asarray(value)})
    return out


def nvidia_generator_state(variables: dict) -> tuple[dict[str, np.ndarray], set[str]]:
    """NVIDIA generator state dict (with its FIR buffers) and its buffer names, from gvjax variables."""
    params = flatten_variables(variables["params"])
    buffers = flatten_variables(variables["buffers"])
    state = {**params, **buffers}
    layers = {name.rsplit(".", 1)[0] for name in state if name.startswith("synthesis.")}
    for layer in sorted(layers):
        if layer.count(".") == 1 or layer.endswith((".conv0", ".conv1", ".skip")):
            state[f"{layer}.resample_filter"] = FIR
    blocks = {".".join(name.split(".")[:2]) for name in state if name.startswith("synthesis.b")}
    for block in blocks:
        state[f"{block}.resample_filter"] = FIR
    return state, set(buffers) | {n for n in state if n.endswith("resample_filter")}


def nvidia_discriminator_state(
    img_resolution: int, channel_base: int = 32768, channel_max: int = 512, img_channels: int = 3, rng=None
) -> tuple[dict[str, np.ndarray], set[str]]:
    """A random stylegan2-ada-pytorch resnet Discriminator state dict (unconditional) and its buffer names."""
    rng = rng or np.random.default_rng(0)
    ch = lambda r: min(channel_base // r, channel_max)  # noqa: E731
    state: dict[str, np.ndarray] = {}

    def add(name, *shape):
        state[name] = rng.standard_normal(shape, dtype=np.float32)

    res = img_resolution
    while res > 4:
        tmp, out = ch(res), ch(res // 2)
        if res == img_resolution:
            add(f"b{res}.fromrgb.weight", tmp, img_channels, 1, 1)
            add(f"b{res}.fromrgb.bias", tmp)
        add(f"b{res}.conv0.weight", tmp, tmp, 3, 3)
        add(f"b{res}.conv0.bias", tmp)
        state[f"b{res}.conv0.resample_filter"] = FIR
        add(f"b{res}.conv1.weight", out, tmp, 3, 3)
        add(f"b{res}.conv1.bias", out)
        state[f"b{res}.conv1.resample_filter"] = FIR
        add(f"b{res}.skip.weight", out, tmp, 1, 1)
        state[f"b{res}.skip.resample_filter"] = FIR
        state[f"b{res}.resample_filter"] = FIR
        res //= 2
    c4 = ch(4)
    add("b4.conv.weight", c4, c4 + 1, 3, 3)
    add("b4.conv.bias", c4)
    add("b4.fc.weight", c4, c4 * 16)
    add("b4.fc.bias", c4)
    add("b4.out.weight", 1, c4)
    add("b4.out.bias", 1)
    return state, {n for n in state if n.endswith("resample_filter")}
