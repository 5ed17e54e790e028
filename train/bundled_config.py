"""The recipe of the bundled model: a 64x64 StyleGAN2 trained from scratch on procedural fruit, in stages (three at first, eight now).

Stage 1 (240 kimg from random init on 4000 images; shipped at commit 2c9a063):

    gvjax dataset fruit fruit64 --count 4000 --res 64 --seed 0
    python -m gvjax.train.bundled_config init init64      # random-init checkpoint of this config
    gvjax train fruit64 --from init64 --out run-fruit64 --kimg 240 --batch 16 --seed 0 --ada-kimg 100 --pl-weight 0 --snap 5 --sample-kimg 10
    python -m gvjax.train.bundled_config export run-fruit64/model gvjax/data/bundled_fruit64.npz --record record.json

Stage 2 (+300 kimg, shipped at commit 9c43e62) continues that model's G_ema and D (`--from
bundled` on a checkout that ships stage 1) on 20000 images of the same seed (the first 4000 are
stage 1's: a picture depends on (seed, index) only). `--augment-p` starts at stage 1's final
augmentation probability, which the D it continues was trained against (from p = 0 the trained D
beat G at once: loss_D 0.001 within 140 steps); `--ema-kimg 10` averages G over twice stage 1's
half-life:

    gvjax dataset fruit fruit64-20k --count 20000 --res 64 --seed 0
    gvjax train fruit64-20k --from bundled --out run-2 --kimg 300 --batch 16 --seed 1 --ada-kimg 100 --augment-p 0.28 --pl-weight 0 --ema-kimg 10 --snap 10 --sample-kimg 20

Stage 3 (+240 kimg, 780 in all) continues stage 2 the same way on the same images, from stage 2's final p:

    gvjax train fruit64-20k --from bundled --out run-3 --kimg 240 --batch 16 --seed 2 --ada-kimg 100 --augment-p 0.52 --pl-weight 0 --ema-kimg 10 --snap 10 --sample-kimg 20
    python -m gvjax.train.bundled_config record run-3 --previous gvjax/data/bundled_fruit64.npz --command "..." --out record.json
    python -m gvjax.train.bundled_config export run-3/model gvjax/data/bundled_fruit64.npz --record record.json

`record` adds the stage (its steps, kimg, final p and images, read from the run directory) and
its commands to the record of the model it started from; `export` writes G_ema, D and the record.

A run stopped early is finished at its last checkpoint by `gvjax train DATA --out RUN --resume
--kimg K` (K: that checkpoint's kimg), which writes `RUN/model` without training; a run's steps
do not depend on its length, so the shipped runs (started with `--kimg 400`, stopped with SIGTERM
after a checkpoint and finished there, as their records list) trained the steps of the commands
above. Stage 3 was also paused once at 110 kimg and resumed exactly (`--resume`).
`--pl-weight 0` leaves out path-length regularisation, to spend the CPU time on more steps;
the other options are `gvjax train`'s defaults. The shipped file records the commands, steps, wall time
and machine of every stage (see `gvjax.bundled`), and holds G_ema and D: a longer run continues
from it as a further stage, `gvjax train DATA --from bundled --out run-4 --kimg N --augment-p P ...`
with P its record's `final_augment_p` (a fresh Adam; exact resume needs the run directory).

Stage 3's model sits at the capacity of this config (16 channels at 64 px, 0.8 M parameters): a
further 120 kimg on 100000 fresh images (`--seed 3`), at `--lr 0.0015 --ema-kimg 20`, scored
61.5-64.2% confident against stage 3's 60.4-64.0%, grapes still missing. Stage 4 and later (the
shipped model; the record lists every command) widen the networks and change the augmentation:

    gvjax dataset fruit fruit64-100k --count 100000 --res 64 --seed 3
    # stage 4: a generator with twice the channels at 16, 32 and 64 px that draws the same images
    python -m gvjax.train.bundled_config widen bundled wide64 --channel-base 2048   # on a checkout that ships stage 3
    gvjax train fruit64-100k --from wide64 --out run-6 --kimg 400 --batch 16 --seed 5 --ada-kimg 100 --augment-p 0.7 --pl-weight 0 --ema-kimg 10 --snap 10 --sample-kimg 20 --keep 40
    gvjax train fruit64-100k --out run-6 --resume --kimg 120      # stopped after 120 kimg: writes run-6/model there
    # stage 5: geometric augmentation only, and G_ema's whole half-life from the first step
    gvjax train fruit64-100k --from run-6/model --out run-7 --kimg 400 --batch 16 --seed 7 --ada-kimg 100 --augment xflip,translate --augment-p 0.7 --pl-weight 0 --ema-kimg 10 --ema-rampup 0 --snap 10 --sample-kimg 20 --keep 40
    gvjax train fruit64-100k --out run-7 --resume --kimg 30
    # stage 6: a discriminator with the generator's channels (twice at 16, 32 and 64 px), judging as before
    python -m gvjax.train.bundled_config widen run-7/model wide-d --d-channel-base 2048 --seed 8
    gvjax train fruit64-100k --from wide-d --out run-8 --kimg 400 --batch 16 --seed 8 --ada-kimg 100 --augment xflip,translate --augment-p 0.9 --pl-weight 0 --ema-kimg 10 --ema-rampup 0 --snap 10 --sample-kimg 20 --keep 40
    gvjax train fruit64-100k --out run-8 --resume --kimg 10
    # stages 7 and 8: grapes pictures three, then twelve times over (the model had dropped them)
    python -m gvjax.train.bundled_config oversample fruit64-100k fruit64-100k-grapes3 --species grapes --times 3
    gvjax train fruit64-100k-grapes3 --from run-8/model --out run-9 --kimg 400 --batch 16 --seed 9 --ada-kimg 100 --augment xflip,translate --augment-p 0.97 --pl-weight 0 --ema-kimg 10 --ema-rampup 0 --snap 5 --sample-kimg 20 --keep 40
    gvjax train fruit64-100k-grapes3 --out run-9 --resume --kimg 9.984
    python -m gvjax.train.bundled_config oversample fruit64-100k fruit64-100k-grapes12 --species grapes --times 12
    gvjax train fruit64-100k-grapes12 --from run-9/model --out run-10 --kimg 400 --batch 16 --seed 10 --ada-kimg 100 --augment xflip,translate --augment-p 1 --pl-weight 0 --ema-kimg 10 --ema-rampup 0 --snap 2.5 --sample-kimg 20 --keep 40
    gvjax train fruit64-100k-grapes12 --out run-10 --resume --kimg 29.952
    # the record, one stage per run (each ends at the step its model was written at), and the file
    python -m gvjax.train.bundled_config record run-6 --previous gvjax/data/bundled_fruit64.npz --at-step 7500 --command "..." --out record-6.json
    ...                                               # run-7 .. run-10, each with --previous the record before
    python -m gvjax.train.bundled_config export run-10/model gvjax/data/bundled_fruit64.npz --record record-10.json

Each later stage starts from the run before it, finished at the checkpoint where it was stopped
(`--resume --kimg K` writes `RUN/model` there without training; the record lists the commands).
What each change measured (`benchmarks/bundled_quality.py`, confident fraction at psi 0.7):
stage 4 stayed at 63.3-64.6% from 80 to 120 kimg (so did averaging its last four checkpoints);
dropping the colour and cutout augmentations (which ADA had at p 0.72: nearly every picture D saw
had its hue turned) and the EMA ramp-up gave 66.4, 67.1 and 67.5% at 10, 20 and 30 kimg; the
wider discriminator (stage 6; it had half the generator's channels) gave 70.2% at 10 kimg; stage 7
69.9 and 69.1% at 5 and 10 kimg; stage 8 71.2-73.5% at its checkpoints from 10 to 30 kimg (every
2.5 kimg), and it was stopped at 30 kimg, the last checkpoint before the session's end, not the
best. With geometric augmentations only, ADA's p climbs to 1. Grapes stay dropped through all of it (0 of
1000 confident answers at every checkpoint; the most grape-like sample scored 0.25 at most), also
with three or twelve times the grapes pictures (stages 7 and 8). Tried and not shipped: a run on grapes pictures alone
(from stage 8 at 12.5 kimg) broke the generator within 2 kimg (D's loss 0.001; the samples
became noise), so stage 8 went on from its checkpoint on the mixed folder.

Earlier tries: grapes, the one species the model had dropped (0 of 1000 confident answers
at stage 3's 100 kimg), did not come back in 77 kimg on a folder where each grapes
picture appears three times (`oversample fruit64-20k fruit64-grapes3 --species grapes --times 3`,
21% grapes instead of 8%): none in 128 samples at psi 1 after 40 kimg, and the confident fraction
fell from 64% to 56%. Stage 3 went on from its 110-kimg checkpoint on the plain images instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib

import numpy as np
from flax.traverse_util import flatten_dict

from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError

BUNDLED_TRAIN_CONFIG = GeneratorConfig(
    z_dim=128,
    w_dim=128,
    img_resolution=64,
    mapping_layers=4,
    channel_base=1024,
    channel_max=128,
    architecture="skip",
)
INIT_SEED = 0
#: the shipped model's generator: stage 1's config widened by stage 4 (its D: `DiscriminatorConfig.for_generator`)
BUNDLED_CONFIG = dataclasses.replace(BUNDLED_TRAIN_CONFIG, channel_base=2048)


def write_init(path: str) -> pathlib.Path:
    """A gvjax checkpoint of BUNDLED_TRAIN_CONFIG with NVIDIA's random init (seed INIT_SEED)."""
    import jax

    from gvjax.checkpoint import save_checkpoint
    from gvjax.model import init_variables

    variables = jax.device_get(init_variables(BUNDLED_TRAIN_CONFIG, jax.random.key(INIT_SEED)))
    return save_checkpoint(path, BUNDLED_TRAIN_CONFIG, {"G_ema": variables}, provenance={"source": "random init", "seed": INIT_SEED})


