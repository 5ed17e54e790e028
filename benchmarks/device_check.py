"""One device check (issue 12): everything a session lent an accelerator measures, in one command.

    bash benchmarks/prepare_device_check.sh          # here: wheels, ffmpeg, NVIDIA's code into .whl/
    bash benchmarks/device_check.sh                  # there: the device `run` call below
    python benchmarks/device_check.py --quick --json # here, on CPU: the same code on a tiny config

The device call (tool `run`, once per lent task): command `bash benchmarks/device_check.sh`,
carry `[".whl"]`, timeout_s 540. The parts take at most `FULL.budget_s` (450 s) together.

In order, each part in its own process with a time cap (a crash, a hang or a failure is recorded
in the JSON and the next part runs; a part that would overrun the budget is recorded as skipped):

1. parity: tests/test_generator_parity.py and tests/test_discriminator_parity.py on the device;
2. generator: images/s of z -> image at 1024^2 config-f (`CONFIG_F_1024`, random weights),
   float32 and bfloat16, batch 1/8/32/64, grouped and shared modulated convolutions
   (`generator.prepare_generator` / `time_prepared`);
3. nvidia: NVIDIA's PyTorch generator (a stylegan2-ada-pytorch checkout in an ignored folder)
   on the same weights and GPU: its CUDA ops (built in the background from the start) and its
   reference ops, float32 and float16 (`num_fp16_res=4`), and the largest |ours - NVIDIA|;
4. render: a synthesized 3-minute song (`gvjax.demo_audio`) to a muxed 1920x1080 30 fps mp4
   from that model (x2 Lanczos, cropped) with the `all-warps` timeline (`render.timed_render`);
5. train: images/s of the train step at 256^2 (`train.bench`, the 256^2 benchmark config).

Writes `device_check.json`, `device_check.md` (the table), `device_check.log` (the parts'
output) and `device_check_build.log` (the CUDA ops' build) to --out (default $OUT, else
out/device_check). --json prints the JSON object on the
last line of stdout; otherwise the table is printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata as md
import importlib.util
import json
import math
import os
import pathlib
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

PARTS = ("parity", "generator", "nvidia", "render", "train")
PARITY_TESTS = ("tests/test_generator_parity.py", "tests/test_discriminator_parity.py")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a check measures; FULL on a device, QUICK (same code, tiny sizes) for tests on CPU."""

    model: str  # benchmark_configs name of the generator / NVIDIA / render model
    batches: tuple[int, ...]  # generator and NVIDIA batches, most wanted first
    seconds: float  # timed seconds per throughput figure
    song_seconds: float
    render_size: tuple[int, int]
    render_scale: int
    render_batch: int
    fps: float
    train_model: str
    train_batch: int
    train_cycles: int
    train_pl_weight: float
    train_r1_gamma: float | None  # None: NVIDIA's heuristic
    train_augment: tuple[str, ...]
    parity_tests: tuple[str, ...]
    budget_s: float  # all parts together, from the start of the check
    caps: dict  # part -> most seconds it may run
    min_s: dict  # part -> fewest seconds left for it to start
    compile_workers: int  # generator steps compiled at once (then timed one by one)


FULL = Plan(
    model="CONFIG_F_1024", batches=(32, 64, 8, 1), seconds=0.5, song_seconds=180.0, render_size=(1920, 1080),
    render_scale=2, render_batch=32, fps=30.0, train_model="BENCH_CONFIG", train_batch=32, train_cycles=2,
    train_pl_weight=2.0, train_r1_gamma=None, train_augment=("xflip", "translate", "color", "cutout"), parity_tests=PARITY_TESTS,
    budget_s=450.0, caps={"parity": 50, "generator": 140, "nvidia": 60, "render": 130, "train": 50},
    min_s={"parity": 20, "generator": 40, "nvidia": 25, "render": 60, "train": 30}, compile_workers=4,
)
QUICK = Plan(
    model="TINY_CONFIG", batches=(2,), seconds=0.05, song_seconds=2.0, render_size=(128, 72), render_scale=2,
    render_batch=4, fps=30.0, train_model="TINY_TRAIN_CONFIG", train_batch=2, train_cycles=1, train_pl_weight=0.0,
    train_r1_gamma=0.0, train_augment=(), parity_tests=(
        "tests/test_generator_parity.py::test_mapping_and_truncation[ada_micro_skip]",
        "tests/test_discriminator_parity.py::test_param_counts_match_nvidia",
    ),
    budget_s=600.0, caps={"parity": 120, "generator": 150, "nvidia": 120, "render": 150, "train": 150},
    min_s={name: 5 for name in PARTS}, compile_workers=1,
)
DTYPES = ("bfloat16", "float32")
FORMS = ("shared", "grouped")
NVIDIA_VARIANTS = (("cuda", "float16"), ("cuda", "float32"), ("reference", "float32"), ("reference", "float16"))
NUM_FP16_RES = 4  # NVIDIA's default: the top 4 resolutions in float16


