"""Time NVIDIA's PyTorch StyleGAN2 or StyleGAN3 generator beside ours, in the same benchmark invocation.

This module contains no NVIDIA code. It imports ``training.networks`` from a checkout of
NVlabs/stylegan2-ada-pytorch (or, with ``module=SG3_NETWORKS``, ``training.networks_stylegan3`` from
a checkout of NVlabs/stylegan3) that the caller points to (``repo``), builds
``Generator(**init_kwargs)`` there, fills it from plain numpy arrays and times it on the CPU or a CUDA
device. Only torch and numpy are needed here (and scipy, which NVIDIA's StyleGAN3 constructor uses
to design its filters); nothing of gvjax is imported, so the baseline cannot be affected by our own code.
The two repositories use the same top-level package names, so one process can import only one.

On the CPU, NVIDIA's custom CUDA ops (``bias_act``, ``upfirdn2d``) never try to build their plugins:
they only do that for CUDA tensors and otherwise run their reference (pure torch) code, and
``conv2d_gradfix`` is inactive outside CUDA. With torch 2.13 (CPU build) no patching was needed.
StyleGAN3's ``filtered_lrelu`` likewise runs its reference code (``bias_act`` and ``upfirdn2d``
in pure torch) on CPU tensors; its modulated conv is always NVIDIA's fused (grouped) form.
On a CUDA device, ``build_cuda_ops`` builds the plugins (nvcc, ninja; cached in
``$TORCH_EXTENSIONS_DIR``) and ``reference_ops`` runs the reference code instead, so both can be timed.

Command line (prints one JSON line)::

    python benchmarks/nvidia_baseline.py --repo /work/nvref \\
        --fixture /work/shared/fixtures/stylegan2/ada_micro_skip --batch 4

``--stylegan3`` imports ``training.networks_stylegan3`` (a NVlabs/stylegan3 checkout) instead.
``--fixture PREFIX`` reads ``PREFIX_state.npz`` (keys ``G_ema.<name>``) and the init kwargs from the
``meta`` JSON of ``PREFIX_expected.npz``. Instead, ``--init-kwargs JSON`` (a JSON string or a path to
a JSON file) builds a generator with its own seeded random init (no weights needed), e.g. a 256x256
config.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from typing import Any, Iterator, Mapping

import numpy as np
import torch

__all__ = [
    "SG2_NETWORKS",
    "SG3_NETWORKS",
    "build_cuda_ops",
    "load_nvidia_generator",
    "reference_ops",
    "nvidia_state_dict",
    "nvidia_state_dict_shapes",
    "time_nvidia_generator",
    "load_fixture",
]


# --------------------------------------------------------------------------------------------------
# Importing NVIDIA's code from a checkout

SG2_NETWORKS = "training.networks"  # NVlabs/stylegan2-ada-pytorch
SG3_NETWORKS = "training.networks_stylegan3"  # NVlabs/stylegan3
_CHECKOUTS = {SG2_NETWORKS: "stylegan2-ada-pytorch", SG3_NETWORKS: "stylegan3"}


def _import_networks(repo: str, module: str = SG2_NETWORKS):
    """Put ``repo`` first on sys.path and import its ``module`` (``training.networks`` by default).

    NVIDIA's repositories use generic top-level package names (``training``, ``torch_utils``,
    ``dnnlib``); if one of them was already imported from somewhere else (e.g. a stylegan3 checkout),
    silently using it would time the wrong code, so that is an error.
    """
    if module not in _CHECKOUTS:
        raise ValueError(f"unknown NVIDIA networks module {module!r}; expected one of {sorted(_CHECKOUTS)}")
    repo = os.path.abspath(os.path.expanduser(repo))
    rel = module.replace(".", os.sep) + ".py"
    if not os.path.isfile(os.path.join(repo, rel)):
        raise FileNotFoundError(f"{repo!r} does not look like a {_CHECKOUTS[module]} checkout ({rel} is missing)")
    if repo not in sys.path:
        sys.path.insert(0, repo)
    for pkg in ("training", "torch_utils", "dnnlib"):
        mod = sys.modules.get(pkg)
        if mod is None:
            continue
        paths = [os.path.abspath(p) for p in getattr(mod, "__path__", [])]
        if paths and not any(p.startswith(repo + os.sep) or p == repo for p in paths):
            raise ImportError(
                f"module {pkg!r} is already imported from {paths}, not from {repo!r}; "
                "run the NVIDIA baseline in a fresh process"
            )
    networks = importlib.import_module(module)
    if not os.path.abspath(networks.__file__).startswith(repo + os.sep):
        raise ImportError(f"{module} was imported from {networks.__file__}, not {repo!r}")
    return networks


def _plain(obj: Any) -> Any:
    """Deep-copy nested dicts (e.g. from JSON or EasyDict) into plain dicts."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _construct(repo: str, init_kwargs: Mapping[str, Any], module: str = SG2_NETWORKS) -> torch.nn.Module:
    networks = _import_networks(repo, module)
    return networks.Generator(**_plain(init_kwargs))


