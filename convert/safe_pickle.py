"""A restricted unpickler for PyTorch checkpoints and NVIDIA network pickles (torch and TensorFlow).

Unpickling runs code: every global a pickle names is imported and may be called. `SafeUnpickler`
resolves globals only through an explicit table, `ALLOWED_GLOBALS` for torch files or
`TF_ALLOWED_GLOBALS` for TensorFlow network pickles, which maps each permitted name to a
replacement written here (plain Python / numpy; torch, dnnlib, tensorflow and torch_utils are never
imported). Any other global raises `UnsafePickleError` naming it, before anything is called.

What the replacements build:

* torch tensors (``torch._utils._rebuild_tensor_v2`` & co.) -> C-contiguous ``numpy.ndarray``s:
  read-only views of the storage when a tensor is its whole storage, else writable copies;
  parameters -> their data array. Storages come from the caller (`SafeUnpickler`'s
  ``persistent_load`` / ``load_from_bytes`` hooks, see ``torch_io``).
* torch storage classes / dtypes (``torch.FloatStorage``, ``torch.float32``) -> `TorchDtype` records.
* ``torch.Size`` -> ``tuple``; ``collections.OrderedDict`` -> itself; ``dnnlib.util.EasyDict`` -> ``dict``;
  ``_codecs.encode(str, 'latin1')`` (how protocol 2 pickles ``bytes``) -> ``bytes``.
* ``argparse.Namespace`` (the ``args`` of rosinality training checkpoints) -> `PickledNamespace`,
  a record of its string-keyed attributes.
* ``torch_utils.persistence._reconstruct_persistent_obj`` -> `PersistentObject` (a data record; the
  embedded ``module_src`` is dropped unread, never executed).
* numpy scalars (``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar`` with a
  ``numpy.dtype``) -> numpy scalars of plain numeric dtypes only.

Admitted in a torch-format pickle only after it has named NVIDIA's persistence loader
(``_reconstruct_persistent_obj``, `UNLOCKED_BY`): numpy arrays (``numpy.ndarray`` /
``numpy.core.multiarray._reconstruct``, `NUMPY_ARRAY_GLOBALS`), decoded as for TensorFlow pickles
below. StyleGAN3 modules keep small numeric arrays as attributes (sizes, sampling rates); a plain
torch checkpoint never needs them, and one that asks for them is refused.

Not allowed on purpose in torch files: every ``torch.nn`` class (a whole pickled module),
TorchScript (``__torch__``) classes.

TensorFlow network pickles (`TF_ALLOWED_GLOBALS`, nothing of torch) allow only:

* ``dnnlib.tflib.network.Network`` (and ProGAN's ``tfutil.Network``) -> `TFNetwork`, a record of
  the pickled state dict (``build_module_src`` is kept as a string, never executed);
* numpy arrays, ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` + BUILD ->
  `PickledArray`, decoded by `array_from_state`: plain numeric dtypes only (object arrays are
  refused at their ``numpy.dtype``), the byte count checked against shape and dtype;
* ``numpy.dtype``, numpy scalars, ``_codecs.encode`` and ``EasyDict`` as above.

bfloat16 storages decode to ``ml_dtypes.bfloat16`` arrays (numpy has no bfloat16; ml_dtypes is a
dependency of jax); ``.astype(numpy.float32)`` is exact.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import pickle
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gvjax.errors import GvjaxError

try:  # numpy has no bfloat16; ml_dtypes (a jax dependency) provides one.
    import ml_dtypes

    _BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - jax always installs ml_dtypes
    _BFLOAT16 = None


class UnsafePickleError(GvjaxError):
    """A pickle asked for a global (or persistent id) that is not on the allow-list."""


class CorruptCheckpointError(GvjaxError):
    """A checkpoint's content is malformed (bad tensor view, wrong argument types, ...)."""


@dataclasses.dataclass(frozen=True)
class TorchDtype:
    """A torch element type seen in a pickle (``torch.float16`` or ``torch.HalfStorage``).

    name: torch's name ('float16', 'HalfStorage'); dtype: the numpy dtype of one element, or None
    for bfloat16 when ml_dtypes is missing.
    """

    name: str
    dtype: np.dtype | None