def write_widened(model: str, out: str, channel_base: int | None = None, channel_max: int | None = None, seed: int = 0,
                  d_channel_base: int | None = None) -> pathlib.Path:
    """A gvjax checkpoint of `model` (a model spec: 'bundled' or a checkpoint directory) whose
    generators (G_ema, and G where the model has it) are widened to `channel_base` (and
    `channel_max`) by `gvjax.model.widen_generator`, and whose D is widened to `d_channel_base` by
    `gvjax.discriminator.widen_discriminator` (each only when given). The networks draw and judge as
    before; provenance and training record carry over, so `gvjax train --from OUT` continues the GAN game."""
    import dataclasses

    import jax

    from gvjax.bundled import BUNDLED_NAME, bundled_model
    from gvjax.checkpoint import load_checkpoint, read_config, save_checkpoint
    from gvjax.discriminator import DiscriminatorConfig, widen_discriminator
    from gvjax.model import widen_generator

    if model == BUNDLED_NAME:
        ckpt = bundled_model()
    else:
        present = read_config(pathlib.Path(model).absolute()).get("networks", [])
        ckpt = load_checkpoint(model, tuple(n for n in ("G_ema", "G", "D") if n in present))
    # G's new channels from key(seed), as before D could be widened (stage 4's wide64); D's from a key split off it
    g_key, d_key = jax.random.key(seed), jax.random.split(jax.random.key(seed))[1]
    networks, extra, widened = dict(ckpt.networks), dict(ckpt.extra), {"seed": seed}
    wide = ckpt.config
    if channel_base is not None:
        wide = dataclasses.replace(ckpt.config, channel_base=channel_base, channel_max=channel_max or ckpt.config.channel_max)
        for name in ("G_ema", "G"):
            if name in networks:
                networks[name] = widen_generator(networks[name], ckpt.config, wide, g_key)
        widened["from"] = {"channel_base": ckpt.config.channel_base, "channel_max": ckpt.config.channel_max}
    if d_channel_base is not None:
        info = extra.get("D") or {}
        if "D" not in networks or info.get("format") != "gvjax":
            raise GvjaxError(f"{model}: widening D needs a discriminator gvjax wrote")
        d_config = DiscriminatorConfig.from_dict(info["config"])
        d_wide = dataclasses.replace(d_config, channel_base=d_channel_base)
        networks["D"] = widen_discriminator(networks["D"], d_config, d_wide, d_key)
        extra["D"] = {**info, "config": d_wide.to_dict()}
        widened["D_from"] = {"channel_base": d_config.channel_base}
    provenance = dict(ckpt.provenance, widened=widened)
    return save_checkpoint(out, wide, networks, provenance=provenance, extra=extra)