# --------------------------------------------------------------------------------------------------
# Public API


# torch_utils.ops modules with a CUDA plugin, per checkout
_CUDA_OPS = {SG2_NETWORKS: ("bias_act", "upfirdn2d"), SG3_NETWORKS: ("bias_act", "upfirdn2d", "filtered_lrelu")}


def _ops_modules(repo: str, module: str = SG2_NETWORKS) -> dict:
    _import_networks(repo, module)
    return {name: importlib.import_module(f"torch_utils.ops.{name}") for name in _CUDA_OPS[module]}


def build_cuda_ops(repo: str, *, module: str = SG2_NETWORKS) -> dict:
    """Build (or load from ``$TORCH_EXTENSIONS_DIR``) the CUDA plugins of ``repo``'s custom ops.

    Returns ``{'built': {op: bool}, 'seconds': float, 'messages': [...]}``; an op that fails to
    build is False and its warning (NVIDIA's traceback) is in ``messages``; the ops then run their
    reference code.
    """
    import warnings

    modules = _ops_modules(repo, module)
    t0 = time.perf_counter()
    built, messages = {}, []
    for name, module in modules.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            built[name] = bool(module._init())
        messages += [f"{name}: {str(w.message)[-1500:]}" for w in caught]  # the traceback's end: the cause
    return {"built": built, "seconds": time.perf_counter() - t0, "messages": messages}


@contextlib.contextmanager
def reference_ops(repo: str, *, module: str = SG2_NETWORKS) -> Iterator[None]:
    """Run ``repo``'s custom ops through their reference (pure torch) code, even on CUDA."""
    modules = _ops_modules(repo, module)
    saved = {name: module._init for name, module in modules.items()}
    try:
        for module in modules.values():
            module._init = lambda: False
        yield
    finally:
        for name, module in modules.items():
            module._init = saved[name]



def load_nvidia_generator(
    repo: str, init_kwargs: dict, state: Mapping[str, np.ndarray], *, module: str = SG2_NETWORKS
) -> torch.nn.Module:
    """Build NVIDIA's ``<module>.Generator(**init_kwargs)`` from ``repo`` and load ``state``.

    ``module``: ``SG2_NETWORKS`` (``training.networks``, stylegan2-ada-pytorch) or ``SG3_NETWORKS``
    (``training.networks_stylegan3``, stylegan3).

    ``state`` maps NVIDIA's ``state_dict`` names (``synthesis.b4.const``, ``mapping.w_avg``, ...) to
    numpy arrays; every parameter and persistent buffer must be present and no extra name is
    accepted (``strict=True``). Arrays are cast to the dtype of the module's own tensors. Returns the
    generator on the CPU, in eval mode, with ``requires_grad_(False)`` (``time_nvidia_generator``
    moves it to its device).
    """
    G = _construct(repo, init_kwargs, module)
    own = G.state_dict()
    tensors = {}
    for name, arr in state.items():
        arr = np.asarray(arr)
        if name in own:
            ref = own[name]
            if tuple(arr.shape) != tuple(ref.shape):
                raise ValueError(
                    f"{name}: shape {tuple(arr.shape)} does not match the generator's {tuple(ref.shape)}"
                )
            tensors[name] = torch.from_numpy(np.ascontiguousarray(arr)).to(ref.dtype)
        else:
            tensors[name] = torch.from_numpy(np.ascontiguousarray(arr))  # reported by strict load
    G.load_state_dict(tensors, strict=True)
    return G.eval().requires_grad_(False)


