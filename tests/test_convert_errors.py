"""`gvjax convert` refusals: one line on stderr, exit code 2, nothing written (no DST, no temporary sibling).

The payload pickles come from tests/test_safe_pickle.py, which also proves each one live (it
creates its marker file when unpickled the ordinary way); here they go through the CLI.
"""

import pickle
import time
import zipfile

import numpy as np
import pytest
from checkpoint_writer import generator_attributes, generator_module, module_tree, write_nvidia_pickle
from conftest import STYLEGAN2, load_expected, load_state, run_cli
from test_safe_pickle import PAYLOADS, assert_payload_is_live, first_mark, op_literal, rewrite_zip, splice, stop_offset


def assert_refused(tmp_path, src, fragment, dst_name="out"):
    """`gvjax convert src DST` exits 2 with one stderr line containing `fragment`; DST's folder stays empty."""
    outdir = tmp_path / "dst"
    outdir.mkdir(exist_ok=True)
    r = run_cli("convert", src, outdir / dst_name)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert list(outdir.iterdir()) == [], "something was written"
    return lines[0]


# --- inputs that are not checkpoints ---------------------------------------------------------------


def _truncated(tmp_path, name, fraction):
    data = (STYLEGAN2 / name).read_bytes()
    path = tmp_path / f"cut-{name}"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _zip_without_torch_archive(tmp_path):
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.txt", "hello")
    return path


def _text(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_text("these are not the weights you are looking for\n")
    return path


def _plain_dict_pickle(tmp_path):
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    return path


# --- networks that are not StyleGAN2 generators ----------------------------------------------------


def _stylegan3(tmp_path, kind):
    """A stylegan3-repo snapshot whose G_ema is a StyleGAN3-T/R generator (its modules and kwargs, tiny tensors)."""
    kwargs = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3, "mapping_kwargs": {"num_layers": 2},
              "channel_base": 32768, "channel_max": 512, "magnitude_ema_beta": 0.999}
    if kind == "R":
        kwargs.update(conv_kernel=1, use_radial_filters=True, channel_base=65536, channel_max=1024)
    z = np.zeros((2, 2), np.float32)
    state = {"synthesis.input.weight": z, "synthesis.input.freqs": z, "synthesis.input.phases": z[0],
             "synthesis.L0_36_512.weight": z, "synthesis.L0_36_512.magnitude_ema": z[0, 0], "mapping.fc0.weight": z, "mapping.w_avg": z[0]}
    classes = {"": "Generator", "synthesis": "SynthesisNetwork", "synthesis.input": "SynthesisInput",
               "synthesis.L0_36_512": "SynthesisLayer", "mapping": "MappingNetwork", "mapping.fc0": "FullyConnectedLayer"}

    def state_of(path):
        if path == "":
            return {"_init_kwargs": kwargs}
        if classes[path] == "SynthesisLayer":
            return {"use_radial_filters": kind == "R", "conv_kernel": 1 if kind == "R" else 3, "is_torgb": False}
        return {}

    path = tmp_path / f"stylegan3-{kind.lower()}.pkl"
    buffers = {"synthesis.input.freqs", "synthesis.input.phases", "synthesis.L0_36_512.magnitude_ema", "mapping.w_avg"}
    write_nvidia_pickle(path, {"G": None, "D": None, "G_ema": module_tree(state, buffers, classes.__getitem__, state_of)})
    return path


def _skip_generator(tmp_path, name, kwargs_edit=lambda k: k, class_name="Generator", attributes=None):
    """ada_micro_skip's G_ema written as a pickle, with its kwargs / root class / module attributes changed."""
    state = load_state("ada_micro_skip", "G_ema.")
    buffers = {k for k in state if k.endswith(("resample_filter", "noise_const", "w_avg"))}
    meta, _ = load_expected("ada_micro_skip")
    kwargs = kwargs_edit(meta["G_init_kwargs"])
    path = tmp_path / name
    write_nvidia_pickle(path, {"G_ema": generator_module(kwargs, state, buffers, attributes or (lambda p: {}), class_name)})
    return path


def _unknown_architecture(tmp_path):
    def edit(kwargs):
        kwargs["synthesis_kwargs"]["architecture"] = "fancy"
        return kwargs

    return _skip_generator(tmp_path, "fancy.pkl", edit)


def _unknown_architecture_in_module_state(tmp_path):
    return _skip_generator(tmp_path, "fancy-state.pkl", attributes=generator_attributes(32, architecture="fancy"))


def _disagreeing_modules(tmp_path):
    clamp_some = generator_attributes(32, conv_clamp=256)
    return _skip_generator(tmp_path, "mixed.pkl", attributes=lambda p: {"conv_clamp": None} if p.endswith("torgb") else clamp_some(p))


def _wrong_shapes(tmp_path):
    def edit(kwargs):
        kwargs["synthesis_kwargs"]["channel_max"] = 16  # the tensors are 32 wide
        return kwargs

    return _skip_generator(tmp_path, "shapes.pkl", edit)


