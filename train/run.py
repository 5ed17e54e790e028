"""A training run: its directory, orbax checkpoints, loss log, sample grids, and the loop.

    RUN/
      config.json        TrainConfig (as given and resolved), model family and kind, generator and
                         discriminator configs, data, starting model
      log.jsonl          one line per step: step, kimg, losses, augment p, seconds
      reals.png          a grid of training images
      fakes_init.png     G_ema's grid before training (also fakes_init.npy, float32)
      fakes<step>.png    G_ema's grid every `sample_kimg` (z of seeds 0.., noise 'const')
      checkpoints/<step> orbax CheckpointManager: G, G_ema, D, optimiser states, step, RNG key,
                         augment p, ADA and path-length accumulators; the last `keep` are kept
      model/             the final gvjax checkpoint (G_ema, G, D) for `gvjax render --model`

A checkpoint is written at step 0 and every `snapshot_kimg`; `resume` restores the latest
and truncates the log to it, so a run killed at any moment (kill -9 included) continues
exactly: the data order and every random draw are functions of (seed, step).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import shutil
import time
from typing import Any, Callable

import jax
import numpy as np

from gvjax import models
from gvjax.checkpoint import save_checkpoint
from gvjax.distributed import global_mesh, peers_guard, put_global, sync, to_host
from gvjax.discriminator import DiscriminatorConfig, d_variable_shapes, init_d_variables, load_gvjax_discriminator
from gvjax.errors import GvjaxError, check_interrupt, interrupts_between_batches
from gvjax.generate import z_for_seed
from gvjax.images import image_grid, to_uint8, write_png
from gvjax.train.config import TrainConfig, model_kind
from gvjax.train.data import ImageDataset, Prefetcher, to_float
from gvjax.train.step import METRICS, init_state, jit_train_step, make_networks

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINTS = "checkpoints"
MODEL = "model"


@dataclasses.dataclass(frozen=True)
class StartModel:
    """Where a run starts: generator config and variables; D optional (None: a fresh D from the seed).

    g_config: a model family's config (StyleGAN2 or StyleGAN3, `gvjax.models`);
    g: G's variables (None: G_ema's); g_ema: G_ema's `{'params', 'buffers'}`;
    d_config / d: the discriminator (both or neither); spec / provenance: recorded in config.json.
    """

    g_config: Any
    g_ema: dict
    g: dict | None = None
    d_config: DiscriminatorConfig | None = None
    d: dict | None = None
    spec: str = ""
    provenance: dict = dataclasses.field(default_factory=dict)


def start_model(
    ckpt, spec: str, *, load_d: Callable[[dict, dict], tuple[DiscriminatorConfig, dict]] | None = None,
    warn: Callable[[str], None] = print,
) -> StartModel:
    """The StartModel of a loaded model (a `gvjax.checkpoint.Checkpoint`): its G_ema, its G, and the D to start from.

    The D: one gvjax wrote (`extra['D']['format'] == 'gvjax'`) is used as is; any other (a converted
    NVIDIA pickle's D, StyleGAN2 or StyleGAN3 alike) goes through `load_d(raw, extra['D'])`, the
    convert stage's loader, which the caller passes (the training stage does not import the convert
    stage). A model without D: a fresh D; a D that cannot be loaded: `warn` says why, and training
    starts from a fresh D.
    """
    d_config = d = None
    if "D" in ckpt.networks:
        info = ckpt.extra.get("D") or {}
        load = load_gvjax_discriminator if info.get("format") == "gvjax" else load_d
        try:
            if load is None:
                raise GvjaxError(f"no loader for a {info.get('format') or 'unknown'} discriminator")
            d_config, d = load(ckpt.networks["D"], info)
        except GvjaxError as e:
            warn(f"{e}; training starts from a fresh discriminator")
            d_config = d = None
    return StartModel(ckpt.config, ckpt.networks["G_ema"], ckpt.networks.get("G"), d_config, d, spec, ckpt.provenance)


def fresh_d_config(g_config: Any) -> DiscriminatorConfig:
    """The discriminator NVIDIA's training builds for a generator (a fresh D).

    StyleGAN2: `DiscriminatorConfig.for_generator`. StyleGAN3: the StyleGAN2 discriminator that
    stylegan3's train.py uses for every config, with G's `--cbase` / `--cmax` (for R, train.py
    doubles G's, so D has half of R's) and conv_clamp.
    """
    kind = model_kind(g_config)
    if kind == "stylegan2":
        return DiscriminatorConfig.for_generator(g_config)
    halve = 2 if kind == "stylegan3-r" else 1
    return DiscriminatorConfig(
        c_dim=g_config.c_dim, img_resolution=g_config.img_resolution, img_channels=g_config.img_channels,
        channel_base=max(1, g_config.channel_base // halve), channel_max=max(1, g_config.channel_max // halve),
        conv_clamp=g_config.conv_clamp,
    )


@dataclasses.dataclass(frozen=True)
class RunResult:
    run_dir: pathlib.Path
    steps: int
    kimg: float
    seconds: float
    images_per_second: float
    model: pathlib.Path
    dataset_images: int
    skipped_images: int
    new_steps: int  # steps trained by this call (0: a resume at the run's --kimg only writes model/)


# --- run directory ----------------------------------------------------------------------------------


def _write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_run_config(run_dir: pathlib.Path) -> dict:
    try:
        return json.loads((run_dir / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise GvjaxError(f"{run_dir} is not a training run (no {CONFIG_FILE})") from None
    except json.JSONDecodeError as e:
        raise GvjaxError(f"{run_dir / CONFIG_FILE} is not valid JSON: {e}") from None


def read_log(run_dir: pathlib.Path) -> list[dict]:
    """The parsed lines of RUN/log.jsonl (a torn last line, from a kill, is ignored)."""
    path = pathlib.Path(run_dir) / LOG_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_log(run_dir: pathlib.Path, step: int) -> None:
    """Keep the log lines of steps <= `step` (atomically)."""
    path = run_dir / LOG_FILE
    kept = [r for r in read_log(run_dir) if r.get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)


def sample_fn(g_config: Any):
    """jit: (G_ema variables, z [N, z_dim]) -> images `[N, R, R, C]` (noise 'const', psi 1)."""
    gen = models.generator(g_config)
    return jax.jit(jax.vmap(lambda v, z: gen.apply(v, z, noise_mode="const"), in_axes=(None, 0)))


def grid_z(g_config: Any, grid: tuple[int, int]) -> np.ndarray:
    """z of seeds 0 .. cols*rows-1, as `gvjax generate` draws them: `[N, z_dim]`."""
    return np.stack([z_for_seed(s, g_config.z_dim) for s in range(grid[0] * grid[1])])


# --- checkpoints ------------------------------------------------------------------------------------


def has_checkpoint(run_dir: pathlib.Path) -> bool:
    """Whether the run has a finished checkpoint (orbax's temporary directories do not count)."""
    root = pathlib.Path(run_dir) / CHECKPOINTS
    return root.is_dir() and any(p.name.isdigit() for p in root.iterdir())


def _manager(run_dir: pathlib.Path, keep: int):
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(run_dir.absolute() / CHECKPOINTS, options=options)


def _save(manager, state: dict) -> None:
    import orbax.checkpoint as ocp

    manager.save(int(state["step"]), args=ocp.args.StandardSave(state), force=True)
    manager.wait_until_finished()


def _abstract_state(nets, sharding) -> dict:
    g = models.variable_shapes(nets.g_config)
    d = d_variable_shapes(nets.d_config)
    tree = jax.eval_shape(lambda g, d: init_state(nets, g, g, d, 0), g, d)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)