def nvidia_state_dict_shapes(repo: str, init_kwargs: dict, *, module: str = SG2_NETWORKS) -> dict[str, tuple]:
    """Names and shapes of ``Generator(**init_kwargs).state_dict()``, in state_dict order."""
    G = _construct(repo, init_kwargs, module)
    return {name: tuple(int(s) for s in t.shape) for name, t in G.state_dict().items()}


def nvidia_state_dict(repo: str, init_kwargs: dict, *, module: str = SG2_NETWORKS, seed: int = 0) -> dict[str, np.ndarray]:
    """``Generator(**init_kwargs).state_dict()`` of a fresh generator (``torch.manual_seed(seed)``) as numpy.

    For what only NVIDIA's constructor computes, e.g. StyleGAN3's designed ``up_filter`` /
    ``down_filter`` buffers, next to weights copied from elsewhere.
    """
    torch.manual_seed(seed)
    G = _construct(repo, init_kwargs, module)
    return {name: t.detach().cpu().numpy() for name, t in G.state_dict().items()}


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[int]:
    old = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        if threads is not None:
            torch.set_num_threads(old)


def time_nvidia_generator(
    G: torch.nn.Module,
    batch: int,
    *,
    seconds: float = 5.0,
    threads: int | None = None,
    noise_mode: str = "const",
    seed: int = 0,
    fused_modconv: bool | None = None,
    device: str = "cpu",
    force_fp32: bool = True,
    warmup: int = 2,
) -> dict:
    """Throughput of ``G(z, c, truncation_psi=1, noise_mode=..., force_fp32=...)`` on ``device``.

    z is ``randn([batch, z_dim])`` from a ``torch.Generator`` seeded with ``seed`` (the same z every
    call); for a conditional G, c holds one-hot labels of seeded random classes. ``warmup`` calls (2;
    0 when the caller has warmed G up) are not timed; then G is called until ``seconds`` have
    elapsed (at least once). ``threads`` sets ``torch.set_num_threads`` for the measurement only
    (restored afterwards).

    ``fused_modconv=None`` keeps NVIDIA's own choice (at inference with ``force_fp32=True`` that is the
    fused path: one grouped convolution over the whole batch); ``True`` / ``False`` force one path
    (same math; the non-fused path scales activations instead of weights and can be faster on a CPU
    for batch > 1). A StyleGAN3 G has only the fused path and takes no ``fused_modconv`` (leave None).

    ``device``: 'cpu' or a CUDA device ('cuda'); there every call is synchronised before the
    clock is read. ``force_fp32=False`` lets a G built with ``num_fp16_res > 0`` run its top
    resolutions in float16, as NVIDIA's inference does.

    Returns ``{'images_per_s', 'batch', 'seconds_per_batch', 'iterations', 'threads', 'noise_mode',
    'device', 'fused_modconv', 'force_fp32'}``.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if noise_mode not in ("const", "random", "none"):
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
    G = G.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([batch, G.z_dim], generator=gen, dtype=torch.float32)
    c = torch.zeros([batch, G.c_dim], dtype=torch.float32)
    if G.c_dim > 0:
        cls = torch.randint(0, G.c_dim, [batch], generator=gen)
        c[torch.arange(batch), cls] = 1
    z, c = z.to(device), c.to(device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    extra = {} if fused_modconv is None else {"fused_modconv": bool(fused_modconv)}

    def call() -> torch.Tensor:
        img = G(z, c, truncation_psi=1, noise_mode=noise_mode, force_fp32=force_fp32, **extra)
        sync()
        return img

    with _num_threads(threads) as n_threads, torch.no_grad():
        for _ in range(warmup):  # warm-up, not timed
            call()
        iterations = 0
        t0 = time.perf_counter()
        while True:
            img = call()
            iterations += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        expected = (batch, G.img_channels, G.img_resolution, G.img_resolution)
        if tuple(img.shape) != expected:
            raise RuntimeError(f"unexpected output shape {tuple(img.shape)}, wanted {expected}")
    return {
        "images_per_s": batch * iterations / elapsed,
        "batch": batch,
        "seconds_per_batch": elapsed / iterations,
        "iterations": iterations,
        "threads": n_threads,
        "noise_mode": noise_mode,
        "device": str(device),
        "fused_modconv": "auto" if fused_modconv is None else bool(fused_modconv),
        "force_fp32": bool(force_fp32),
    }


def load_fixture(prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Init kwargs and ``G_ema`` state of a fixture: ``PREFIX_expected.npz`` meta, ``PREFIX_state.npz``.

    ``prefix`` may also be the path of the ``_state.npz`` file itself.
    """
    if prefix.endswith("_state.npz"):
        prefix = prefix[: -len("_state.npz")]
    with np.load(prefix + "_expected.npz", allow_pickle=False) as ex:
        meta = json.loads(str(ex["meta"]))
    init_kwargs = meta["G_init_kwargs"]
    with np.load(prefix + "_state.npz", allow_pickle=False) as st:
        state = {k[len("G_ema."):]: st[k] for k in st.files if k.startswith("G_ema.")}
    if not state:
        raise ValueError(f"{prefix}_state.npz has no 'G_ema.*' arrays")
    return init_kwargs, state


