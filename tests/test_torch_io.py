"""Torch-free checkpoint reading (gvjax.convert.torch_io) against values torch itself wrote.

tests/fixtures/torch_formats/* were written by tests/fixtures/make_torch_files.py with torch
2.13; expected.npz holds torch's own `tensor.numpy()` of every tensor. The StyleGAN2 fixtures
(tests/data/stylegan2) come with `<name>_state.npz`, every tensor of the checkpoint as numpy.
torch is not imported here.
"""

import collections
import json
import pickle
import re
import struct
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conftest import NVIDIA_FIXTURES, STYLEGAN2, load_state

from gvjax.convert.safe_pickle import PersistentObject, TorchDtype
from gvjax.convert.torch_io import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    TruncatedCheckpointError,
    load_torch_file,
    module_attributes,
    module_state_dict,
)
from gvjax.errors import GvjaxError

FORMATS = Path(__file__).parent / "fixtures" / "torch_formats"


def expected(prefix: str) -> dict[str, np.ndarray]:
    """Entries of expected.npz under '<prefix>.', prefix removed."""
    with np.load(FORMATS / "expected.npz") as npz:
        return {k[len(prefix) + 1 :]: npz[k] for k in npz.files if k.startswith(prefix + ".")}


def flatten(obj, prefix: str = "") -> dict[str, np.ndarray]:
    """{dotted path: array} of every array in nested dicts / lists / tuples."""
    if isinstance(obj, np.ndarray):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    out = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def assert_matches_torch(arrays: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Each array equals torch's value exactly, same dtype (bfloat16 checked bit for bit)."""
    assert sorted(arrays) == sorted(k for k in want if not k.endswith(".bits"))
    for name, got in arrays.items():
        assert got.flags.c_contiguous, name
        if name + ".bits" in want:
            assert got.dtype == ml_dtypes.bfloat16, name
            np.testing.assert_array_equal(got.view(np.uint16), want[name + ".bits"], err_msg=name)
            np.testing.assert_array_equal(got.astype(np.float32), want[name], err_msg=name)
        else:
            assert got.dtype == want[name].dtype, name
            assert got.shape == want[name].shape, name
            np.testing.assert_array_equal(got, want[name], err_msg=name)


# --- torch.save formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["zip_mixed.pt", "legacy_mixed.pt"])
def test_torch_save_formats_match_torch_values(filename):
    obj = load_torch_file(FORMATS / filename)
    assert_matches_torch(flatten(obj), expected("mixed"))


@pytest.mark.parametrize("filename", ["zip_mixed.pt", "legacy_mixed.pt"])
def test_torch_save_formats_keep_python_structure(filename):
    obj = load_torch_file(FORMATS / filename)
    assert list(obj)[:3] == ["f32", "f32_t", "f32_step"]
    assert isinstance(obj["nested"], collections.OrderedDict)
    assert list(obj["nested"]) == ["list", "tuple"]
    assert obj["nested"]["tuple"] == (1, "two", 3.0, None, True)
    assert isinstance(obj["state_dict"], collections.OrderedDict)
    assert list(obj["state_dict"]) == ["weight", "bias"]
    assert obj["meta"]["size"] == (2, 3) and type(obj["meta"]["size"]) is tuple
    assert obj["meta"]["dtype"] == TorchDtype("bfloat16", np.dtype(ml_dtypes.bfloat16))
    assert obj["meta"]["name"] == "mixed"
    assert obj["scalar"].shape == () and obj["empty"].shape == (0, 3)


def test_views_of_one_storage_are_independent_copies():
    obj = load_torch_file(FORMATS / "zip_mixed.pt")
    # f32_t is f32 transposed, shared_a/shared_b overlap in one storage (element 4)
    np.testing.assert_array_equal(obj["f32_t"], obj["f32"].T)
    assert obj["shared_a"][2] == obj["shared_b"][0]
    obj["shared_a"][2] = 1000.0
    assert obj["shared_b"][0] != 1000.0
    assert not np.shares_memory(obj["f32"], obj["f32_t"])


def test_plain_pickle_with_embedded_storages_matches_torch():
    # pickle.dump of tensors: storages via torch.storage._load_from_bytes, like NVIDIA pickles
    obj = load_torch_file(FORMATS / "plain_mixed.pkl")
    assert_matches_torch(flatten(obj), expected("plain"))


def test_big_endian_zip_is_byte_swapped_to_native():
    obj = load_torch_file(FORMATS / "zip_bigendian.pt")
    assert_matches_torch(flatten(obj), expected("bigendian"))
    assert all(a.dtype.isnative for a in obj.values())


# --- hand-built legacy stream: pre-0.4 storage views ------------------------------------------------


def _op_global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _op_literal(value) -> bytes:
    return pickle.dumps(value, protocol=2)[2:-1]  # strip PROTO and STOP


def test_legacy_storage_view_metadata(tmp_path):
    # Old torch pickled a storage view as (view_key, offset, size) of a root storage.
    root = np.arange(6, dtype="<f4") * 1.5
    pid_view = (
        b"(" + _op_literal("storage") + _op_global("torch", "FloatStorage") + _op_literal("0")
        + _op_literal("cpu") + _op_literal(6) + _op_literal(("1", 2, 3)) + b"tQ"
    )
    tensor = _op_global("torch._utils", "_rebuild_tensor") + b"(" + pid_view + _op_literal(1) + _op_literal((2,)) + _op_literal((1,)) + b"tR"
    main = b"\x80\x02" + tensor + b"."
    stream = (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
        + main
        + pickle.dumps(["0"], protocol=2)
        + struct.pack("<q", 6)
        + root.tobytes()
    )
    path = tmp_path / "old.pt"
    path.write_bytes(stream)
    np.testing.assert_array_equal(load_torch_file(path), root[3:5])


# --- StyleGAN2 fixtures ---------------------------------------------------------------------------


def readme_state_dict_names() -> list[str]:
    """Names of the README's `G_ema.state_dict()` listing of ada_micro_skip, in order."""
    text = (STYLEGAN2 / "README.md").read_text()
    section = text.split("## `G_ema.state_dict()` of `ada_micro_skip`", 1)[1]
    block = section.split("```", 2)[1]
    return [line.split()[0] for line in block.strip().splitlines()]


@pytest.fixture(scope="module")
def nvidia_pickles():
    return {name: load_torch_file(STYLEGAN2 / f"{name}.pkl") for name in NVIDIA_FIXTURES}


@pytest.mark.parametrize("net", ["G_ema", "G", "D"])
@pytest.mark.parametrize("name", NVIDIA_FIXTURES)
def test_nvidia_state_dict_equals_reference(nvidia_pickles, name, net):
    ours = module_state_dict(nvidia_pickles[name][net])
    ref = load_state(name, f"{net}.")
    assert list(ours) == list(ref)  # same names, same state_dict order
    for key, value in ref.items():
        assert ours[key].dtype == value.dtype and ours[key].shape == value.shape, key
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


def test_nvidia_state_dict_order_matches_readme(nvidia_pickles):
    names = readme_state_dict_names()
    assert len(names) == 75
    assert list(module_state_dict(nvidia_pickles["ada_micro_skip"]["G_ema"])) == names


def test_nvidia_pickle_layout(nvidia_pickles):
    for name, data in nvidia_pickles.items():
        assert list(data) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
        assert type(data["training_set_kwargs"]) is dict  # EasyDict -> dict
        assert data["training_set_kwargs"]["resolution"] == 32
        assert data["G_ema"].class_name == "Generator" and data["D"].class_name == "Discriminator"
    assert nvidia_pickles["ada_micro_resnet"]["augment_pipe"] is None
    pipe = nvidia_pickles["ada_micro_skip"]["augment_pipe"]
    assert pipe.class_name == "AugmentPipe"
    assert module_attributes(pipe)[""]["init_kwargs"]["xflip"] == 1


def test_nvidia_module_attributes(nvidia_pickles):
    attrs = module_attributes(nvidia_pickles["ada_micro_skip"]["G_ema"])
    assert list(attrs)[:4] == ["", "synthesis", "synthesis.b4", "synthesis.b4.conv1"]
    assert attrs[""]["init_kwargs"] == {
        "z_dim": 32, "w_dim": 32, "mapping_kwargs": {"num_layers": 2},
        "synthesis_kwargs": {"channel_base": 256, "channel_max": 32, "num_fp16_res": 0, "conv_clamp": None, "architecture": "skip"},
        "c_dim": 0, "img_resolution": 32, "img_channels": 3,
    }
    assert attrs[""]["class_name"] == "Generator" and attrs[""]["num_ws"] == 8
    conv0 = attrs["synthesis.b8.conv0"]
    assert conv0["class_name"] == "SynthesisLayer"
    assert conv0["up"] == 2 and conv0["conv_clamp"] is None and conv0["padding"] == 1
    assert type(conv0["act_gain"]) is float and conv0["act_gain"] == pytest.approx(2**0.5)
    assert conv0["init_args"] == [32, 32]
    assert attrs["synthesis.b8"]["architecture"] == "skip" and attrs["synthesis.b8"]["use_fp16"] is False
    assert type(attrs["synthesis.b8.torgb"]["weight_gain"]) is float
    for entry in attrs.values():
        assert not any(k.startswith("_") for k in entry)
        assert not any(isinstance(v, (np.ndarray, np.generic)) for v in entry.values())
    json.dumps(attrs)  # plain data only

    resnet = module_attributes(nvidia_pickles["ada_micro_resnet"]["G_ema"])
    assert resnet["synthesis.b16"]["architecture"] == "resnet"
    cond = module_attributes(nvidia_pickles["ada_micro_cond"]["D"])
    assert cond[""]["init_kwargs"]["c_dim"] == 4
    assert cond[""]["init_kwargs"]["epilogue_kwargs"] == {"mbstd_group_size": 4}


def _array(*shape):
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def test_module_state_dict_without_torch2_private_fields():
    # A 2021-style module state: no _non_persistent_buffers_set, hooks etc. absent; a None bias.
    child = PersistentObject("FullyConnectedLayer", "", {"_parameters": {"weight": _array(2, 3), "bias": None}, "_buffers": {}})
    root = PersistentObject("Net", "", {"_parameters": {"p": _array(1)}, "_buffers": {"b": _array(2)}, "_modules": {"fc": child, "gone": None}})
    assert list(module_state_dict(root)) == ["p", "b", "fc.weight"]


def test_module_attributes_keep_only_plain_data():
    state = {
        "_parameters": {}, "_buffers": {}, "_modules": {},
        "gain": np.float32(0.5), "flag": np.bool_(True), "table": {4: 32, 8: np.int64(16)},
        "kernel": _array(2), "mixed": [1, _array(1)], "_private": 1,
        "_init_args": (3,), "_init_kwargs": {"channels": 8, "filter": _array(4)},
    }
    attrs = module_attributes(PersistentObject("Layer", "", state))[""]
    assert attrs == {
        "gain": 0.5, "flag": True, "table": {4: 32, 8: 16},
        "class_name": "Layer", "init_args": [3], "init_kwargs": {"channels": 8},
    }
    assert type(attrs["gain"]) is float and type(attrs["table"][8]) is int


def test_module_state_dict_skips_non_persistent_buffers():
    root = PersistentObject("Net", "", {
        "_parameters": {}, "_buffers": {"keep": _array(1), "tmp": _array(1)},
        "_non_persistent_buffers_set": {"tmp"}, "_modules": {},
    })
    assert list(module_state_dict(root)) == ["keep"]


def test_rosinality_checkpoint_equals_reference():
    ckpt = load_torch_file(STYLEGAN2 / "rosi_micro.pt")
    assert list(ckpt) == ["g_ema", "latent_avg"]
    ref = load_state("rosi_micro", "g_ema.")
    assert list(ckpt["g_ema"]) == list(ref)
    assert len(ref) == 69
    for key, value in ref.items():
        assert ckpt["g_ema"][key].dtype == value.dtype, key
        np.testing.assert_array_equal(ckpt["g_ema"][key], value, err_msg=key)
    np.testing.assert_array_equal(ckpt["latent_avg"], load_state("rosi_micro", "latent_avg")[""])


# --- errors ---------------------------------------------------------------------------------------


def assert_one_line(exc_info, cls, *fragments):
    err = exc_info.value
    assert type(err) is cls, repr(err)
    assert isinstance(err, GvjaxError)
    msg = str(err)
    assert "\n" not in msg and "Traceback" not in msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_missing_file(tmp_path):
    with pytest.raises(GvjaxError) as info:
        load_torch_file(tmp_path / "nope.pkl")
    assert_one_line(info, CheckpointNotFoundError, "nope.pkl", "not found")


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"\x89PNG\r\n\x1a\n" + bytes(40), b"(lp0\nI1\na."])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "thing.bin"
    path.write_bytes(content)
    with pytest.raises(GvjaxError) as info:
        load_torch_file(path)
    assert_one_line(info, NotACheckpointError, "not a PyTorch checkpoint or pickle: thing.bin")


