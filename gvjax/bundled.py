"""The model gvjax uses when none is given: a 64x64 StyleGAN2 trained on procedural fruit.

The weights ship inside the package (`gvjax/data/bundled_fruit64.npz`, G_ema only, about
3 MB): one compressed npz with the variables under `params/...` and `buffers/...` and a
`__meta__` JSON string holding the generator config and the record of the training run
(command, steps, wall time, machine). It was trained with `gvjax train` from random init on
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


def read_npz_model(path: pathlib.Path) -> tuple[GeneratorConfig, dict, dict]:
    """(config, G_ema variables, meta) of a model npz as `gvjax.train.bundled_config.export_npz` writes it."""
    from gvjax.model import variable_shapes

    try:
        with np.load(path) as npz:
            meta = json.loads(str(npz["__meta__"]))
            variables = unflatten_dict({key: npz[key] for key in npz.files if key != "__meta__"}, sep="/")
    except (OSError, KeyError, ValueError) as e:
        raise GvjaxError(f"the bundled model {path} cannot be read ({e}); reinstall gvjax") from None
    config = GeneratorConfig.from_dict(meta["config"])
    check_shapes(variable_shapes(config), variables, f"{path.name}")
    return config, variables, meta


@functools.lru_cache(maxsize=1)
def bundled_model() -> Checkpoint:
    """The bundled model as a Checkpoint (config, {'G_ema': variables}, provenance)."""
    config, variables, meta = read_npz_model(BUNDLED_FILE)
    provenance = {
        "source": BUNDLED_NAME,
        "file": BUNDLED_FILE.name,
        "sha256": hashlib.sha256(BUNDLED_FILE.read_bytes()).hexdigest(),
        "weights": "trained on procedural fruit (gvjax dataset fruit) with gvjax train",
        "training": meta.get("record", {}),
    }
    return Checkpoint(config, {"G_ema": variables}, provenance, {})