# --------------------------------------------------------------------------------------------------
# Command line


def _read_json_arg(text: str) -> dict:
    if os.path.isfile(text):
        with open(text) as f:
            return json.load(f)
    return json.loads(text)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", required=True, help="stylegan2-ada-pytorch checkout (stylegan3 with --stylegan3)")
    p.add_argument("--stylegan3", action="store_true", help="the repo is NVlabs/stylegan3: time training.networks_stylegan3")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fixture", help="fixture prefix (PREFIX_state.npz + PREFIX_expected.npz)")
    src.add_argument(
        "--init-kwargs",
        help="Generator init kwargs as JSON (or a JSON file); weights from its own seeded random init",
    )
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    p.add_argument("--seed", type=int, default=0, help="seed for z (and for a random init)")
    p.add_argument(
        "--fused-modconv", default="auto", choices=["auto", "true", "false"],
        help="modulated-conv path (auto: NVIDIA's default choice)",
    )
    p.add_argument("--device", default="cpu", help="torch device to time on ('cpu', 'cuda')")
    p.add_argument("--fp16", action="store_true", help="force_fp32=False: num_fp16_res layers run in float16")
    args = p.parse_args(argv)

    module = SG3_NETWORKS if args.stylegan3 else SG2_NETWORKS
    if args.fixture:
        init_kwargs, state = load_fixture(args.fixture)
        source = os.path.basename(args.fixture).removesuffix("_state.npz")
    else:
        init_kwargs = _read_json_arg(args.init_kwargs)
        state = nvidia_state_dict(args.repo, init_kwargs, module=module, seed=args.seed)
        source = "random_init"
    G = load_nvidia_generator(args.repo, init_kwargs, state, module=module)
    result = time_nvidia_generator(
        G, args.batch, seconds=args.seconds, threads=args.threads, noise_mode=args.noise_mode,
        seed=args.seed, fused_modconv={"auto": None, "true": True, "false": False}[args.fused_modconv],
        device=args.device, force_fp32=not args.fp16, warmup=args.warmup,
    )
    result.update(
        impl="nvidia_stylegan3" if args.stylegan3 else "nvidia_stylegan2_ada_pytorch",
        weights=source,
        img_resolution=int(G.img_resolution),
        params=int(sum(t.numel() for t in G.parameters())),
        torch=torch.__version__,
    )
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
