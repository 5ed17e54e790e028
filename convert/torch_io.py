"""Read PyTorch checkpoints and NVIDIA network pickles without torch, into numpy.

Three layouts, told apart by their first bytes:

* zip (``torch.save`` since 1.6): ``<prefix>/data.pkl`` is the object pickle; its persistent ids
  ``('storage', storage_type, key, location, numel)`` point at raw bytes in ``<prefix>/data/<key>``,
  stored in the byte order named by ``<prefix>/byteorder`` (little when absent).
* legacy (``_use_new_zipfile_serialization=False``): pickles of the magic number, the protocol
  version and a sys-info dict, then the object pickle with persistent ids ``('storage',
  storage_type, root_key, location, numel, view_metadata)``, then a pickled list of storage keys,
  then for each key an int64 element count and the raw bytes (always little-endian).
* a plain pickle (NVIDIA network pickles): tensors embed their storage as
  ``torch.storage._load_from_bytes(b)``, where ``b`` is a legacy-format file of one storage.

Every pickle goes through `SafeUnpickler`; tensors come back as C-contiguous ``numpy.ndarray``
(bfloat16 as ``ml_dtypes.bfloat16``): a tensor that is its whole storage is a read-only view of
the bytes read from the file (each checkpoint byte is held once), any other view a writable copy.
NVIDIA modules come back as `PersistentObject` records.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from gvjax.convert.safe_pickle import (
    CorruptCheckpointError,
    PersistentObject,
    PickledArray,
    SafeUnpickler,
    StoragePlaceholder,
    TorchDtype,
    UnsafePickleError,
    storage_dtype,
)
from gvjax.errors import GvjaxError

__all__ = [
    "load_torch_file",
    "module_state_dict",
    "module_attributes",
    "module_buffer_names",
    "PersistentObject",
    "CheckpointNotFoundError",
    "TruncatedCheckpointError",
    "NotACheckpointError",
    "CorruptCheckpointError",
    "UnsafePickleError",
]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointNotFoundError(GvjaxError):
    """The checkpoint path does not exist, is not a file, or cannot be read."""


class TruncatedCheckpointError(CorruptCheckpointError):
    """The checkpoint ends early (cut-off download or copy)."""


class NotACheckpointError(GvjaxError):
    """The file is neither a torch zip nor a pickle."""


# --- public API ---------------------------------------------------------------------------------


def load_torch_file(path: str | Path) -> Any:
    """Load a torch checkpoint (zip or legacy) or a plain/NVIDIA pickle, never running its code.

    Returns the unpickled object: tensors as numpy arrays, NVIDIA modules as `PersistentObject`,
    ``torch.Size`` as tuple, torch dtypes as `TorchDtype`. Raises a `GvjaxError` subclass with a
    one-line message for a missing, truncated, foreign or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(_ZIP_MAGIC):
            return _load_zip(path)
        if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
            with open(path, "rb") as f:  # streamed: the file's bytes are never all in memory at once
                return _load_pickle_stream(f)
    except OSError as exc:
        raise CheckpointNotFoundError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except GvjaxError as exc:
        raise type(exc)(f"{path.name}: {exc}") from None
    except RecursionError:
        raise CorruptCheckpointError(f"{path.name}: checkpoint is nested too deeply") from None
    raise NotACheckpointError(f"not a PyTorch checkpoint or pickle: {path.name}")


def module_state_dict(obj: PersistentObject) -> dict[str, np.ndarray]:
    """``state_dict()`` of an NVIDIA persistent module: {dotted name: array}, in torch's order.

    Own parameters, own persistent buffers (skipping ``_non_persistent_buffers_set`` when present;
    None entries skipped), then each child in ``_modules``, recursively.
    """
    out: dict[str, np.ndarray] = {}
    for path, module in _walk_modules(obj):
        prefix = f"{path}." if path else ""
        state = module.state
        skip = state.get("_non_persistent_buffers_set") or ()
        for name, value in _tensor_items(state, "_parameters"):
            out[prefix + name] = value
        for name, value in _tensor_items(state, "_buffers"):
            if name not in skip:
                out[prefix + name] = value
    return out