def model_config(name: str):
    import benchmark_configs

    return getattr(benchmark_configs, name)


class Skip(Exception):
    """A part that cannot run here; recorded with its reason."""


# ------------------------------------------------------------------------------------------------
# Inside a part's process


class Part:
    """A part's process: its time left, its scratch folder, and its result, saved as it grows
    (so a part killed at its cap still reports what it measured)."""

    def __init__(self, name: str, work: pathlib.Path, deadline: float, args):
        self.name, self.work, self.deadline, self.args = name, work, deadline, args
        self.result: dict = {"status": "running"}

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self, **numbers) -> None:
        self.result.update(numbers)
        tmp = self.work / f".{self.name}.json.tmp"
        tmp.write_text(json.dumps(self.result, default=_plain, allow_nan=True))
        os.replace(tmp, self.work / f"{self.name}.json")


def _plain(value):
    """JSON for numpy scalars and the like."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def finite(tree):
    """`tree` with NaN and infinities as None (strict JSON)."""
    if isinstance(tree, dict):
        return {k: finite(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [finite(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


def save_npz(path: pathlib.Path, **arrays) -> None:
    """np.savez, renamed into place when complete (a part stopped at its cap leaves no torn file)."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def jax_device() -> dict:
    import jax

    devices = jax.devices()
    return {"backend": jax.default_backend(), "devices": len(devices), "device_kind": devices[0].device_kind}


def part_parity(plan: Plan, part: Part) -> None:
    """pytest of the parity tests on this backend; counts from its JUnit XML."""
    import xml.etree.ElementTree as ET

    xml = part.work / "parity.xml"
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []  # gvjax as installed, not the tree's bare folder
    cmd = [sys.executable, *safe_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *plan.parity_tests]
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # nothing to share there
    if plan is FULL and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "8"]  # parallel compiles; each worker takes GPU memory as it goes
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=max(1.0, part.left() - 3))
        timed_out = False
    except subprocess.TimeoutExpired:
        stop(proc)  # pytest and its workers
        output, _ = proc.communicate()
        timed_out = True
    print(output[-6000:], file=sys.stderr)
    if timed_out:  # what the progress lines say so far
        progress = "".join(line.split("[")[0].strip() for line in output.splitlines()
                           if re.fullmatch(r"[.FEsxX]+\s*(\[\s*\d+%\])?", line.strip()))
        part.save(status="timeout", error="pytest did not finish in the part's time", passed=progress.count("."),
                  failed=progress.count("F"), errors=progress.count("E"), skipped=progress.count("s"))
        return
    if not xml.exists():
        raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): {output.strip()[-300:]}")
    suites = ET.parse(xml).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for s in suites for case in s.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    part.save(
        status="ok" if proc.returncode == 0 else "error", exit_code=proc.returncode,
        passed=count["tests"] - count["failures"] - count["errors"] - count["skipped"], failed=count["failures"],
        errors=count["errors"], skipped=count["skipped"], failing=failed[:20], tests=list(plan.parity_tests),
    )


