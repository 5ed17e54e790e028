"""The model gvjax uses when none is given.

Until the training issue ships trained weights, this is a seeded, randomly initialised
128x128 StyleGAN2 (NVIDIA's init distributions): it renders abstract shapes and textures,
and it needs no download.
"""

from __future__ import annotations

import functools

import jax

from gvjax.checkpoint import Checkpoint
from gvjax.config import GeneratorConfig
from gvjax.model import init_variables

BUNDLED_NAME = "bundled"
BUNDLED_SEED = 2026
BUNDLED_CONFIG = GeneratorConfig(
    z_dim=128,
    w_dim=128,
    img_resolution=128,
    mapping_layers=4,
    channel_base=4096,
    channel_max=128,
    architecture="skip",
)


@functools.lru_cache(maxsize=1)
def bundled_model() -> Checkpoint:
    """The bundled model as a Checkpoint (config, {'G_ema': variables}, provenance)."""
    variables = jax.tree.map(lambda x: jax.device_get(x), init_variables(BUNDLED_CONFIG, jax.random.key(BUNDLED_SEED)))
    provenance = {"source": BUNDLED_NAME, "seed": BUNDLED_SEED, "weights": "random init (NVIDIA's distributions)"}
    return Checkpoint(BUNDLED_CONFIG, {"G_ema": variables}, provenance, {})