def module_buffer_names(obj: PersistentObject) -> set[str]:
    """Names in `module_state_dict(obj)` that are buffers (the rest are parameters)."""
    out = set()
    for path, module in _walk_modules(obj):
        prefix = f"{path}." if path else ""
        skip = module.state.get("_non_persistent_buffers_set") or ()
        out.update(prefix + name for name, _ in _tensor_items(module.state, "_buffers") if name not in skip)
    return out


def module_attributes(obj: PersistentObject) -> dict[str, dict]:
    """{submodule path ('' for the root): plain attributes} of an NVIDIA persistent module.

    Each entry holds the module's non-underscore attributes whose values are plain data (None,
    bool, int, float, str, numpy scalars -> python, numeric numpy arrays -> nested lists,
    lists/tuples of those, dicts keeping their plain entries), plus
    ``class_name``, ``init_args`` (list) and ``init_kwargs`` (dict; EasyDict is already dict).
    """
    out: dict[str, dict] = {}
    for path, module in _walk_modules(obj):
        attrs = {}
        for key, value in module.state.items():
            if isinstance(key, str) and not key.startswith("_"):
                plain = _plain(value)
                if plain is not _NOT_PLAIN:
                    attrs[key] = plain
        attrs["class_name"] = module.class_name
        init_args = _plain(module.state.get("_init_args", ()))
        init_kwargs = _plain(module.state.get("_init_kwargs", {}))
        attrs["init_args"] = list(init_args) if isinstance(init_args, (list, tuple)) else []
        attrs["init_kwargs"] = init_kwargs if isinstance(init_kwargs, dict) else {}
        out[path] = attrs
    return out


# --- walking NVIDIA modules -----------------------------------------------------------------------


def _walk_modules(obj: PersistentObject, path: str = ""):
    """Yield (dotted path, PersistentObject) for obj and its descendants, parents first."""
    if not isinstance(obj, PersistentObject):
        raise CorruptCheckpointError(f"expected an NVIDIA persistent module at '{path}', got {type(obj).__name__}")
    yield path, obj
    children = obj.state.get("_modules") or {}
    if not isinstance(children, dict):
        raise CorruptCheckpointError(f"module '{path}' has malformed _modules")
    for name, child in children.items():
        if child is not None:
            yield from _walk_modules(child, f"{path}.{name}" if path else str(name))


def _tensor_items(state: dict, field: str):
    """Yield (name, array) of a module's ``_parameters`` or ``_buffers``, skipping None."""
    table = state.get(field) or {}
    if not isinstance(table, dict):
        raise CorruptCheckpointError(f"malformed {field}")
    for name, value in table.items():
        if value is None:
            continue
        if not isinstance(value, np.ndarray):
            raise CorruptCheckpointError(f"{field[1:-1]} '{name}' is not a tensor ({type(value).__name__})")
        yield name, value


_NOT_PLAIN = object()


