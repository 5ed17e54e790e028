"""benchmarks/device_check.py runs here: `--quick` (the device check's code on a tiny config, CPU),
and its budget turns parts that do not fit into recorded skips or timeouts, never a crash."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "device_check.py"
PARTS = ("parity", "generator", "nvidia", "render", "train")


def device_check(out, *args, timeout=600):
    """Run the check in a subprocess on the CPU; (its JSON from stdout's last line, the process)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the check times compiles and its budget: a fresh machine has no cache
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", "--out", str(out), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


@pytest.mark.slow
def test_quick_check_runs_every_part_and_writes_json_and_table(tmp_path):
    result, proc = device_check(tmp_path, "--quick", "--nvidia-repo", str(tmp_path / "no-checkout"))
    assert result["quick"] is True
    for name in PARTS:
        assert result[name]["status"] in ("ok", "skipped"), (name, result[name])
        assert result[name]["part_s"] >= 0

    parity = result["parity"]
    assert parity["status"] == "ok" and parity["passed"] >= 2 and parity["failed"] == parity["errors"] == 0

    gen = result["generator"]
    assert gen["status"] == "ok" and gen["backend"] == "cpu"
    assert {(r["dtype"], r["modconv"]) for r in gen["rows"]} == {(d, f) for d in ("float32", "bfloat16") for f in ("grouped", "shared")}
    assert all(r["images_per_s"] > 0 and r["gflops_per_image"] > 0 and r["compile_s"] > 0 for r in gen["rows"])

    nvidia = result["nvidia"]  # no torch and no checkout here: a recorded skip
    assert nvidia["status"] == "skipped" and nvidia["reason"]

    render = result["render"]
    assert render["status"] == "ok", render
    assert render["frames"] == render["total_frames"] == 60  # 2 s at 30 fps
    assert render["video_bytes"] > 0 and render["frames_per_s"] > 0 and render["features"] == "analysed"
    assert render["size"] == [128, 72] and render["timeline"] == "all-warps"

    train = result["train"]
    assert train["status"] == "ok" and train["images_per_s"] > 0 and train["steps"] > 0

    assert json.loads((tmp_path / "device_check.json").read_text()) == result
    table = (tmp_path / "device_check.md").read_text()
    assert "| part | status | seconds | result |" in table
    for name in PARTS:
        assert f"| {name} | {result[name]['status']} |" in table
    assert "| 2 | bfloat16 | shared |" in table  # the generator's rows
    assert "===== render =====" in (tmp_path / "device_check.log").read_text()


def test_parts_past_the_budget_are_recorded_as_skipped(tmp_path):
    result, _ = device_check(tmp_path, "--quick", "--parts", "parity,train", "--budget", "1")
    for name in ("parity", "train"):
        assert result[name]["status"] == "skipped" and "time budget" in result[name]["reason"]
    assert "generator" not in result
    assert "| train | skipped |" in (tmp_path / "device_check.md").read_text()


def test_a_part_stopped_at_its_cap_is_a_recorded_timeout(tmp_path):
    result, _ = device_check(tmp_path, "--quick", "--parts", "generator", "--budget", "7")
    gen = result["generator"]
    assert gen["status"] == "timeout" and "cap" in gen["error"]
    assert gen["part_s"] < 30
    assert result["total_s"] < 30


@pytest.mark.slow
def test_render_falls_back_to_features_analysed_beforehand_where_librosa_fails(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the check times compiles and its budget: a fresh machine has no cache
    features = tmp_path / "features.npz"
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--save-features", str(features)], cwd=REPO, env=env, check=True,
                   timeout=300)
    broken = tmp_path / "broken"
    (broken / "librosa").mkdir(parents=True)
    (broken / "librosa" / "__init__.py").write_text("raise ImportError('librosa broken on purpose')\n")
    env["PYTHONPATH"] = os.pathsep.join([str(broken), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", "--parts", "render", "--features", str(features),
                           "--out", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    render = json.loads(proc.stdout.strip().splitlines()[-1])["render"]
    assert render["status"] == "ok", render
    assert render["features"] == "precomputed" and "librosa broken on purpose" in render["features_note"]
    assert render["frames"] == 60
