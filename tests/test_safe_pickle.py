"""Malicious pickles: load_torch_file must refuse them before any payload runs.

Every payload below would create a marker file in tmp_path if unpickled normally. Each test
first proves that with `run_unrestricted` (an ordinary unpickler that imports the payload's
globals for real and stubs everything else), then checks that load_torch_file raises
UnsafePickleError naming the global and that a fresh marker is never created.
"""

import builtins
import io
import os
import pickle
import pickletools
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import STYLEGAN2

from gvjax.convert.safe_pickle import ALLOWED_GLOBALS, TF_ALLOWED_GLOBALS, CorruptCheckpointError, SafeUnpickler, UnsafePickleError
from gvjax.convert.torch_io import NotACheckpointError, load_torch_file
from gvjax.errors import GvjaxError

FORMATS = Path(__file__).parent / "fixtures" / "torch_formats"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --- building pickles -----------------------------------------------------------------------------


class Reduce:
    """Pickles as `fn(*args)`: what a malicious object's __reduce__ returns."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def op_global(module: str, name: str) -> bytes:
    """GLOBAL opcode (valid in every protocol)."""
    return f"c{module}\n{name}\n".encode()


def op_literal(value) -> bytes:
    """Opcodes pushing a plain value (PROTO and STOP stripped)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def op_call(module: str, name: str, *args) -> bytes:
    """Opcodes pushing module.name(*args)."""
    return op_global(module, name) + b"(" + b"".join(op_literal(a) for a in args) + b"tR"