def export_npz(model_dir: str, out: str, record: dict | None = None) -> pathlib.Path:
    """G_ema and D of a gvjax checkpoint -> one compressed .npz.

    Keys: G_ema's `params/...`, `buffers/...`; D's `D/params/...` (when the checkpoint has a D);
    `__meta__`, a JSON string with `config`, `provenance`, `record` and `D` (the discriminator's
    format and config, as a gvjax checkpoint's extra holds it). The D lets `gvjax train --from
    bundled` continue the GAN game instead of starting a fresh discriminator; G is left out (a
    start from G_ema alone starts G as G_ema), which keeps the file a few MB.
    """
    from gvjax.checkpoint import load_checkpoint, read_config

    has_d = "D" in read_config(pathlib.Path(model_dir).absolute()).get("networks", [])
    ckpt = load_checkpoint(model_dir, ("G_ema", "D") if has_d else ("G_ema",))
    trees = {collection: ckpt.variables[collection] for collection in ("params", "buffers")}
    if has_d and ckpt.extra.get("D"):
        trees["D"] = ckpt.networks["D"]
    arrays = {key: np.asarray(leaf, np.float32) for key, leaf in flatten_dict(trees, sep="/").items()}
    meta = {"config": ckpt.config.to_dict(), "provenance": ckpt.provenance, "record": record or {}}
    if "D" in trees:
        meta["D"] = ckpt.extra["D"]
    out = pathlib.Path(out)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez_compressed(tmp, __meta__=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
    tmp.replace(out)
    return out


def stage_record(run_dir: str | os.PathLike, *, stopped: str | None = None, wall_seconds: int | None = None,
                 at_step: int | None = None) -> dict:
    """One training stage, read from a finished run directory of `gvjax train`.

    `{kimg, steps, images, final_augment_p, wall_seconds}`: the steps and ADA p of the last line of
    `log.jsonl`, the image count of `config.json`, and the seconds from the run's first file
    (`reals.png`, written before the first step) to its last checkpoint (compiling, checkpoints
    and sample grids included). `wall_seconds` replaces that where the file times overstate it (a
    paused run); `stopped` (how the stage was stopped, when not at its --kimg) is added as given.
    `at_step`: the stage ends at that step (the checkpoint the next stage started from), and the
    log's later lines are not part of it.
    """
    from gvjax.train.run import CHECKPOINTS, read_log, read_run_config

    run = pathlib.Path(run_dir)
    log, meta = read_log(run), read_run_config(run)
    if at_step is not None:
        if not any(row["step"] == at_step for row in log):
            raise ValueError(f"{run}'s log has no step {at_step}")
        log = [row for row in log if row["step"] <= at_step]
    if not log:
        raise ValueError(f"{run} has no training steps in its log")
    steps, batch = log[-1]["step"], meta["train"]["batch"]
    last_checkpoint = max(p.stat().st_mtime for p in (run / CHECKPOINTS).iterdir())
    return {
        "kimg": steps * batch / 1000,
        "steps": steps,
        "images": meta["data"]["images"],
        "final_augment_p": log[-1]["augment_p"],
        "wall_seconds": round(last_checkpoint - (run / "reals.png").stat().st_mtime) if wall_seconds is None else wall_seconds,
    } | ({"stopped": stopped} if stopped else {})


def add_stage(previous: dict, stage: dict, commands: list[str]) -> dict:
    """The training record of a model trained on from one with record `previous` for one more stage.

    `stages` gains `stage`, `commands` gains the stage's `commands`; the totals (`steps`, `kimg`,
    `wall_seconds`) are the sums over the stages, `final_augment_p` is the last stage's. A record
    from before stages were kept counts as one stage (its totals).
    """
    stages = previous.get("stages") or [{k: previous[k] for k in ("kimg", "steps", "wall_seconds", "final_augment_p") if k in previous}]
    stages = [*stages, stage]
    return {
        **previous,
        "commands": [*previous.get("commands", []), *commands],
        "stages": stages,
        "steps": sum(s["steps"] for s in stages),
        "kimg": sum(s["kimg"] for s in stages),
        "wall_seconds": sum(s["wall_seconds"] for s in stages),
        "final_augment_p": stage["final_augment_p"],
    }


def oversample(data: str | os.PathLike, out: str | os.PathLike, species: str, times: int) -> dict[str, int]:
    """A copy of a labelled fruit folder in which each picture of `species` appears `times` times.

    `data` holds `gvjax dataset fruit` pictures and their `labels.json`; `out` (new) gets a hard
    link to every picture (a copy across file systems), `times - 1` more named `NAME_2.png`,
    `NAME_3.png`, ... for the pictures whose species is `species`, and the labels of all of them.
    Returns the number of pictures per species in `out`.
    """
    import shutil

    from gvjax.train.fruit import LABELS_FILE

    data, out = pathlib.Path(data), pathlib.Path(out)
    labels = json.loads((data / LABELS_FILE).read_text())
    if species not in labels["species"]:
        raise ValueError(f"no species {species!r} in {data / LABELS_FILE}; it has {', '.join(labels['species'])}")
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    target = labels["species"].index(species)
    out.mkdir()
    new = {"species": labels["species"], "labels": {}, "fruits": {}}
    for name, kind in labels["labels"].items():
        copies = [name] + ([f"{name[:-4]}_{k}.png" for k in range(2, times + 1)] if kind == target else [])
        for copy in copies:
            try:
                os.link(data / name, out / copy)
            except OSError:
                shutil.copyfile(data / name, out / copy)
            new["labels"][copy], new["fruits"][copy] = kind, labels["fruits"][name]
    (out / LABELS_FILE).write_text(json.dumps(new) + "\n")
    counts = np.bincount(list(new["labels"].values()), minlength=len(labels["species"]))
    return dict(zip(labels["species"], counts.tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description="The bundled model's recipe: init checkpoint, training record, oversampled data, widening, export.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="write the random-init checkpoint of stage 1")
    p.add_argument("out")
    p = sub.add_parser("record", help="the training record of a model continued from a bundled npz for one more stage")
    p.add_argument("run", help="the finished run directory of the new stage")
    p.add_argument("--previous", required=True, help="the npz the stage started from, or the .json record of the stage before")
    p.add_argument("--command", action="append", default=[], help="a command of the stage, in order (repeat)")
    p.add_argument("--stopped", help="how the stage was stopped, when not at its --kimg")
    p.add_argument("--at-step", type=int, help="the stage ends at this step (the checkpoint the next stage started from)")
    p.add_argument("--wall-seconds", type=int, help="the stage's wall time, where the run directory's file times overstate it (a paused run)")
    p.add_argument("--out", required=True, help="the JSON file to write (for export --record)")
    p = sub.add_parser("oversample", help="a copy of a labelled fruit folder with one species' pictures repeated")
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--species", required=True)
    p.add_argument("--times", type=int, required=True)
    p = sub.add_parser("widen", help="a checkpoint whose generator and/or D have more channels and compute the same images and logits")
    p.add_argument("model", help="'bundled' or a gvjax checkpoint directory")
    p.add_argument("out")
    p.add_argument("--channel-base", type=int, help="the generators' new channel_base")
    p.add_argument("--channel-max", type=int, help="the generators' new channel_max")
    p.add_argument("--d-channel-base", type=int, help="D's new channel_base (its 4x4 head keeps its channels)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new channels' init")
    p = sub.add_parser("export", help="G_ema and D of a gvjax checkpoint -> the bundled npz")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--record", help="JSON file with the training commands, steps, wall time and machine")
    args = ap.parse_args()
    if args.cmd == "init":
        print(write_init(args.out))
    elif args.cmd == "widen":
        print(write_widened(args.model, args.out, args.channel_base, args.channel_max, args.seed, args.d_channel_base))
    elif args.cmd == "oversample":
        print(json.dumps(oversample(args.data, args.out, args.species, args.times)))
    elif args.cmd == "record":
        from gvjax.bundled import read_npz_model

        stage = stage_record(args.run, stopped=args.stopped, wall_seconds=args.wall_seconds, at_step=args.at_step)
        previous = (json.loads(pathlib.Path(args.previous).read_text()) if args.previous.endswith(".json")
                    else read_npz_model(args.previous)[2]["record"])
        record = add_stage(previous, stage, args.command)
        pathlib.Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(record, indent=1))
    else:
        record = json.loads(pathlib.Path(args.record).read_text()) if args.record else None
        print(export_npz(args.model, args.out, record))


if __name__ == "__main__":
    main()