def _restore(manager, nets, sharding) -> dict:
    import orbax.checkpoint as ocp

    step = manager.latest_step()
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(_abstract_state(nets, sharding)))
    except Exception as e:  # orbax raises many types for damaged data
        raise GvjaxError(f"checkpoint {step} of the run cannot be read: {type(e).__name__}: {str(e).splitlines()[0]}") from None


# --- the run ----------------------------------------------------------------------------------------


def _init_networks(start: StartModel, train: TrainConfig):
    """(nets, G, G_ema, D variables, d_config) for a new run."""
    g_config = start.g_config
    d_config = start.d_config or fresh_d_config(g_config)
    nets = make_networks(g_config, d_config, train)
    d = start.d
    if d is None:
        d = jax.device_get(init_d_variables(d_config, jax.random.fold_in(jax.random.key(train.seed), 1)))
    g = start.g if start.g is not None else start.g_ema
    return nets, g, start.g_ema, d


def _start_run(run_dir, config, nets, start, g, g_ema, d, g_config, d_config, data_info, dataset, rep, primary):
    """Make a new run's directory: config.json, the reals / fakes_init grids, the step-0 checkpoint.

    Returns (meta, state, manager); meta is None on processes other than 0.
    """
    meta = None
    if primary:
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "train": config.to_dict(),
            "resolved": nets.train.to_dict(),
            "family": nets.family,
            "kind": model_kind(g_config),
            "generator": g_config.to_dict(),
            "discriminator": d_config.to_dict(),
            "data": data_info,
            "from": {"spec": start.spec, "provenance": start.provenance, "D": "given" if start.d is not None else "fresh"},
            "devices": [str(dev) for dev in jax.devices()],
        }
        _write_json_atomic(run_dir / CONFIG_FILE, meta)
    host_state = init_state(nets, g, g_ema, d, config.seed)
    state = put_global(jax.device_get(host_state), rep)
    zs = grid_z(g_config, config.grid)
    if primary:
        reals = dataset.images[np.arange(config.grid[0] * config.grid[1]) % len(dataset)]
        write_png(run_dir / "reals.png", image_grid(reals, config.grid))
        fakes = np.asarray(sample_fn(g_config)(to_host(state["G_ema"]), zs))
        np.save(run_dir / "fakes_init.npy", fakes)
        write_png(run_dir / "fakes_init.png", image_grid(to_uint8(fakes), config.grid))
    manager = _manager(run_dir, config.keep)
    _save(manager, state)
    return meta, state, manager