def test_zip_that_is_not_a_torch_archive(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(GvjaxError) as info:
        load_torch_file(path)
    assert_one_line(info, NotACheckpointError, "other.zip", "data.pkl")


@pytest.mark.parametrize(
    "source, fraction",
    [
        ("fixtures/torch_formats/zip_mixed.pt", 0.5),
        ("fixtures/torch_formats/zip_mixed.pt", 0.99),
        ("fixtures/torch_formats/legacy_mixed.pt", 0.3),  # inside the object pickle
        ("fixtures/torch_formats/legacy_mixed.pt", 0.9),  # inside the storage bytes
        ("fixtures/torch_formats/plain_mixed.pkl", 0.5),
        ("data/stylegan2/ada_micro_skip.pkl", 0.5),
        ("data/stylegan2/ada_micro_skip.pkl", 0.999),
        ("data/stylegan2/rosi_micro.pt", 0.7),
    ],
)
def test_truncated_file(tmp_path, source, fraction):
    data = (Path(__file__).parent / source).read_bytes()
    path = tmp_path / ("cut_" + Path(source).name)
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(GvjaxError) as info:
        load_torch_file(path)
    assert_one_line(info, TruncatedCheckpointError, path.name, "truncated")


def test_corrupt_zip_member(tmp_path):
    # a storage record shorter than its persistent id says: corrupt, named, one line
    src = zipfile.ZipFile(FORMATS / "zip_mixed.pt")
    path = tmp_path / "short_storage.pt"
    with zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info.filename, data[:2] if info.filename.endswith("/data/0") else data)
    with pytest.raises(GvjaxError) as info:
        load_torch_file(path)
    assert_one_line(info, CorruptCheckpointError, "short_storage.pt", "data/0")


def test_error_messages_name_only_the_file(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x04\x95")  # a pickle header, then nothing
    with pytest.raises(TruncatedCheckpointError, match=re.escape("x.pkl: ")):
        load_torch_file(path)