@dataclasses.dataclass(frozen=True)
class PersistentObject:
    """An object pickled by NVIDIA's ``torch_utils.persistence`` (a network module), as data.

    class_name: e.g. 'SynthesisLayer'. module_name: '' (persistence metadata records only the
    module's source text, which is discarded). state: the object's ``__dict__`` (for an
    ``nn.Module``: ``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, attributes...).
    """

    class_name: str
    module_name: str
    state: dict


@dataclasses.dataclass(frozen=True)
class StoragePlaceholder:
    """Stands in for a storage whose bytes are not read yet (first pass of the legacy reader).

    Tensors rebuilt from a placeholder are the placeholder itself.
    """

    dtype: np.dtype | None
    numel: int


# --- element types -------------------------------------------------------------------------------

_NUMPY_OF_TORCH = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": _BFLOAT16,
    "float64": np.dtype(np.float64),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}
_TORCH_DTYPE_ALIASES = {
    "float": "float32",
    "half": "float16",
    "double": "float64",
    "long": "int64",
    "int": "int32",
    "short": "int16",
}
_STORAGE_CLASSES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",  # raw bytes
}


def storage_dtype(kind: TorchDtype) -> np.dtype:
    """numpy dtype of one element of a storage type / torch dtype record."""
    if not isinstance(kind, TorchDtype):
        raise CorruptCheckpointError(f"expected a torch storage type, got {type(kind).__name__}")
    if kind.dtype is None:
        raise CorruptCheckpointError(f"torch.{kind.name} needs the ml_dtypes package (bfloat16)")
    return kind.dtype


# --- tensors ------------------------------------------------------------------------------------


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    """A tuple of non-negative python ints, or CorruptCheckpointError."""
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise CorruptCheckpointError(f"bad tensor {what}: {value!r:.80}")
    return tuple(value)


def _is_whole_c_order(storage_size: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """Whether (offset, size, stride) covers all of a storage of `storage_size` elements in C order."""
    if offset != 0 or math.prod(size) != storage_size:
        return False
    step = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n > 1 and s != step:
            return False
        step *= n
    return True


def tensor_from_storage(storage: Any, offset: Any, size: Any, stride: Any) -> np.ndarray | StoragePlaceholder:
    """The tensor (offset, size, stride in elements) of a 1-D storage array, C-contiguous, shape `size`.

    A tensor that is its whole storage in C order (every parameter of a saved model) is the
    storage reshaped, read-only: no copy, so a checkpoint is held in memory once. Any other view
    (a slice, a transpose, one of several tensors sharing a storage) is a writable copy. The
    view is bounds-checked against the storage before ``as_strided`` touches memory.
    """
    if isinstance(storage, StoragePlaceholder):
        return storage
    if not isinstance(storage, np.ndarray) or storage.ndim != 1 or not storage.flags.c_contiguous:
        raise CorruptCheckpointError(f"tensor storage is not a storage: {type(storage).__name__}")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    (offset,) = _int_tuple((offset,), "offset")
    if len(size) != len(stride):
        raise CorruptCheckpointError(f"tensor size {size} and stride {stride} differ in length")
    if math.prod(size) == 0:
        return np.empty(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise CorruptCheckpointError(
            f"tensor view (offset {offset}, size {size}, stride {stride}) exceeds its storage "
            f"of {storage.size} elements"
        )
    if _is_whole_c_order(storage.size, offset, size, stride):
        whole = storage.reshape(size)
        whole.flags.writeable = False
        return whole
    item = storage.itemsize
    view = as_strided(storage[offset:], size, tuple(s * item for s in stride), writeable=False)
    return np.array(view, copy=True, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride):
    """Replacement for torch._utils._rebuild_tensor."""
    return tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *metadata):
    """Replacement for torch._utils._rebuild_tensor_v2 (grad flag, hooks, metadata ignored)."""
    return tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """Replacement for torch._utils._rebuild_parameter: a parameter is its data array."""
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    """Replacement for torch._utils._rebuild_parameter_with_state (extra state dropped)."""
    return data


def _torch_size(dims=()):
    """Replacement for torch.Size: a tuple of ints."""
    return _int_tuple(tuple(dims), "Size")


# --- numpy scalars ------------------------------------------------------------------------------


class NumpyDtypeSpec:
    """What a pickled ``numpy.dtype`` becomes: a plain numeric dtype, set up by our own code.

    Pickles build dtypes as ``numpy.dtype('f8', False, True)`` followed by a BUILD with a state
    tuple; `__setstate__` here accepts only the byte-order field of that tuple, so numpy's own
    ``dtype.__setstate__`` never sees pickle data. ``.dtype`` is the resulting numpy dtype.
    """

    __slots__ = ("dtype",)

    def __init__(self, spec: Any, align: Any = False, copy: Any = False):
        if not isinstance(spec, str):
            raise UnsafePickleError(f"refused numpy.dtype({spec!r:.40}): only plain numeric dtypes are allowed")
        try:
            dtype = np.dtype(spec)
        except TypeError:
            raise UnsafePickleError(f"refused numpy.dtype({spec!r:.40}): not a numpy dtype") from None
        if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
            raise UnsafePickleError(f"refused numpy.dtype({spec!r:.40}): only plain numeric dtypes are allowed")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) >= 5 and state[1] in ("<", ">", "|", "=")
        if not ok or any(part is not None for part in state[2:5]):
            raise UnsafePickleError(f"refused numpy dtype state {state!r:.80}: only plain numeric dtypes are allowed")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])

    def __repr__(self) -> str:
        return f"NumpyDtypeSpec({self.dtype.str!r})"


