"""Model families and the one registry that builds a model from a checkpoint's metadata.

Each family is a module exporting `FAMILY` (its name in `config.json`), `Config` (a frozen
dataclass with `to_dict` / `from_dict`), `Generator` (a Flax module, one example at a time:
`map`, `synthesize`), `init_variables(config, key)` and `variable_shapes(config)`; variables
are `{'params': ..., 'buffers': ...}` in NVIDIA's state-dict names.

    stylegan2   gvjax.model           GeneratorConfig
    stylegan3   gvjax.models.stylegan3  StyleGAN3Config (T and R)
"""

from __future__ import annotations

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