def whole(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def first_mark(data: bytes, start: int = 0) -> int:
    """Offset just after the first MARK of the pickle starting at `start` (parsed, not run)."""
    for op, _arg, pos in pickletools.genops(data[start:]):
        if op.name == "MARK":
            return start + pos + 1
    raise AssertionError("no MARK")


def stop_offset(data: bytes, start: int = 0) -> int:
    """Offset of the STOP opcode of the pickle starting at `start`."""
    for op, _arg, pos in pickletools.genops(data[start:]):
        if op.name == "STOP":
            return start + pos
    raise AssertionError("no STOP")


def splice(data: bytes, at: int, ops: bytes) -> bytes:
    return data[:at] + ops + data[at:]


def rewrite_zip(src: Path, dst: Path, edit) -> None:
    """Copy a torch zip archive, passing <prefix>/data.pkl through edit(bytes) -> bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename, edit(data) if info.filename.endswith("/data.pkl") else data)


# --- payloads -------------------------------------------------------------------------------------


def touch_cmd(marker: Path) -> str:
    return f"touch '{marker}'"


def open_expr(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


PAYLOADS = {
    # name: (global requested, raw opcodes pushing the call)
    "os.system": lambda m: ("os.system", op_call("os", "system", touch_cmd(m))),
    "posix.system": lambda m: ("posix.system", op_call("posix", "system", touch_cmd(m))),
    "subprocess.Popen": lambda m: ("subprocess.Popen", op_call("subprocess", "Popen", ["touch", str(m)])),
    "subprocess.call": lambda m: ("subprocess.call", op_call("subprocess", "call", ["touch", str(m)])),
    "builtins.exec": lambda m: ("builtins.exec", op_call("builtins", "exec", open_expr(m))),
    "builtins.eval": lambda m: ("builtins.eval", op_call("builtins", "eval", open_expr(m))),
}


class _Stub:
    """Stands in for every non-payload global in run_unrestricted."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass


def run_unrestricted(data: bytes, payload_global: str) -> None:
    """Unpickle `data` the unsafe way, importing `payload_global` for real (the control run)."""
    target = tuple(payload_global.rsplit(".", 1))

    class Unrestricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == target:
                return super().find_class(module, name)
            return _Stub

        def persistent_load(self, pid):
            return None

    result = Unrestricted(io.BytesIO(data)).load()
    if isinstance(result, subprocess.Popen):
        result.wait()


def assert_payload_is_live(data: bytes, payload_global: str, marker: Path) -> None:
    """Control: the bytes really run the payload in an ordinary unpickler."""
    assert not marker.exists()
    run_unrestricted(data, payload_global)
    for _ in range(100):  # Popen without wait may lag
        if marker.exists():
            break
        time.sleep(0.02)
    assert marker.exists(), f"payload {payload_global} did not fire: the test would prove nothing"
    marker.unlink()


def assert_refused(path: Path, payload_global: str, marker: Path) -> None:
    with pytest.raises(UnsafePickleError) as info:
        load_torch_file(path)
    msg = str(info.value)
    assert f"'{payload_global}'" in msg and "\n" not in msg, msg
    assert path.name in msg
    time.sleep(0.1)
    assert not marker.exists(), "the payload ran"


# --- direct payloads ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_direct_payload_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    name, ops = PAYLOADS[payload](marker)
    data = whole(ops)
    assert_payload_is_live(data, name, marker)
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    assert_refused(path, name, marker)
    assert f"refused to load '{name}': not an allowed global in a checkpoint" in str(
        pytest.raises(UnsafePickleError, load_torch_file, path).value
    )


@pytest.mark.parametrize(
    "fn, args, name",
    [
        (os.system, ("touch '{m}'",), f"{os.system.__module__}.system"),  # posix.system on Linux
        (subprocess.call, (["touch", "{m}"],), "subprocess.call"),
        (builtins.eval, ("open({m!r}, 'w').close()",), "builtins.eval"),
    ],
)
def test_reduce_nested_in_innocent_dict_is_refused(tmp_path, fn, args, name):
    # An ordinary pickler writing an object whose __reduce__ returns the payload.
    marker = tmp_path / "pwned"
    args = tuple(a.format(m=str(marker)) if isinstance(a, str) else [s.format(m=str(marker)) for s in a] for a in args)
    innocent = {"weights": [1.0, 2.0], "config": {"layers": [3, {"deep": Reduce(fn, *args)}]}, "name": "ok"}
    data = pickle.dumps(innocent, protocol=4)
    assert_payload_is_live(data, name, marker)
    path = tmp_path / "nested.pkl"
    path.write_bytes(data)
    assert_refused(path, name, marker)


# --- payloads hidden in real checkpoints ----------------------------------------------------------


@pytest.mark.parametrize("where", ["first", "last"])
def test_payload_spliced_into_nvidia_pickle_is_refused(tmp_path, where):
    # ada_micro_skip.pkl is `{training_set_kwargs: ..., G: ..., ...}`: add one more key whose
    # value is the payload, either as the first entry of the top dict or just before STOP.
    marker = tmp_path / "pwned"
    name, call = PAYLOADS["posix.system"](marker)
    original = (STYLEGAN2 / "ada_micro_skip.pkl").read_bytes()
    entry = op_literal("evil") + call
    if where == "first":
        data = splice(original, first_mark(original), entry)
    else:
        data = splice(original, stop_offset(original), entry + b"s")  # SETITEM into the top dict
    assert_payload_is_live(data, name, marker)
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(data)
    assert_refused(path, name, marker)


@pytest.mark.parametrize("where", ["first", "last"])
def test_payload_in_torch_zip_data_pkl_is_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    name, call = PAYLOADS["builtins.exec"](marker)
    entry = op_literal("evil") + call

    def edit(pkl: bytes) -> bytes:
        if where == "first":
            return splice(pkl, first_mark(pkl), entry)
        return splice(pkl, stop_offset(pkl), entry + b"s")

    with zipfile.ZipFile(FORMATS / "zip_mixed.pt") as z:
        assert_payload_is_live(edit(z.read("zip_mixed/data.pkl")), name, marker)
    path = tmp_path / "model.pt"
    rewrite_zip(FORMATS / "zip_mixed.pt", path, edit)
    assert_refused(path, name, marker)


def test_payload_in_legacy_object_pickle_is_refused(tmp_path):
    # legacy torch.save: magic, version, sys_info pickles, then the object pickle (4th)
    marker = tmp_path / "pwned"
    name, call = PAYLOADS["subprocess.call"](marker)
    original = (FORMATS / "legacy_mixed.pt").read_bytes()
    start = 0
    for _ in range(3):
        start = stop_offset(original, start) + 1
    data = splice(original, first_mark(original, start), op_literal("evil") + call)
    assert_payload_is_live(data[start:], name, marker)
    path = tmp_path / "legacy.pt"
    path.write_bytes(data)
    assert_refused(path, name, marker)


def test_payload_inside_embedded_storage_bytes_is_refused(tmp_path):
    # torch.storage._load_from_bytes(b) where b is not a storage file but a malicious pickle
    marker = tmp_path / "pwned"
    name, call = PAYLOADS["os.system"](marker)
    blob = whole(call)
    assert_payload_is_live(blob, name, marker)
    data = whole(op_global("torch.storage", "_load_from_bytes") + op_literal(blob) + b"\x85R")
    path = tmp_path / "blob.pkl"
    path.write_bytes(data)
    assert_refused(path, name, marker)


# --- other refusals -------------------------------------------------------------------------------


def test_whole_torch_nn_module_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(whole(op_global("torch.nn.modules.linear", "Linear") + b")\x81"))  # NEWOBJ
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear.*whole torch.nn module"):
        load_torch_file(path)


def test_torchscript_class_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "scripted.pt"
    rewrite_zip(FORMATS / "zip_mixed.pt", path, lambda pkl: whole(op_global("__torch__.model", "Generator") + b")\x81"))
    with pytest.raises(UnsafePickleError, match="'__torch__.model.Generator': TorchScript archives are not supported"):
        load_torch_file(path)


def test_persistent_id_in_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "pid.pkl"
    path.write_bytes(whole(op_literal(("storage", "x")) + b"Q"))
    with pytest.raises(UnsafePickleError, match="refused persistent id"):
        load_torch_file(path)


def test_unknown_persistent_id_in_torch_zip_is_refused(tmp_path):
    path = tmp_path / "pid.pt"
    rewrite_zip(FORMATS / "zip_mixed.pt", path, lambda pkl: whole(op_literal(("module", "evil")) + b"Q"))
    with pytest.raises(UnsafePickleError, match="refused persistent id"):
        load_torch_file(path)


@pytest.mark.parametrize(
    "module, name",
    [
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("copyreg", "_reconstructor"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("__builtin__", "getattr"),
        ("dnnlib.util", "call_func_by_name"),
        ("torch_utils.persistence", "_src_to_module"),
    ],
)
def test_other_globals_are_refused(tmp_path, module, name):
    path = tmp_path / "g.pkl"
    path.write_bytes(whole(op_global(module, name)))
    with pytest.raises(UnsafePickleError, match=f"'{module}.{name}'"):
        load_torch_file(path)


def test_numpy_object_dtype_is_refused(tmp_path):
    # numpy.core.multiarray.scalar(dtype('O'), obj) would hand back arbitrary objects
    path = tmp_path / "obj.pkl"
    path.write_bytes(whole(op_call("numpy", "dtype", "O", False, True)))
    with pytest.raises(UnsafePickleError, match="numpy.dtype"):
        load_torch_file(path)


def test_codecs_encode_only_for_latin1_bytes(tmp_path):
    path = tmp_path / "b.pkl"
    path.write_bytes(pickle.dumps({"raw": b"\x00\xffab"}, protocol=2))  # bytes -> _codecs.encode
    assert load_torch_file(path) == {"raw": b"\x00\xffab"}
    path.write_bytes(whole(op_call("_codecs", "encode", "x", "zlib_codec")))
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        load_torch_file(path)


def test_numpy_scalar_still_decodes(tmp_path):
    path = tmp_path / "scalar.pkl"
    path.write_bytes(pickle.dumps({"gain": np.float64(1.5), "n": np.int32(-3)}, protocol=4))
    loaded = load_torch_file(path)
    assert loaded == {"gain": 1.5, "n": -3}
    assert loaded["gain"].dtype == np.float64 and loaded["n"].dtype == np.int32


def test_tensor_view_outside_its_storage_is_refused(tmp_path):
    # a 4-element float storage (legacy blob, as tensors embed it) viewed as 10**6 elements:
    # must not read past the buffer
    storage_pid = op_literal("storage") + op_global("torch", "FloatStorage") + op_literal("0") + op_literal("cpu") + op_literal(4) + op_literal(None)
    blob = (
        pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2)
        + whole(b"(" + storage_pid + b"tQ") + pickle.dumps(["0"], protocol=2)
        + (4).to_bytes(8, "little") + np.ones(4, "<f4").tobytes()
    )
    storage = op_global("torch.storage", "_load_from_bytes") + op_literal(blob) + b"\x85R"
    ok_args = op_literal(0) + op_literal((2, 2)) + op_literal((2, 1))
    bad_args = op_literal(0) + op_literal((1000, 1000)) + op_literal((1000, 1))
    tensor = op_global("torch._utils", "_rebuild_tensor")
    good, bad = tmp_path / "good.pkl", tmp_path / "bad.pkl"
    good.write_bytes(whole(tensor + b"(" + storage + ok_args + b"tR"))
    bad.write_bytes(whole(tensor + b"(" + storage + bad_args + b"tR"))
    np.testing.assert_array_equal(load_torch_file(good), np.ones((2, 2), np.float32))
    with pytest.raises(CorruptCheckpointError, match="exceeds its storage"):
        load_torch_file(bad)


def test_protocol0_text_pickle_is_not_loaded(tmp_path):
    # the classic text exploit: never parsed at all (no PROTO header), so nothing runs
    marker = tmp_path / "pwned"
    path = tmp_path / "old.pkl"
    path.write_bytes(f"cos\nsystem\n(V{touch_cmd(marker)}\ntR.".encode())
    with pytest.raises(NotACheckpointError):
        load_torch_file(path)
    assert not marker.exists()


def test_allow_list_is_explicit():
    # every allowed global is one of ours, nothing is imported from torch/dnnlib/builtins
    modules = {module for module, _ in ALLOWED_GLOBALS}
    assert modules == {
        "_codecs", "argparse", "collections", "torch", "torch._utils", "torch.storage", "numpy", "numpy.core.multiarray",
        "numpy._core.multiarray", "dnnlib", "dnnlib.util", "torch_utils.persistence",
    }
    for value in ALLOWED_GLOBALS.values():
        assert getattr(value, "__module__", "") != "builtins" or value is dict
    unpickler = SafeUnpickler(io.BytesIO(b""))
    with pytest.raises(UnsafePickleError):
        unpickler.find_class("torch.storage", "_load_from_bytes")  # no hook given: refused
    assert isinstance(UnsafePickleError("x"), GvjaxError)


# --- the TensorFlow allow-list: numeric numpy arrays, nothing of torch -------------------------------


def tf_unpickle(data: bytes):
    return SafeUnpickler(io.BytesIO(data), allowed=TF_ALLOWED_GLOBALS).load()


def test_tf_allow_list_is_explicit():
    assert {module for module, _ in TF_ALLOWED_GLOBALS} == {
        "dnnlib.tflib.network", "tfutil", "numpy", "numpy.core.multiarray", "numpy._core.multiarray", "_codecs", "dnnlib", "dnnlib.util",
    }
    with pytest.raises(UnsafePickleError, match="'torch._utils._rebuild_tensor_v2'"):
        tf_unpickle(whole(op_global("torch._utils", "_rebuild_tensor_v2")))


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4), np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    np.arange(4, dtype=">f8"), np.array(2.5, np.float32), np.array([True, False]), np.zeros((0, 3), np.float16),
], ids=["f4", "fortran-i8", "big-endian", "0-d", "bool", "empty"])
def test_numeric_arrays_decode_in_tf_pickles(array):
    for protocol in (3, 4) if array.size == 0 else (2, 3, 4):  # protocol 2 writes b'' as __builtin__.bytes()
        out = tf_unpickle(pickle.dumps({"v": array}, protocol=protocol))["v"].array
        np.testing.assert_array_equal(out, array)
        assert out.shape == array.shape and out.dtype == array.dtype.newbyteorder("=") and not out.flags.writeable