def _numpy_scalar(dtype: Any, data: Any = None) -> np.generic:
    """Replacement for numpy.core.multiarray.scalar: decode one numeric value from its bytes."""
    if not isinstance(dtype, NumpyDtypeSpec) or not isinstance(data, bytes):
        raise UnsafePickleError("refused numpy scalar: only plain numeric scalars are allowed")
    if len(data) != dtype.dtype.itemsize:
        raise CorruptCheckpointError(f"numpy scalar of {dtype.dtype} has {len(data)} bytes")
    native = dtype.dtype.newbyteorder("=")
    return np.frombuffer(data, dtype.dtype).astype(native)[0]


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Replacement for _codecs.encode, which protocol-2 pickles (torch.save) use for bytes.

    Only the form pickle writes, ``encode(str, 'latin1')``, is accepted.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode(..., {encoding!r:.20}): only latin1 byte strings are allowed")
    return text.encode("latin1")


# --- numpy arrays (TensorFlow network pickles) ----------------------------------------------------


class NumpyNdarray:
    """What the global ``numpy.ndarray`` becomes: only a marker for `_reconstruct_array` (never instantiated)."""


class PickledArray:
    """What a pickled ``numpy.ndarray`` becomes: ``array``, decoded by `array_from_state` at BUILD.

    numpy pickles an array as ``_reconstruct(numpy.ndarray, (0,), b'b')`` followed by BUILD with
    ``(version, shape, dtype, is_fortran, raw bytes)``; numpy's own ``__setstate__`` never sees it.
    """

    __slots__ = ("array",)

    def __init__(self):
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        self.array = array_from_state(state)

    def __repr__(self) -> str:
        return "PickledArray(unset)" if self.array is None else f"PickledArray({self.array.dtype}, {list(self.array.shape)})"


def _reconstruct_array(subtype: Any, shape: Any = (0,), typecode: Any = b"b") -> PickledArray:
    """Replacement for numpy.core.multiarray._reconstruct: only plain ``numpy.ndarray``s."""
    if subtype is not NumpyNdarray or shape != (0,) or typecode not in (b"b", "b"):
        raise UnsafePickleError("refused numpy _reconstruct: only plain numpy.ndarray objects are allowed")
    return PickledArray()