def part_generator(plan: Plan, part: Part) -> None:
    """Compile a few configurations at once, then time them one by one (nothing else runs then)."""
    from concurrent.futures import ThreadPoolExecutor

    import jax
    import numpy as np

    from generator import prepare_generator, time_prepared
    from gvjax.convert.nvidia import state_dict_from_variables
    from gvjax.model import count_params, init_variables

    config = model_config(plan.model)
    t0 = time.perf_counter()
    variables = jax.device_get(init_variables(config, jax.random.key(0)))
    save_npz(part.work / "weights.npz", **state_dict_from_variables(variables, config))  # NVIDIA's part uses them
    part.save(**jax_device(), model=plan.model, config=config.to_dict(), params=count_params(variables["params"]),
              init_s=time.perf_counter() - t0, compile_workers=part.args.compile_workers or plan.compile_workers,
              seconds_per_figure=plan.seconds, rows=[], skipped_rows=[])
    todo = [(b, d, f) for b in plan.batches for d in DTYPES for f in FORMS]
    workers = part.result["compile_workers"]
    slowest = 0.0  # seconds to prepare one configuration, as seen so far
    with ThreadPoolExecutor(workers) as pool:
        while todo:
            chunk, todo = todo[:workers], todo[workers:]
            if slowest and part.left() < slowest * 1.2 + len(chunk) * (plan.seconds + 1):
                part.save(skipped_rows=part.result["skipped_rows"] + [list(c) for c in chunk + todo])
                break
            t = time.perf_counter()
            futures = [pool.submit(prepare_generator, config, variables, batch=b, modconv=f, dtype=d, count_direct=False)
                       for b, d, f in chunk]
            prepared = [fut.result() for fut in futures]
            slowest = max(slowest, time.perf_counter() - t)
            for prep in prepared:
                row = time_prepared(prep, seconds=plan.seconds)
                if row["dtype"] == "float32" and not (part.work / "ours_float32.npz").exists():
                    save_npz(part.work / "ours_float32.npz", z=np.asarray(prep.z[:2]), images=prep.images()[:2])
                part.save(rows=part.result["rows"] + [{k: row[k] for k in (
                    "batch", "dtype", "modconv", "images_per_s", "seconds_per_batch", "gflops_per_image", "gflop_per_s",
                    "compile_s", "arrange_s")}])
            del prepared, futures
    part.save(status="ok", best=best_rows(part.result["rows"]))


def part_nvidia_build(plan: Plan, part: Part) -> None:
    """Build NVIDIA's CUDA ops (CPU work: nvcc), started at the beginning so the nvidia part finds them built."""
    repo = nvidia_repo(part.args)
    import torch

    if not torch.cuda.is_available():
        raise Skip("no CUDA device: NVIDIA's reference ops run")
    major, minor = torch.cuda.get_device_capability(0)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    from nvidia_baseline import build_cuda_ops

    part.save(torch_cuda_arch_list=os.environ["TORCH_CUDA_ARCH_LIST"])
    part.save(status="ok", **build_cuda_ops(repo))


def nvidia_repo(args) -> str:
    """The stylegan2-ada-pytorch checkout, or Skip with why there is none (torch missing too)."""
    repo = pathlib.Path(args.nvidia_repo)
    if importlib.util.find_spec("torch") is None:
        raise Skip("torch is not installed")
    if not (repo / "training" / "networks.py").is_file():
        raise Skip(f"no stylegan2-ada-pytorch checkout at {repo} (benchmarks/prepare_device_check.sh puts one there)")
    return str(repo)


def wait_for_build(part: Part) -> dict:
    """The background build's result, waiting for it while more than 30 s are left."""
    path = part.work / "nvidia-build.json"
    while part.left() > 30:
        if path.exists():
            build = json.loads(path.read_text())
            if build.get("status") != "running":
                return build
        time.sleep(0.5)
    return {"status": "timeout", "reason": "the CUDA ops were still building"}


