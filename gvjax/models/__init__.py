"""Model families and the one registry that builds a model from a checkpoint's metadata.

Each family is a module exporting `FAMILY` (its name in `config.json`), `Config` (a frozen
dataclass with `to_dict` / `from_dict`), `Generator` (a Flax module, one example at a time:
`map`, `synthesize`), `init_variables(config, key)` and `variable_shapes(config)`; variables
are `{'params': ..., 'buffers': ...}` in NVIDIA's state-dict names.

Synthesis can be cut between *stages* (render's warps do that). Each family exports
`stage_names(config)`, `cut_stage(config, resolution=, layer=)` (the stage a warp cuts after),
`preview_stage(config, res)` (or a one-line error when the family has no preview) and
`WIDENS` (whether `Generator(config, canvas=(rows, cols))` draws a wider frame),
`FRAME_INPUTS` and `frame_inputs(config, variables)` (per-frame inputs beyond ws, with defaults:
StyleGAN3's `transform`). Its `Generator.run_stages(ws, carry, start=, stop=, noise_mode=, noise_key=, **frame_inputs)`
runs a range of stages on `carry = {'x': features, 'img': image or None}`; after the last stage
`carry['img']` is the image.

    stylegan2   gvjax.model           GeneratorConfig
    stylegan3   gvjax.models.stylegan3  StyleGAN3Config (T and R)
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

from gvjax.errors import GvjaxError

#: family name -> module path
FAMILIES = {"stylegan2": "gvjax.model", "stylegan3": "gvjax.models.stylegan3"}


def family_module(family: str) -> ModuleType:
    """The module of family `family` ('stylegan2', 'stylegan3'); a one-line GvjaxError otherwise."""
    if family not in FAMILIES:
        raise GvjaxError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[family])


def family_of(config: Any) -> str:
    """The family name of a config instance."""
    for family in FAMILIES:
        if isinstance(config, family_module(family).Config):
            return family
    raise TypeError(f"{type(config).__name__} is not the config of a known model family")


def config_from_dict(family: str, d: dict) -> Any:
    """The config of `family` from its `config.json` entries (checked as its `from_dict` checks)."""
    return family_module(family).Config.from_dict(d)


def generator(config: Any, **kwargs):
    """The Flax generator of `config`'s family (`kwargs`: modconv, dtype, ...)."""
    return family_module(family_of(config)).Generator(config, **kwargs)


def variable_shapes(config: Any) -> dict:
    """Shapes and dtypes of the generator variables `config` implies."""
    return family_module(family_of(config)).variable_shapes(config)


def stage_names(config: Any) -> tuple[str, ...]:
    """The synthesis stages of `config`'s generator, in execution order."""
    return family_module(family_of(config)).stage_names(config)


def cut_stage(config: Any, *, resolution: int | None = None, layer: str | int | None = None) -> int:
    """The stage index a warp at `resolution` (StyleGAN2) or `layer` cuts after; a one-line GvjaxError if none."""
    return family_module(family_of(config)).cut_stage(config, resolution=resolution, layer=layer)


def preview_stage(config: Any, preview_res: int) -> int:
    """The stage a preview render stops after; a one-line GvjaxError where the family has no preview."""
    return family_module(family_of(config)).preview_stage(config, preview_res)


def frame_inputs(config: Any, variables: dict) -> dict:
    """Per-frame synthesis inputs of the family (name -> default numpy array of one frame)."""
    return family_module(family_of(config)).frame_inputs(config, variables)


def frame_inputs_names(config: Any) -> tuple[str, ...]:
    """Names of the family's per-frame synthesis inputs (its `FRAME_INPUTS`)."""
    return family_module(family_of(config)).FRAME_INPUTS


@functools.lru_cache(maxsize=32)
def stage_shapes(config: Any) -> tuple[tuple[int, ...], ...]:
    """Shape of one example's features after each synthesis stage (traced, nothing computed)."""
    import jax
    import numpy as np

    gen = generator(config)
    names = stage_names(config)

    def run(variables, ws):
        inputs = frame_inputs(config, variables)
        carry, out = None, []
        for i in range(len(names)):
            carry = gen.apply(variables, ws, carry, start=i, stop=i + 1, **inputs, method="run_stages")
            out.append(carry["x"])
        return out

    ws = jax.ShapeDtypeStruct((config.num_ws, config.w_dim), np.float32)
    return tuple(tuple(x.shape) for x in jax.eval_shape(run, variable_shapes(config), ws))



def widens(config: Any) -> bool:
    """Whether the family's generator can draw a wider or taller frame (`canvas`, render's --fill widen)."""
    return family_module(family_of(config)).WIDENS