def array_from_state(state: Any) -> np.ndarray:
    """A read-only numeric array from numpy's pickled array state ``([version,] shape, dtype, is_fortran, data)``.

    The dtype must be a `NumpyDtypeSpec` (plain numeric) and `data` raw bytes of exactly
    ``prod(shape) * itemsize``; the result views those bytes (no copy) in native byte order.
    """
    if isinstance(state, tuple) and len(state) == 5 and isinstance(state[0], int):
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise CorruptCheckpointError(f"malformed numpy array state {state!r:.80}")
    shape, spec, fortran, data = state
    shape = _int_tuple(shape, "shape")
    if not isinstance(spec, NumpyDtypeSpec):
        raise UnsafePickleError(f"refused numpy array of {type(spec).__name__}: only plain numeric arrays are allowed")
    if not isinstance(data, (bytes, bytearray)) or not isinstance(fortran, bool):
        raise UnsafePickleError(f"refused numpy array data of {type(data).__name__}: only raw numeric bytes are allowed")
    dtype = spec.dtype
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise CorruptCheckpointError(
            f"numpy array of shape {list(shape)} and dtype {dtype} needs {math.prod(shape) * dtype.itemsize} bytes, has {len(data)}"
        )
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
        array.flags.writeable = False
    return array


class TFNetwork:
    """What a pickled ``dnnlib.tflib.network.Network`` becomes: `state`, its pickled state dict, as data.

    Pickled as ``NEWOBJ(Network, ())`` then ``BUILD(state)``; TF's own ``__setstate__`` would
    execute ``state['build_module_src']``, this one only keeps the dict. `class_name` names the
    pickled class (ProGAN's is ``tfutil.Network``).
    """

    class_name = "dnnlib.tflib.network.Network"

    def __new__(cls, *args):  # NEWOBJ does not call __init__
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CorruptCheckpointError(f"{self.class_name} state is not a dict")
        self.state = state

    def __repr__(self) -> str:
        return f"TFNetwork({self.state.get('name')!r:.40}, {self.state.get('build_func_name')!r:.40})"


class TFUtilNetwork(TFNetwork):
    """``tfutil.Network``, the network class of Progressive GAN pickles."""

    class_name = "tfutil.Network"


# --- argparse.Namespace -------------------------------------------------------------------------


class PickledNamespace:
    """What a pickled ``argparse.Namespace`` becomes: ``values``, its attributes as a dict.

    Pickle writes a Namespace as ``NEWOBJ(argparse.Namespace, ())`` then ``BUILD(state)``; this
    class takes no constructor arguments and keeps only string-keyed entries of the state.
    """

    __slots__ = ("values",)

    def __new__(cls):
        obj = super().__new__(cls)
        obj.values = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CorruptCheckpointError("argparse.Namespace state is not a dict")
        self.values = {k: v for k, v in state.items() if isinstance(k, str)}

    def __repr__(self) -> str:
        return f"PickledNamespace({self.values!r:.80})"