ERRORS = {
    # case: (make(tmp_path) -> source path, fragment of the one-line message)
    "missing file": (lambda t: t / "nope.pkl", "checkpoint not found: "),
    "a directory": (lambda t: (t / "ckpt").mkdir() or t / "ckpt", "is a directory, not an NVIDIA .pkl or rosinality .pt file"),
    "truncated pickle": (lambda t: _truncated(t, "ada_micro_skip.pkl", 0.5), "truncated"),
    "truncated torch zip": (lambda t: _truncated(t, "rosi_micro.pt", 0.6), "truncated"),
    "text file": (_text, "not a PyTorch checkpoint or pickle: model.pkl"),
    "zip, not torch.save": (_zip_without_torch_archive, "not a torch.save archive"),
    "pickle without a generator": (_plain_dict_pickle, "not a StyleGAN2 checkpoint"),
    "StyleGAN3-T": (lambda t: _stylegan3(t, "T"), "StyleGAN3-T network (stylegan3 repo, training.networks_stylegan3.Generator) is not supported"),
    "StyleGAN3-R": (lambda t: _stylegan3(t, "R"), "StyleGAN3-R network"),
    "unknown class": (lambda t: _skip_generator(t, "odd.pkl", class_name="MyGenerator"), "unknown generator class 'MyGenerator'"),
    "unknown architecture (kwargs)": (_unknown_architecture, "unknown architecture 'fancy'"),
    "unknown architecture (module state)": (_unknown_architecture_in_module_state, "unknown architecture 'fancy'"),
    "modules disagree": (_disagreeing_modules, "modules disagree on conv_clamp"),
    "kwargs disagree with tensors": (_wrong_shapes, "shape"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_refused_with_one_line(tmp_path, case):
    make, fragment = ERRORS[case]
    src = make(tmp_path)
    line = assert_refused(tmp_path, src, fragment)
    if case != "missing file":
        assert src.name in line  # every message names the file


# --- forbidden globals: the payload never runs ------------------------------------------------------


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "subprocess.Popen", "posix.system"])
def test_forbidden_global_in_nvidia_pickle(tmp_path, payload):
    marker = tmp_path / "pwned"
    name, call = PAYLOADS[payload](marker)
    original = (STYLEGAN2 / "ada_micro_skip.pkl").read_bytes()
    data = splice(original, stop_offset(original), op_literal("evil") + call + b"s")  # one more key of the top dict
    assert_payload_is_live(data, name, marker)
    src = tmp_path / "network-snapshot.pkl"
    src.write_bytes(data)
    assert_refused(tmp_path, src, f"refused to load '{name}': not an allowed global in a checkpoint")
    time.sleep(0.1)
    assert not marker.exists(), "the payload ran"


def test_forbidden_global_in_torch_zip(tmp_path):
    marker = tmp_path / "pwned"
    name, call = PAYLOADS["builtins.exec"](marker)

    def edit(pkl: bytes) -> bytes:
        return splice(pkl, first_mark(pkl), op_literal("evil") + call)

    with zipfile.ZipFile(STYLEGAN2 / "rosi_micro.pt") as z:
        inner = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        assert_payload_is_live(edit(z.read(inner)), name, marker)
    src = tmp_path / "550000.pt"
    rewrite_zip(STYLEGAN2 / "rosi_micro.pt", src, edit)
    assert_refused(tmp_path, src, f"refused to load '{name}'")
    time.sleep(0.1)
    assert not marker.exists(), "the payload ran"


# --- the destination -------------------------------------------------------------------------------


def test_existing_destination_needs_force(tmp_path):
    dst = tmp_path / "ckpt"
    dst.mkdir()
    (dst / "mine.txt").write_text("keep me")
    r = run_cli("convert", STYLEGAN2 / "rosi_micro.pt", dst)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {dst} already exists (use --force to replace it)"]
    assert (dst / "mine.txt").read_text() == "keep me"
    # --force replaces only a gvjax checkpoint: a folder of the user's is never deleted
    r = run_cli("convert", STYLEGAN2 / "rosi_micro.pt", dst, "--force")
    assert r.returncode == 2 and "replaces only a gvjax checkpoint" in r.stderr, r.stderr
    assert sorted(p.name for p in dst.iterdir()) == ["mine.txt"]
    (dst / "mine.txt").unlink()
    r = run_cli("convert", STYLEGAN2 / "rosi_micro.pt", dst)  # an empty folder still needs --force...
    assert r.returncode == 2
    dst.rmdir()
    r = run_cli("convert", STYLEGAN2 / "rosi_micro.pt", dst)
    assert r.returncode == 0, r.stderr
    r = run_cli("convert", STYLEGAN2 / "rosi_micro.pt", dst, "--force")  # ...and a checkpoint is replaced with it
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dst.iterdir()) == ["G_ema", "config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary sibling left


def test_missing_output_directory(tmp_path):
    r = run_cli("convert", STYLEGAN2 / "rosi_micro.pt", tmp_path / "no" / "such" / "dir")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "does not exist" in r.stderr
    assert list(tmp_path.iterdir()) == []
