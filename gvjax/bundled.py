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
import zipfile

import numpy as np
from flax.traverse_util import unflatten_dict

from gvjax.checkpoint import Checkpoint, check_shapes
from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError

BUNDLED_NAME = "bundled"
BUNDLED_FILE = pathlib.Path(__file__).parent / "data" / "bundled_fruit64.npz"
NPZ_FORMAT = "gvjax-npz"  # a model npz of the bundled model's format, given by path (`bundled_config export` writes them)


def read_npz_model(path: str | pathlib.Path) -> tuple[GeneratorConfig, dict, dict]:
    """(config, networks, meta) of a model npz as `gvjax.train.bundled_config.export_npz` writes it.

    `networks['G_ema']` is `{'params', 'buffers'}` (the unprefixed keys); `networks['D']`, where the
    file has `D/...` keys and `meta['D']` describes them, is the discriminator's `{'params'}`.
    """
    from gvjax.model import variable_shapes

    path = pathlib.Path(path)
    hint = "; reinstall gvjax" if path == BUNDLED_FILE else ""
    try:
        if not zipfile.is_zipfile(path):
            raise GvjaxError(f"{path} is not a gvjax model npz: not an npz (zip) file{hint}")
        with np.load(path) as npz:  # allow_pickle=False: no object arrays, nothing executed
            if "__meta__" not in npz.files:
                raise GvjaxError(f"{path} is not a gvjax model npz: it has no __meta__ entry (`bundled_config export` writes one){hint}")
            meta = json.loads(str(npz["__meta__"]))
            tree = unflatten_dict({key: npz[key] for key in npz.files if key != "__meta__"}, sep="/")
        config = GeneratorConfig.from_dict(meta["config"])
    except (OSError, KeyError, ValueError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as e:
        raise GvjaxError(f"{path} is not a readable gvjax model npz ({type(e).__name__}: {e}){hint}") from None
    networks = {"G_ema": {k: v for k, v in tree.items() if k != "D"}}
    if "D" in tree and "D" in meta:
        networks["D"] = tree["D"]
    check_shapes(variable_shapes(config), networks["G_ema"], f"{path.name}")
    return config, networks, meta


def npz_checkpoint(path: str | pathlib.Path, source: str | None = None) -> Checkpoint:
    """A model npz (the bundled model's format, `read_npz_model`) as a Checkpoint: config, {'G_ema', 'D'}
    variables, provenance (`source`, default the path; sha256; the training record), extra {'D': ...}."""
    path = pathlib.Path(path)
    config, networks, meta = read_npz_model(path)
    provenance = {
        "source": str(path) if source is None else source,
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "weights": "trained on procedural fruit (gvjax dataset fruit) with gvjax train",
        "training": meta.get("record", {}),
    } | ({} if source == BUNDLED_NAME else {"format": NPZ_FORMAT})
    return Checkpoint(config, networks, provenance, {"D": meta["D"]} if "D" in networks else {})


@functools.lru_cache(maxsize=1)
def bundled_model() -> Checkpoint:
    """The bundled model as a Checkpoint (config, {'G_ema', 'D'} variables, provenance, extra {'D': ...})."""
    return npz_checkpoint(BUNDLED_FILE, BUNDLED_NAME)