# --- NVIDIA persistence -------------------------------------------------------------------------


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    """Replacement for torch_utils.persistence._reconstruct_persistent_obj; never runs module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise CorruptCheckpointError("malformed NVIDIA persistent object (expected type 'class' with a class_name)")
    state = meta.get("state")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"persistent object {meta['class_name']} has a non-dict state")
    return PersistentObject(class_name=meta["class_name"], module_name="", state=state)


# --- the allow-list -----------------------------------------------------------------------------

#: Marker in the table for globals whose replacement the caller supplies (see SafeUnpickler).
LOAD_FROM_BYTES = "torch.storage._load_from_bytes"


def _build_allowed() -> dict[tuple[str, str], Any]:
    """(module, name) -> replacement object; the only globals a pickle may name."""
    table: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("argparse", "Namespace"): PickledNamespace,
        ("_codecs", "encode"): _codecs_encode,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch.storage", "_load_from_bytes"): LOAD_FROM_BYTES,
        ("torch", "Size"): _torch_size,
        ("numpy", "dtype"): NumpyDtypeSpec,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("dnnlib.util", "EasyDict"): dict,
        ("dnnlib", "EasyDict"): dict,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    }
    for cls, dtype_name in _STORAGE_CLASSES.items():
        table[("torch", cls)] = TorchDtype(cls, _NUMPY_OF_TORCH[dtype_name])
    for name, np_dtype in _NUMPY_OF_TORCH.items():
        table[("torch", name)] = TorchDtype(name, np_dtype)
    for alias, name in _TORCH_DTYPE_ALIASES.items():
        table[("torch", alias)] = TorchDtype(name, _NUMPY_OF_TORCH[name])
    return table


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _build_allowed()

#: Plain numeric numpy arrays (`PickledArray`, decoded by `array_from_state`).
NUMPY_ARRAY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy", "ndarray"): NumpyNdarray,
}

#: {allowed global: the globals a pickle may name once it has named that one}. NVIDIA network
#: pickles (their first global is the persistence loader) may hold numpy arrays in module state.
UNLOCKED_BY: dict[tuple[str, str], dict[tuple[str, str], Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): NUMPY_ARRAY_GLOBALS,
}

#: The only globals a TensorFlow network pickle may name (nothing of torch).
TF_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("tfutil", "Network"): TFUtilNetwork,
    **NUMPY_ARRAY_GLOBALS,
    **{key: ALLOWED_GLOBALS[key] for key in (
        ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"), ("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict"),
    )},
}


def refusal_message(module: str, name: str) -> str:
    """The one-line reason a global is refused."""
    full = f"{module}.{name}"
    if module == "torch.nn" or module.startswith("torch.nn."):
        return (
            f"refused to load '{full}': the checkpoint pickles a whole torch.nn module; "
            "only tensors and state dicts can be read (save model.state_dict() instead)"
        )
    if module == "__torch__" or module.startswith("__torch__."):
        return f"refused to load '{full}': TorchScript archives are not supported"
    if (module, name) in NUMPY_ARRAY_GLOBALS:
        return f"refused to load '{full}': numpy arrays are read only inside NVIDIA network pickles"
    return f"refused to load '{full}': not an allowed global in a checkpoint"


class SafeUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves globals only through `allowed` (`ALLOWED_GLOBALS` by default).

    persistent_load(pid) -> storage: resolves persistent ids (torch storages); None refuses all.
    load_from_bytes(b: bytes) -> storage: decodes ``torch.storage._load_from_bytes`` blobs;
    None refuses that global. allowed: `TF_ALLOWED_GLOBALS` for TensorFlow network pickles.
    unlocks: `UNLOCKED_BY` by default; once this pickle has named one of its keys (an allowed
    global), the globals it maps to are allowed too, for the rest of this pickle.
    """

    def __init__(
        self,
        file,
        *,
        persistent_load: Callable[[Any], Any] | None = None,
        load_from_bytes: Callable[[bytes], Any] | None = None,
        allowed: dict[tuple[str, str], Any] = ALLOWED_GLOBALS,
        unlocks: dict[tuple[str, str], dict[tuple[str, str], Any]] = UNLOCKED_BY,
    ):
        super().__init__(file)
        self._resolve_pid = persistent_load
        self._load_from_bytes = load_from_bytes
        self._allowed = allowed
        self._unlocks = unlocks

    def find_class(self, module: str, name: str) -> Any:
        """Return the replacement for an allowed global, else raise UnsafePickleError."""
        replacement = self._allowed.get((module, name))
        if replacement is LOAD_FROM_BYTES:
            replacement = self._load_from_bytes
        if replacement is None:
            raise UnsafePickleError(refusal_message(module, name))
        if (module, name) in self._unlocks:
            self._allowed = {**self._allowed, **self._unlocks[(module, name)]}
        return replacement

    def persistent_load(self, pid: Any) -> Any:
        """Resolve a persistent id through the caller's hook; refuse when there is none."""
        if self._resolve_pid is None:
            raise UnsafePickleError(f"refused persistent id {pid!r:.60}: not expected in this pickle")
        return self._resolve_pid(pid)