def part_nvidia(plan: Plan, part: Part) -> None:
    """NVIDIA's generator on our weights: CUDA and reference ops, float32 and float16, best per batch."""
    repo = nvidia_repo(part.args)
    import numpy as np
    import torch

    from generator import fill_nvidia_state, max_abs_diff, nvidia_images, nvidia_init_kwargs
    from nvidia_baseline import load_nvidia_generator, reference_ops, time_nvidia_generator

    config = model_config(plan.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    build = wait_for_build(part) if device == "cuda" else {"status": "skipped", "reason": "no CUDA device"}
    if build.get("torch_cuda_arch_list"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = build["torch_cuda_arch_list"]  # as built: no rebuild
    cuda_ops = build.get("status") == "ok" and all(build.get("built", {}).values())
    weights = part.work / "weights.npz"
    if weights.exists():
        with np.load(weights) as npz:
            ours = {k: npz[k] for k in npz.files}
        source = "the generator part's init_variables(key 0)"
    else:  # the generator part did not get that far: the same init, here on the CPU
        import jax

        from gvjax.convert.nvidia import state_dict_from_variables
        from gvjax.model import init_variables

        ours = state_dict_from_variables(jax.device_get(init_variables(config, jax.random.key(0))), config)
        source = "init_variables(key 0) on the CPU"
    state = fill_nvidia_state(repo, config, ours)
    fp16_res = min(NUM_FP16_RES, len(config.block_resolutions))
    nets = {"float32": load_nvidia_generator(repo, nvidia_init_kwargs(config), state).to(device)}
    if device == "cuda":
        nets["float16"] = load_nvidia_generator(repo, nvidia_init_kwargs(config, fp16_res), state).to(device)
    torch.backends.cudnn.benchmark = True
    part.save(device=device, torch=torch.__version__, gpu=torch.cuda.get_device_name(0) if device == "cuda" else None,
              build=build, cuda_ops=cuda_ops, weights=source, num_fp16_res=fp16_res, cudnn_benchmark=True,
              tf32_convs=bool(torch.backends.cudnn.allow_tf32), rows=[], skipped_rows=[])

    def ops_used(ops: str):
        return reference_ops(repo) if ops == "reference" else contextlib.nullcontext()

    ours_path = part.work / "ours_float32.npz"
    if ours_path.exists():  # TF32 off: NVIDIA's float32 against ours; its float16 path as it runs
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with np.load(ours_path) as npz, ops_used("cuda" if cuda_ops else "reference"):
                for precision, G in nets.items():
                    theirs = nvidia_images(G, npz["z"], force_fp32=precision == "float32")
                    part.save(**{f"max_abs_diff_{precision}": max_abs_diff(npz["images"], theirs)})
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    variants = [(ops, p) for ops, p in NVIDIA_VARIANTS if p in nets and (ops == "reference" or cuda_ops)]
    for batch in plan.batches:
        for ops, precision in variants:
            if part.left() < 2 + 3 * plan.seconds:
                part.save(skipped_rows=part.result["skipped_rows"] + [[batch, ops, precision]])
                continue
            with ops_used(ops):
                r = time_nvidia_generator(nets[precision], batch, seconds=plan.seconds, device=device,
                                          force_fp32=precision == "float32")
            part.save(rows=part.result["rows"] + [{"batch": batch, "ops": ops, "precision": precision,
                                                   "images_per_s": r["images_per_s"], "seconds_per_batch": r["seconds_per_batch"]}])
    best = {}
    for r in part.result["rows"]:
        if r["images_per_s"] > best.get(str(r["batch"]), {}).get("images_per_s", 0):
            best[str(r["batch"])] = r
    part.save(status="ok", best_per_batch=best)


def song_features(path: pathlib.Path, plan: Plan):
    """AudioFeatures of the device check's song, saved by `--save-features` (the prepare script)."""
    import numpy as np

    from gvjax.audio import FEATURES, AudioFeatures

    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        if meta["fps"] != plan.fps or meta["song_seconds"] != plan.song_seconds:
            raise Skip(f"{path} holds features of {meta['song_seconds']} s at {meta['fps']} fps, not this song")
        return AudioFeatures(fps=meta["fps"], **{k: npz[k] for k in FEATURES}, peaks=meta["peaks"]), meta


def save_features(path: pathlib.Path, plan: Plan) -> None:
    """The check's song analysed here, for a device where librosa fails."""
    import numpy as np

    from gvjax.audio import compute_features
    from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav

    with tempfile.TemporaryDirectory() as tmp:
        song = write_wav(pathlib.Path(tmp) / "song.wav", synth_demo_track(plan.song_seconds), DEMO_SR)
        f = compute_features(song, plan.fps)
    meta = {"fps": plan.fps, "song_seconds": plan.song_seconds, "peaks": dict(f.peaks)}
    np.savez_compressed(path, meta=json.dumps(meta), **f.as_dict())


def part_render(plan: Plan, part: Part) -> None:
    """Song to muxed video through gvjax.render.pipeline.render_video, with its stages timed."""
    import jax

    from gvjax.audio import compute_features
    from gvjax.checkpoint import Checkpoint
    from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav
    from gvjax.model import init_variables
    from gvjax.precision import resolve_dtype
    from gvjax.render.config import RenderConfig
    from render import timed_render

    config = model_config(plan.model)
    song = write_wav(part.work / "song.wav", synth_demo_track(plan.song_seconds), DEMO_SR)
    features, t = None, time.perf_counter()
    try:  # 1 s of the song: the analysis works here, and librosa's numba functions are compiled (once a machine)
        compute_features(song, plan.fps, duration=1.0)
    except Exception as e:
        if not pathlib.Path(part.args.features).is_file():
            raise
        features, _ = song_features(pathlib.Path(part.args.features), plan)
        part.save(features_note=f"{type(e).__name__}: {e}"[:500] + f"; features analysed beforehand ({part.args.features})")
    part.save(features_warmup_s=time.perf_counter() - t)
    variables = jax.device_get(init_variables(config, jax.random.key(0)))
    ckpt = Checkpoint(config, {"G_ema": variables}, {"device_check": f"{plan.model}, init_variables(key 0)"}, {})
    cfg = RenderConfig(fps=plan.fps, size=plan.render_size, scale=plan.render_scale, batch=plan.render_batch,
                       dtype=resolve_dtype("auto"), timeline="all-warps")
    part.save(**jax_device(), model=plan.model, song_seconds=plan.song_seconds, size=list(plan.render_size),
              scale=plan.render_scale, batch=plan.render_batch, fps=plan.fps, dtype=cfg.dtype, timeline="all-warps")
    last = [0.0]

    def progress(frames: int, seconds: float) -> None:
        if seconds - last[0] >= 5:
            last[0] = seconds
            part.save(frames_so_far=frames, seconds_so_far=seconds)

    (part.work / "video").mkdir(exist_ok=True)
    r = timed_render(cfg, ckpt, song, part.work / "video" / "render.mp4", model_spec=plan.model, force=True,
                     cache_dir=part.work / "cache", features=features, on_batch=progress)
    for key in ("frames_so_far", "seconds_so_far"):
        part.result.pop(key, None)
    part.save(status="ok", **r, realtime_factor=plan.song_seconds / r["seconds"])


def part_train(plan: Plan, part: Part) -> None:
    """Images/s of the jitted train step (`train.bench`): the 256^2 benchmark config with a fresh D."""
    from gvjax.train.config import TrainConfig
    from train import bench

    train = TrainConfig(batch=plan.train_batch, pl_weight=plan.train_pl_weight, r1_gamma=plan.train_r1_gamma,
                        augment=plan.train_augment)
    part.save(**jax_device(), model=plan.train_model)
    workers = part.args.compile_workers or plan.compile_workers  # the variants (at most 3) compiled at once
    part.save(status="ok", **bench(model_config(plan.train_model), train, cycles=plan.train_cycles, compile_workers=workers))


PART_FUNCTIONS = {"parity": part_parity, "generator": part_generator, "nvidia-build": part_nvidia_build,
                  "nvidia": part_nvidia, "render": part_render, "train": part_train}


def run_part(args) -> int:
    """`--part NAME`: run one part in this process; its result goes to WORK/NAME.json."""
    part = Part(args.part, pathlib.Path(args.work), args.deadline, args)
    part.save()
    try:
        PART_FUNCTIONS[args.part](QUICK if args.quick else FULL, part)
    except Skip as e:
        part.save(status="skipped", reason=str(e))
    except BaseException as e:  # recorded; the check goes on with the next part
        traceback.print_exc()
        part.save(status="error", error=f"{type(e).__name__}: {e}"[:2000])
    return 0


# ------------------------------------------------------------------------------------------------
# The check: parts in order, each in its own process


def start_part(name: str, args, work: pathlib.Path, deadline: float, log) -> subprocess.Popen:
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--part", name, "--work", str(work),
           "--deadline", repr(deadline), "--nvidia-repo", args.nvidia_repo, "--features", args.features,
           "--compile-workers", str(args.compile_workers), *(["--quick"] if args.quick else [])]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TORCH_EXTENSIONS_DIR=str(work / "torch_extensions"),
               JAX_COMPILATION_CACHE_DIR=str(work / "jax_cache"))  # the parts share compiles (the model's init)
    if name.startswith("nvidia"):
        env["JAX_PLATFORMS"] = "cpu"  # jax only converts weights there; the GPU is NVIDIA's
    log.write(f"\n===== {name} =====\n")
    log.flush()
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """End a part's process group (the part and what it started: pytest, ffmpeg, nvcc)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def finish_part(name: str, proc: subprocess.Popen, work: pathlib.Path, cap: float, t0: float) -> dict:
    try:
        proc.wait(timeout=max(0.0, t0 + cap - time.time()))
        timed_out = False
    except subprocess.TimeoutExpired:
        stop(proc)
        timed_out = True
    path = work / f"{name}.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    if timed_out:
        result.update(status="timeout", error=f"stopped at its cap of {cap:.0f} s")
    elif result.get("status") in (None, "running"):
        result.update(status="error", error=f"the part's process ended (exit {proc.returncode}) without a result")
    result["part_s"] = round(time.time() - t0, 2)
    return result


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    for pkg in ("gvjax", "jax", "jaxlib", "flax", "numpy", "librosa", "imageio-ffmpeg", "torch"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    env["ffmpeg"] = os.environ.get("IMAGEIO_FFMPEG_EXE") or "imageio-ffmpeg's"
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    prepared = REPO / ".whl" / "commit.txt"  # a copy of the tree without .git: the commit it was prepared at
    if not env["commit"] and prepared.is_file():
        env["commit"] = prepared.read_text().strip() + " (when prepared)"
    if shutil.which("nvidia-smi"):
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return env


def run_check(args) -> dict:
    plan = QUICK if args.quick else FULL
    started = args.started or time.time()
    budget = args.budget or plan.budget_s
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    out = pathlib.Path(args.out or os.environ.get("OUT") or REPO / "out" / "device_check")
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="gvjax-device-check-"))
    result = {"device_check": 1, "quick": bool(args.quick),
              "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
              "budget_s": budget, "environment": environment()}
    builder = None
    try:
        with open(out / "device_check.log", "w") as log, open(out / "device_check_build.log", "w") as build_log:
            if "nvidia" in parts:  # nvcc runs on the CPU while the earlier parts use the GPU
                builder = start_part("nvidia-build", args, work, started + budget, build_log)
            for name in PARTS:
                if name not in parts:
                    continue
                left = started + budget - time.time()
                cap = min(plan.caps[name], left)
                if cap < plan.min_s[name]:
                    result[name] = {"status": "skipped", "reason": f"time budget: {left:.0f} s left, the part needs {plan.min_s[name]} s"}
                else:
                    t0 = time.time()
                    result[name] = finish_part(name, start_part(name, args, work, t0 + cap, log), work, cap, t0)
                print(f"[device_check] {name}: {result[name]['status']} {summary(name, result[name])}", file=sys.stderr, flush=True)
                if name == "nvidia" and builder is not None:
                    stop(builder)  # done with, or too late for
    finally:
        if builder is not None:
            stop(builder)
        if args.keep_work:
            print(f"[device_check] scratch files kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["total_s"] = round(time.time() - started, 1)
    result["targets"] = {} if args.quick else targets(result)
    result = finite(json.loads(json.dumps(result, default=_plain)))
    (out / "device_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "device_check.md").write_text(markdown(result))
    return result


# ------------------------------------------------------------------------------------------------
# The table


def _f(x, digits=1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def summary(name: str, r: dict) -> str:
    """One line of what a part measured, and why it stopped where it did not finish."""
    try:
        text = _numbers(name, r)
    except (KeyError, TypeError, ValueError):
        text = ""
    why = r.get("reason") or r.get("error") if r["status"] != "ok" else None
    return "; ".join(t for t in (text, why) if t)


def _numbers(name: str, r: dict) -> str:
    if name == "parity" and "passed" in r:
        return f"{r['passed']} passed, {r['failed']} failed, {r['errors']} errors"
    if name == "generator":
        return "; ".join(f"best {d}: {_f(b['images_per_s'])} images/s (batch {b['batch']}, {b['modconv']})"
                         for d, b in best_rows(r.get("rows", [])).items())
    if name == "nvidia" and r.get("rows"):
        b = max(r["rows"], key=lambda x: x["images_per_s"])
        diffs = ", ".join(f"{r[f'max_abs_diff_{p}']:.1e} (its {p})" for p in ("float32", "float16") if f"max_abs_diff_{p}" in r)
        return (f"best {_f(b['images_per_s'])} images/s (batch {b['batch']}, {b['ops']} ops, {b['precision']})"
                + (f"; max |ours float32 - NVIDIA| {diffs}" if diffs else ""))
    if name == "render" and "frames" in r:
        w, h = r["size"]
        return (f"{r['frames']} frames {w}x{h} in {_f(r['seconds'])} s ({_f(r['frames_per_s'])} frames/s overall, "
                f"loop {_f(r['loop_frames_per_s'])}; features {_f(r['features_s'])} s after a {_f(r.get('features_warmup_s'))} s "
                f"warm-up, first batch at {_f(r['first_batch_s'])} s)")
    if name == "render" and "frames_so_far" in r:
        return f"{r['frames_so_far']} frames in {_f(r['seconds_so_far'])} s before it stopped"
    if name == "train" and "images_per_s" in r:
        return f"{r['resolution']}^2 batch {r['batch']}: {_f(r['images_per_s'])} images/s (compile {r['compile_s']} s)"
    return ""


def best_rows(rows: list[dict]) -> dict:
    """dtype -> the generator row with the most images/s."""
    best = {}
    for r in rows:
        if r["images_per_s"] > best.get(r["dtype"], {}).get("images_per_s", 0):
            best[r["dtype"]] = r
    return best


def targets(result: dict) -> dict:
    """Issue 12's targets, where the figures exist: >= 2x NVIDIA, >= 500 images/s bf16, 3-min render < 60 s."""
    gen, nv, render = (result.get(k, {}) for k in ("generator", "nvidia", "render"))
    out = {}
    ours = gen.get("rows", [])
    theirs = nv.get("rows", [])
    if ours and theirs:
        ratios = {}
        for b in sorted({r["batch"] for r in theirs} & {r["batch"] for r in ours}):
            ratios[str(b)] = max(r["images_per_s"] for r in ours if r["batch"] == b) / max(r["images_per_s"] for r in theirs if r["batch"] == b)
        out["ours_over_nvidia_best_per_batch"] = ratios
        out["ours_over_nvidia_at_best"] = max(r["images_per_s"] for r in ours) / max(r["images_per_s"] for r in theirs)
        out["two_x_nvidia"] = out["ours_over_nvidia_at_best"] >= 2
    bf16 = best_rows(ours).get("bfloat16")
    if bf16:
        out["bf16_best_images_per_s"] = bf16["images_per_s"]
        out["bf16_500_per_s"] = bf16["images_per_s"] >= 500
    if "seconds" in render and "frames" in render:
        out["render_wall_s"] = render["seconds"]
        out["render_under_60_s"] = render["seconds"] < 60
    return out