class WrongShape:
    """Pickles as numpy's reduction of a 4-float array with the shape (5,) in its state."""

    def __reduce__(self):
        fn, args, state = np.arange(4, dtype=np.float32).__reduce__()
        return fn, args, (state[0], (5,), *state[2:])


def test_object_arrays_and_wrong_sizes_are_refused_in_tf_pickles():
    with pytest.raises(UnsafePickleError, match=r"numpy.dtype\('O8'\)"):
        tf_unpickle(pickle.dumps(np.array([1, "x"], dtype=object), protocol=4))
    with pytest.raises(CorruptCheckpointError, match=r"shape \[5\] and dtype float32 needs 20 bytes, has 16"):
        tf_unpickle(pickle.dumps(WrongShape(), protocol=4))
    with pytest.raises(UnsafePickleError, match="only plain numpy.ndarray"):  # a subclass, e.g. numpy.matrix
        tf_unpickle(whole(op_global("numpy.core.multiarray", "_reconstruct") + b"(" + op_global("numpy", "dtype")
                          + op_literal((0,)) + op_literal(b"b") + b"tR"))


# --- numpy arrays in torch-format pickles: only inside NVIDIA network pickles (StyleGAN3 module state) -----


def nvidia_module_pickle(state: dict, protocol: int = 2) -> bytes:
    """A plain pickle of `{'G_ema': _reconstruct_persistent_obj(meta)}`, as NVIDIA's snapshots start."""
    meta = {"type": "class", "version": 6, "module_src": "# never run", "class_name": "SynthesisInput", "state": state}
    obj = op_global("torch_utils.persistence", "_reconstruct_persistent_obj") + b"(" + pickle.dumps(meta, protocol=protocol)[2:-1] + b"tR"
    return whole(b"}" + op_literal("G_ema") + obj + b"s")