def _plain(value: Any) -> Any:
    """value as plain python data (numpy scalars -> python), or _NOT_PLAIN."""
    if isinstance(value, np.generic):  # before float: numpy.float64 subclasses float
        return value.item() if value.dtype.kind in "biuf" else _NOT_PLAIN
    if isinstance(value, PickledArray):  # numeric by construction; StyleGAN3's sizes are [w, h] arrays
        return _NOT_PLAIN if value.array is None or value.array.dtype.kind not in "biuf" else value.array.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        if any(v is _NOT_PLAIN for v in items):
            return _NOT_PLAIN
        return type(value)(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):  # keeps the plain entries (init_kwargs stay usable)
        items = {k: _plain(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _NOT_PLAIN}
    return _NOT_PLAIN


# --- plain and legacy pickle streams ------------------------------------------------------------


def _unpickle(f: io.BytesIO, **hooks: Callable) -> Any:
    """One pickle from f through SafeUnpickler, with pickle's errors turned into GvjaxErrors."""
    try:
        return SafeUnpickler(f, load_from_bytes=_storage_from_bytes, **hooks).load()
    except GvjaxError:
        raise
    except EOFError:
        raise TruncatedCheckpointError("checkpoint is truncated (pickle data ends early)") from None
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise TruncatedCheckpointError("checkpoint is truncated (pickle data ends early)") from None
        raise CorruptCheckpointError(f"corrupt pickle data: {_one_line(exc)}") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError, struct.error) as exc:
        raise CorruptCheckpointError(f"corrupt pickle data: {type(exc).__name__}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one short line."""
    return " ".join(str(exc).split())[:200]


def _load_pickle_stream(f: BinaryIO) -> Any:
    """A legacy torch.save stream if it starts with the magic number, else one plain pickle."""
    first = _unpickle(f)
    if type(first) is int and first == LEGACY_MAGIC:
        return _read_legacy_after_magic(f)
    return first


def _storage_from_bytes(blob: Any) -> np.ndarray | StoragePlaceholder:
    """torch.storage._load_from_bytes replacement: a legacy-format file holding one storage."""
    if not isinstance(blob, (bytes, bytearray)):
        raise CorruptCheckpointError("torch.storage._load_from_bytes expects bytes")
    f = io.BytesIO(blob)
    if _unpickle(f) != LEGACY_MAGIC:
        raise CorruptCheckpointError("embedded storage is not in torch's legacy format")
    storage = _read_legacy_after_magic(f, buffer=blob)
    if not isinstance(storage, (np.ndarray, StoragePlaceholder)):
        raise CorruptCheckpointError("embedded storage bytes do not hold a storage")
    return storage


def _read_legacy_after_magic(f: BinaryIO, buffer: bytes | None = None) -> Any:
    """The rest of a legacy torch.save stream, positioned just after the magic number pickle.

    The storage bytes follow the object pickle, so the object pickle is read twice: first with
    placeholder storages to learn each key's dtype and size, then with the decoded storages.
    buffer: the bytes `f` reads from, if any; storages are then read-only views of it (no copy).
    """
    version = _unpickle(f)
    if version != LEGACY_PROTOCOL:
        raise CorruptCheckpointError(f"unsupported legacy torch.save protocol version {version!r:.20}")
    _unpickle(f)  # sys_info: {'protocol_version', 'little_endian', 'type_sizes'}; data is little-endian regardless
    main_start = f.tell()
    layouts: dict[str, tuple[np.dtype, int]] = {}
    _unpickle(f, persistent_load=lambda pid: _legacy_placeholder(pid, layouts))
    keys = _unpickle(f)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CorruptCheckpointError("legacy checkpoint has a malformed storage key list")
    storages = {key: _read_legacy_storage(f, key, layouts, buffer) for key in keys}
    f.seek(main_start)
    return _unpickle(f, persistent_load=lambda pid: _legacy_storage(pid, storages))


def _legacy_pid(pid: Any) -> tuple[TorchDtype, str, int, Any]:
    """Check a legacy persistent id; returns (storage type, root key, numel, view metadata)."""
    if isinstance(pid, tuple) and pid and pid[0] == "module":
        raise UnsafePickleError("refused persistent id 'module': the checkpoint pickles a whole torch.nn module")
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
        raise UnsafePickleError(f"refused persistent id {pid!r:.60}: not a torch storage")
    _, kind, key, _location, numel, view = pid
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
        raise CorruptCheckpointError(f"malformed storage id {pid!r:.80}")
    return kind, key, numel, view


def _legacy_placeholder(pid: Any, layouts: dict) -> StoragePlaceholder:
    """First pass: record each root storage's (dtype, numel); return a placeholder."""
    kind, key, numel, _view = _legacy_pid(pid)
    dtype = storage_dtype(kind)
    layouts[key] = (dtype, numel)
    return StoragePlaceholder(dtype, numel)


def _legacy_storage(pid: Any, storages: dict[str, np.ndarray]) -> np.ndarray:
    """Second pass: the decoded storage of a persistent id (a slice of it for old storage views)."""
    _kind, key, _numel, view = _legacy_pid(pid)
    storage = storages.get(key)
    if storage is None:
        raise CorruptCheckpointError(f"storage '{key}' is missing from the checkpoint")
    if view is None:
        return storage
    if not (isinstance(view, tuple) and len(view) == 3):
        raise CorruptCheckpointError(f"malformed storage view {view!r:.60}")
    _view_key, offset, size = view
    if not (isinstance(offset, int) and isinstance(size, int) and 0 <= offset and 0 <= size and offset + size <= storage.size):
        raise CorruptCheckpointError(f"storage view {view!r:.60} exceeds storage '{key}'")
    return storage[offset : offset + size]


def _read_legacy_storage(f: BinaryIO, key: str, layouts: dict, buffer: bytes | None = None) -> np.ndarray:
    """Read one storage record (int64 LE count, then count little-endian elements).

    With `buffer` (the bytes behind `f`) the storage is a read-only view of it, not a copy: NVIDIA
    pickles embed every storage as such bytes, which the unpickler keeps alive anyway.
    """
    if key not in layouts:
        raise CorruptCheckpointError(f"storage '{key}' is listed but never used")
    dtype, numel = layouts[key]
    head = f.read(8)
    if len(head) < 8:
        raise TruncatedCheckpointError("checkpoint is truncated (storage data ends early)")
    (count,) = struct.unpack("<q", head)
    if count != numel:
        raise CorruptCheckpointError(f"storage '{key}' holds {count} elements, expected {numel}")
    nbytes = count * dtype.itemsize
    if buffer is not None:
        start = f.tell()
        raw = memoryview(buffer)[start : start + nbytes]
        f.seek(start + len(raw))
    else:
        raw = f.read(nbytes)
    if len(raw) < nbytes:
        raise TruncatedCheckpointError("checkpoint is truncated (storage data ends early)")
    return _decode(raw, dtype, "little")


def _decode(raw: bytes | memoryview, dtype: np.dtype, byteorder: str) -> np.ndarray:
    """1-D native-endian array of raw storage bytes in the given byte order."""
    if byteorder == "big" and dtype.itemsize > 1:
        return np.frombuffer(raw, dtype.newbyteorder(">")).astype(dtype)
    return np.frombuffer(raw, dtype)


# --- zip format ---------------------------------------------------------------------------------


def _load_zip(path: Path) -> Any:
    """Load a torch.save zip archive."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise TruncatedCheckpointError("checkpoint is truncated (zip archive is incomplete)") from None
    with archive:
        try:
            return _load_zip_archive(archive)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
            raise CorruptCheckpointError(f"corrupt zip archive: {_one_line(exc)}") from None


def _load_zip_archive(archive: zipfile.ZipFile) -> Any:
    """Unpickle <prefix>/data.pkl, reading storages from <prefix>/data/<key>."""
    names = set(archive.namelist())
    pickles = sorted(n for n in names if n.count("/") == 1 and n.endswith("/data.pkl"))
    if not pickles:
        raise NotACheckpointError("zip file has no <name>/data.pkl: not a torch.save archive")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CorruptCheckpointError(f"unknown byteorder record {byteorder!r:.20}")
    storages: dict[str, np.ndarray] = {}

    def resolve(pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"refused persistent id {pid!r:.60}: not a torch storage")
        _, kind, key, _location, numel = pid
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CorruptCheckpointError(f"malformed storage id {pid!r:.80}")
        if key not in storages:
            storages[key] = _read_zip_storage(archive, prefix + "data/" + key, storage_dtype(kind), numel, byteorder)
        return storages[key]

    return _unpickle(io.BytesIO(archive.read(pickles[0])), persistent_load=resolve)


def _read_zip_storage(archive: zipfile.ZipFile, name: str, dtype: np.dtype, numel: int, byteorder: str) -> np.ndarray:
    """One storage record of a zip archive as a 1-D array of `numel` elements."""
    try:
        raw = archive.read(name)
    except KeyError:
        raise CorruptCheckpointError(f"storage record {name} is missing") from None
    nbytes = numel * dtype.itemsize
    if len(raw) < nbytes:
        raise CorruptCheckpointError(f"storage record {name} has {len(raw)} bytes, expected {nbytes}")
    return _decode(memoryview(raw)[:nbytes], dtype, byteorder)  # a view: no copy