def markdown(result: dict) -> str:
    env = result["environment"]
    device = next((result[p].get("device_kind") for p in ("generator", "render", "train") if result.get(p, {}).get("device_kind")), None)
    lines = [
        f"## gvjax device check{' (--quick)' if result['quick'] else ''}, {result['started']}",
        "",
        f"device: {env.get('nvidia_smi') or device or 'unknown'}; python {env['python']}, jax {env['jax']}, "
        f"torch {env['torch']}, commit {env['commit']}; {result['total_s']} s of a {result['budget_s']:.0f} s budget",
        "",
        "| part | status | seconds | result |",
        "|---|---|---:|---|",
    ]
    for name in PARTS:
        if name in result:
            r = result[name]
            lines.append(f"| {name} | {r['status']} | {_f(r.get('part_s'))} | {summary(name, r)} |")
    t = result.get("targets", {})
    met = []
    if "two_x_nvidia" in t:
        met.append(f"ours / NVIDIA at best {t['ours_over_nvidia_at_best']:.2f}x (>= 2x: {t['two_x_nvidia']})")
    if "bf16_500_per_s" in t:
        met.append(f"bf16 best {t['bf16_best_images_per_s']:.1f} images/s (>= 500: {t['bf16_500_per_s']})")
    if "render_under_60_s" in t:
        met.append(f"render {t['render_wall_s']:.1f} s wall (< 60 s: {t['render_under_60_s']})")
    if met:
        lines += ["", "targets (issue 12): " + "; ".join(met)]
    gen, nv = result.get("generator", {}), result.get("nvidia", {})
    nv_best = {int(b): r["images_per_s"] for b, r in nv.get("best_per_batch", {}).items()}
    if gen.get("rows"):
        lines += ["", f"generator, {gen.get('model')} ({gen.get('device_kind')}), random weights, z -> image:", "",
                  "| batch | dtype | modconv | images/s | TFLOP/s | compile s | vs NVIDIA best |", "|---:|---|---|---:|---:|---:|---:|"]
        for r in sorted(gen["rows"], key=lambda r: (r["batch"], r["dtype"], r["modconv"])):
            ratio = f"{r['images_per_s'] / nv_best[r['batch']]:.2f}x" if r["batch"] in nv_best else "-"
            lines.append(f"| {r['batch']} | {r['dtype']} | {r['modconv']} | {_f(r['images_per_s'])} | "
                         f"{_f(r['gflop_per_s'] / 1e3, 2)} | {_f(r['compile_s'])} | {ratio} |")
        if gen.get("skipped_rows"):
            lines.append(f"\nnot measured (time budget): {gen['skipped_rows']}")
    if nv.get("rows"):
        lines += ["", f"NVIDIA stylegan2-ada-pytorch on {nv.get('gpu') or nv.get('device')} (torch {nv.get('torch')}, "
                  f"cudnn.benchmark, CUDA ops built: {nv.get('cuda_ops')}, num_fp16_res {nv.get('num_fp16_res')}):", "",
                  "| batch | ops | precision | images/s |", "|---:|---|---|---:|"]
        for r in sorted(nv["rows"], key=lambda r: (r["batch"], r["ops"], r["precision"])):
            lines.append(f"| {r['batch']} | {r['ops']} | {r['precision']} | {_f(r['images_per_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the same code on a tiny config (tests, CPU)")
    p.add_argument("--json", action="store_true", help="print the JSON object on the last line of stdout")
    p.add_argument("--out", help="folder of device_check.json / .md / .log (default: $OUT, else out/device_check)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS))
    p.add_argument("--budget", type=float, help="seconds for all parts (default: 450, --quick 600)")
    p.add_argument("--started", type=float, help="epoch seconds the budget counts from (device_check.sh's start)")
    p.add_argument("--nvidia-repo", default=str(REPO / ".whl" / "stylegan2-ada-pytorch"), help="stylegan2-ada-pytorch checkout")
    p.add_argument("--features", default=str(REPO / ".whl" / "device_check_features.npz"),
                   help="the song's features, analysed beforehand (used only where librosa does not import)")
    p.add_argument("--compile-workers", type=int, default=0,
                   help="generator steps (and train step variants) compiled at once (default: 4, --quick 1)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch folder (weights, song, video)")
    p.add_argument("--save-features", metavar="NPZ", help="only: analyse the check's song (with --quick: the quick one) and save its features")
    p.add_argument("--part", choices=sorted(PART_FUNCTIONS), help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.save_features:
        save_features(pathlib.Path(args.save_features), QUICK if args.quick else FULL)
        return 0
    if args.part:
        return run_part(args)
    result = run_check(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