def test_numeric_arrays_decode_inside_nvidia_network_pickles(tmp_path):
    from gvjax.convert.torch_io import module_attributes

    path = tmp_path / "sg3.pkl"
    for protocol in (2, 3):  # explicit memo indices (protocol 4's implicit ones do not survive splicing)
        path.write_bytes(nvidia_module_pickle({"size": np.array([36, 36]), "rates": np.array([16.0, 32.0], ">f8"), "gain": np.float64(2.0)}, protocol))
        attrs = module_attributes(load_torch_file(path)["G_ema"])[""]
        assert attrs["size"] == [36, 36] and attrs["rates"] == [16.0, 32.0] and attrs["gain"] == 2.0


def test_object_arrays_and_wrong_sizes_are_refused_inside_nvidia_network_pickles(tmp_path):
    path = tmp_path / "sg3.pkl"
    path.write_bytes(nvidia_module_pickle({"names": np.array([1, "x"], dtype=object)}))
    with pytest.raises(UnsafePickleError, match=r"numpy.dtype\('O8'\)"):
        load_torch_file(path)
    path.write_bytes(nvidia_module_pickle({"size": WrongShape()}))
    with pytest.raises(CorruptCheckpointError, match=r"shape \[5\] and dtype float32 needs 20 bytes, has 16"):
        load_torch_file(path)


def test_numpy_arrays_outside_nvidia_network_pickles_are_still_refused(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(pickle.dumps({"w": np.arange(4, dtype=np.float32)}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"_reconstruct': numpy arrays are read only inside NVIDIA network pickles"):
        load_torch_file(path)
    # the persistence loader named after the array does not admit it retroactively
    array_first = whole(b"(" + op_literal(np.arange(4, dtype=np.float32)) + op_global("torch_utils.persistence", "_reconstruct_persistent_obj") + b"l")
    path.write_bytes(array_first)
    with pytest.raises(UnsafePickleError, match="numpy arrays are read only inside NVIDIA network pickles"):
        load_torch_file(path)