def train(
    data: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    start: StartModel | Callable[[], StartModel] | None = None,
    *,
    resume: bool = False,
    kimg: float | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train (or, with `resume`, continue) the run in `run_dir` on the images in `data`.

    A new run needs `config` and `start` (a StartModel, or a function returning one, called
    only when needed); `run_dir` must not exist or be empty. With `resume` the run's own
    config.json is used (`kimg` may extend its length) and training continues from its latest
    checkpoint; a run killed before its first checkpoint starts again from `start`.
    """
    run_dir = pathlib.Path(run_dir)
    primary = jax.process_index() == 0
    if not primary:
        log = lambda line: None  # noqa: E731  (process 0 speaks for the run)
    fresh_restart = False
    if resume and not has_checkpoint(run_dir):
        if start is None or config is None and not (run_dir / CONFIG_FILE).exists():
            raise GvjaxError(f"{run_dir} has no checkpoint to resume from")
        if (run_dir / CONFIG_FILE).exists():
            config = TrainConfig.from_dict(read_run_config(run_dir)["train"])
        resume, fresh_restart = False, True
    if callable(start) and not resume:
        start = start()
    if resume:
        meta = read_run_config(run_dir)
        config = TrainConfig.from_dict(meta["train"])
        g_config = models.config_from_dict(meta.get("family", "stylegan2"), meta["generator"])
        d_config = DiscriminatorConfig.from_dict(meta["discriminator"])
        if kimg is not None:
            config = dataclasses.replace(config, kimg=kimg)
            meta["train"] = config.to_dict()
        nets = make_networks(g_config, d_config, config)
    else:
        if config is None or start is None:
            raise GvjaxError("a new run needs a starting model (--from)")
        if kimg is not None:
            config = dataclasses.replace(config, kimg=kimg)
        if run_dir.exists() and any(run_dir.iterdir()) and not fresh_restart:
            raise GvjaxError(f"{run_dir} already exists and is not empty (continue it with --resume)")
        if not run_dir.absolute().parent.is_dir():
            raise GvjaxError(f"output directory {run_dir.absolute().parent} does not exist")
        nets, g, g_ema, d = _init_networks(start, config)
        g_config, d_config = nets.g_config, nets.d_config

    sync("while checking its run directory")  # nothing is written before every process got here
    mesh = global_mesh("data", divides=config.batch)
    from jax.sharding import NamedSharding, PartitionSpec

    rep, per_example = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    dataset = ImageDataset(data, g_config.img_resolution, g_config.img_channels)
    if len(dataset.skipped):
        log(f"skipped {len(dataset.skipped)} unreadable image(s), e.g. {dataset.skipped[0]}")
    data_info = {"path": str(pathlib.Path(data).absolute()), "images": len(dataset), "skipped": len(dataset.skipped)}

    manager = None
    if resume:
        meta["data"] = data_info
        if primary:
            _write_json_atomic(run_dir / CONFIG_FILE, meta)
        manager = _manager(run_dir, config.keep)
        if manager.latest_step() is None:
            raise GvjaxError(f"{run_dir} has no checkpoint to resume from")
        state = _restore(manager, nets, rep)
        step0 = int(state["step"])
        if primary:
            truncate_log(run_dir, step0)
        log(f"resumed {run_dir} at step {step0} ({step0 * config.batch / 1000:.3f} kimg)")
    else:
        created = not run_dir.exists()
        try:
            meta, state, manager = _start_run(run_dir, config, nets, start, g, g_ema, d, g_config, d_config, data_info, dataset, rep, primary)
        except BaseException:
            if created and primary:  # nothing of a run that never reached its first checkpoint is left
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        step0 = 0

    total = config.total_steps
    snapshot_every, sample_every = config.steps_per(config.snapshot_kimg), config.steps_per(config.sample_kimg)
    step_fn = jit_train_step(nets, mesh)
    sampler = sample_fn(g_config)
    zs = grid_z(g_config, config.grid)
    pid, nproc = jax.process_index(), jax.process_count()
    local = config.batch // nproc
    log(f"training {total - step0} steps (to {config.kimg:g} kimg, batch {config.batch}, {len(jax.devices())} device(s)) "
        f"on {len(dataset)} images at {g_config.img_resolution}x{g_config.img_resolution}")
    t_start = time.time()
    t_steps = None
    log_file = open(run_dir / LOG_FILE, "a") if primary else None
    try:
        with peers_guard("while training"), Prefetcher(dataset, config.seed, config.batch, step0) as prefetch, \
                interrupts_between_batches():  # Ctrl-C and SIGTERM stop between steps, never inside jax
            for step in range(step0, total):
                check_interrupt()
                s, images = prefetch.next()
                assert s == step
                reals = put_global(to_float(images[pid * local : (pid + 1) * local]), per_example)
                t0 = time.time()
                state, metrics = step_fn(state, reals, step)
                metrics = {k: float(v) for k, v in to_host(metrics).items()}
                if not all(math.isfinite(metrics[k]) for k in ("loss_G", "loss_D")):
                    raise GvjaxError(
                        f"training diverged at step {step + 1}: the loss is not finite (lower --lr?); "
                        f"the last checkpoint in {run_dir / CHECKPOINTS} is kept"
                    )
                if t_steps is None:
                    t_steps = time.time()  # after the first (compiling) step
                done = step + 1
                record = {"step": done, "kimg": round(done * config.batch / 1000, 6)}
                record.update({k: (None if math.isnan(metrics[k]) else metrics[k]) for k in METRICS})
                record["sec"] = round(time.time() - t0, 4)
                if log_file is not None:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                if done % sample_every == 0 or done == total:
                    if primary:
                        fakes = np.asarray(sampler(to_host(state["G_ema"]), zs))
                        write_png(run_dir / f"fakes{done:06d}.png", image_grid(to_uint8(fakes), config.grid))
                    log(f"step {done}/{total}  kimg {record['kimg']:.3f}  loss_G {metrics['loss_G']:.3f}  "
                        f"loss_D {metrics['loss_D']:.3f}  p {metrics['augment_p']:.3f}  {time.time() - t_start:.0f}s")
                if done % snapshot_every == 0 or done == total:
                    _save(manager, state)
    finally:
        if log_file is not None:
            log_file.close()
    seconds = time.time() - t_start
    timed_steps = total - step0 - 1
    ips = timed_steps * config.batch / (time.time() - t_steps) if t_steps and timed_steps > 0 else float("nan")
    model_dir = run_dir / MODEL
    host = to_host(state)
    if primary:  # a local write (see gvjax.checkpoint): the other processes do not wait for it
        save_checkpoint(
            model_dir, g_config, {"G_ema": host["G_ema"], "G": host["G"], "D": host["D"]},
            provenance={"source": "gvjax train", "run": str(run_dir.absolute()), "step": total,
                        "kimg": total * config.batch / 1000, "from": (meta.get("from") or {}).get("spec", "")},
            extra={"D": {"format": "gvjax", "class_name": "gvjax.discriminator.Discriminator", "config": d_config.to_dict()},
                   "train": config.to_dict()},
            force=True,
        )
    return RunResult(run_dir, total, total * config.batch / 1000, seconds, ips, model_dir, len(dataset), len(dataset.skipped), total - step0)
