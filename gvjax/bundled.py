"""The model gvjax uses when none is given: a 64x64 StyleGAN2 trained on procedural fruit.

The weights ship inside the package (`gvjax/data/bundled_fruit64.npz`, G_ema and D, about
9 MB): one compressed npz with G_ema's variables under `params/...` and `buffers/...`, D's under
`D/params/...`, and a `__meta__` JSON string holding the generator config, the discriminator's
and the record of the training run (commands, steps, wall time, machine). With its D,
`gvjax train --from bundled` continues the GAN game rather than starting a fresh discriminator.
It was trained with `gvjax train` from random init on
`gvjax dataset fruit` images; the recipe is `gvjax.train.bundled_config`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib

import numpy as np
from flax.traverse_util import unflatten_dict

from gvjax.checkpoint import Checkpoint, check_shapes
from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError

BUNDLED_NAME = "bundled"
BUNDLED_FILE = pathlib.Path(__file__).parent / "data" / "bundled_fruit64.npz"


def read_npz_model(path: str | pathlib.Path) -> tuple[GeneratorConfig, dict, dict]:
    """(config, networks, meta) of a model npz as `gvjax.train.bundled_config.export_npz` writes it.

    `networks['G_ema']` is `{'params', 'buffers'}` (the unprefixed keys); `networks['D']`, where the
    file has `D/...` keys and `meta['D']` describes them, is the discriminator's `{'params'}`.
    """
    from gvjax.model import variable_shapes

    path = pathlib.Path(path)
    try:
        with np.load(path) as npz:
            meta = json.loads(str(npz["__meta__"]))
            tree = unflatten_dict({key: npz[key] for key in npz.files if key != "__meta__"}, sep="/")
    except (OSError, KeyError, ValueError) as e:
        raise GvjaxError(f"the bundled model {path} cannot be read ({e}); reinstall gvjax") from None
    networks = {"G_ema": {k: v for k, v in tree.items() if k != "D"}}
    if "D" in tree and "D" in meta:
        networks["D"] = tree["D"]
    config = GeneratorConfig.from_dict(meta["config"])
    check_shapes(variable_shapes(config), networks["G_ema"], f"{path.name}")
    return config, networks, meta


@functools.lru_cache(maxsize=1)
def bundled_model() -> Checkpoint:
    """The bundled model as a Checkpoint (config, {'G_ema', 'D'} variables, provenance, extra {'D': ...})."""
    config, networks, meta = read_npz_model(BUNDLED_FILE)
    provenance = {
        "source": BUNDLED_NAME,
        "file": BUNDLED_FILE.name,
        "sha256": hashlib.sha256(BUNDLED_FILE.read_bytes()).hexdigest(),
        "weights": "trained on procedural fruit (gvjax dataset fruit) with gvjax train",
        "training": meta.get("record", {}),
    }
    return Checkpoint(config, networks, provenance, {"D": meta["D"]} if "D" in networks else {})
