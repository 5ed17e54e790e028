"""The recipe of the bundled model: a 64x64 StyleGAN2 trained from scratch on procedural fruit, in two stages.

Stage 1 (240 kimg from random init on 4000 images; shipped at commit 2c9a063):

    gvjax dataset fruit fruit64 --count 4000 --res 64 --seed 0
    python -m gvjax.train.bundled_config init init64      # random-init checkpoint of this config
    gvjax train fruit64 --from init64 --out run-fruit64 --kimg 240 --batch 16 --seed 0 --ada-kimg 100 --pl-weight 0 --snap 5 --sample-kimg 10
    python -m gvjax.train.bundled_config export run-fruit64/model gvjax/data/bundled_fruit64.npz --record record.json

Stage 2 continues that model's G_ema and D (`--from bundled` on a checkout that ships stage 1) on
20000 images of the same seed (the first 4000 are stage 1's: a picture depends on (seed, index)
only). `--augment-p` starts at stage 1's final augmentation probability, which the D it continues
was trained against (from p = 0 the trained D beat G at once: loss_D 0.001 within 140 steps);
`--ema-kimg 10` averages G over twice stage 1's half-life:

    gvjax dataset fruit fruit64-20k --count 20000 --res 64 --seed 0
    gvjax train fruit64-20k --from bundled --out run-2 --kimg 300 --batch 16 --seed 1 --ada-kimg 100 --augment-p 0.28 --pl-weight 0 --ema-kimg 10 --snap 10 --sample-kimg 20
    python -m gvjax.train.bundled_config export run-2/model gvjax/data/bundled_fruit64.npz --record record.json

A run stopped early is finished at its last checkpoint by `gvjax train fruit64-20k --out run-2
--resume --kimg K` (K: that checkpoint's kimg), which writes `run-2/model` without training. The
shipped stage 2 was started with `--kimg 400`, stopped after its 300-kimg checkpoint and finished
there that way (its record lists those commands); a run's steps do not depend on its length, so
`--kimg 300` above trains the same steps.
`--pl-weight 0` leaves out path-length regularisation, to spend the CPU time on more steps;
the other options are `gvjax train`'s defaults. The shipped file records the commands, steps, wall time
and machine of both stages (see `gvjax.bundled`), and holds G_ema and D: a longer run continues
from it as a further stage, `gvjax train DATA --from bundled --out run-3 --kimg N --augment-p P ...`
with P its record's `final_augment_p` (a fresh Adam; exact resume needs the run directory).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
from flax.traverse_util import flatten_dict

from gvjax.config import GeneratorConfig

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


def write_init(path: str) -> pathlib.Path:
    """A gvjax checkpoint of BUNDLED_TRAIN_CONFIG with NVIDIA's random init (seed INIT_SEED)."""
    import jax

    from gvjax.checkpoint import save_checkpoint
    from gvjax.model import init_variables

    variables = jax.device_get(init_variables(BUNDLED_TRAIN_CONFIG, jax.random.key(INIT_SEED)))
    return save_checkpoint(path, BUNDLED_TRAIN_CONFIG, {"G_ema": variables}, provenance={"source": "random init", "seed": INIT_SEED})


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


def main() -> None:
    ap = argparse.ArgumentParser(description="The bundled model's recipe: init checkpoint, export.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init")
    p.add_argument("out")
    p = sub.add_parser("export")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--record", help="JSON file with the training command, steps, wall time and machine")
    args = ap.parse_args()
    if args.cmd == "init":
        print(write_init(args.out))
    else:
        record = json.loads(pathlib.Path(args.record).read_text()) if args.record else None
        print(export_npz(args.model, args.out, record))


if __name__ == "__main__":
    main()
