"""Generator configuration: one frozen dataclass, serialisable to JSON.

The fields follow NVIDIA's stylegan2-ada-pytorch init kwargs, flattened. Everything the
network's shapes depend on lives here, so a checkpoint's `config.json` rebuilds the exact
module that produced its params.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import numpy as np

from gvjax.errors import GvjaxError

ARCHITECTURES = ("orig", "skip", "resnet")
MAX_RESOLUTION = 8192


SEED_LIMIT = 2**32


def check_seed(value: Any, what: str) -> int:
    """`value` as a seed: a whole number in [0, 2**32) (NumPy's RandomState range), else a GvjaxError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < SEED_LIMIT:
        raise GvjaxError(f"{what} must be a whole number in [0, 2**32), got {value!r}")
    return int(value)


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a JSON/TOML value fits a dataclass field's type hint (lists stand for tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if isinstance(value, dict) and len(args) == 2 and args[1] is Ellipsis:  # pairs stored as a mapping
            value = list(value.items())
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return True


def _describe(hint: Any) -> str:
    """Words for a type hint: 'a whole number', 'a finite number or null', 'a list of ...'."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0]).removeprefix('a ')}s" if args and args[-1] is Ellipsis else f"a list of {len(args)} values"
    names = {int: "a whole number", float: "a finite number", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def known_fields(cls, d: Any, what: str) -> dict[str, Any]:
    """`d` as keyword arguments of dataclass `cls`, checked before anything is built.

    A GvjaxError naming `what` when `d` is not a mapping, has an unknown key, or a value of the
    wrong type for its field (floats must be finite; lists stand for tuples, objects for nested
    configs). Ranges are the config's own `__post_init__` checks.
    """
    if not isinstance(d, dict):
        raise GvjaxError(f"{what} must be an object of keys, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise GvjaxError(f"unknown {what} keys: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        if not _type_ok(value, hints[key]):
            raise GvjaxError(f"{what}: {key} must be {_describe(hints[key])}, got {value!r}")
    return dict(d)


def check_finite_fields(obj: Any, what: str) -> None:
    """GvjaxError naming the first float field of dataclass `obj` that is NaN or infinite."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, (float, np.floating)) and not math.isfinite(v):
                raise GvjaxError(f"{what}: {f.name} must be a finite number, got {v}")


@dataclasses.dataclass(frozen=True)
class MappingConfig:
    """What every model family's generator has: the latents, the label, the output image and the
    mapping network (shared by StyleGAN2 and StyleGAN3: `gvjax.model.MappingNetwork`).

    Attributes:
      z_dim: latent z size (0 allowed for label-only StyleGAN2 models).
      w_dim: intermediate latent w size.
      c_dim: conditioning label size, 0 for unconditional models.
      img_resolution: output side length in pixels, a power of two from 4 to MAX_RESOLUTION.
      img_channels: output channels (3 for RGB).
      mapping_layers: number of fully connected layers in the mapping network.
      mapping_lr_multiplier: equalized-lr multiplier of the mapping layers (0.01).
    """

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01

    WHAT = "generator config"  # how errors name it (a class attribute, not a field)

    def check_mapping_fields(self, what: str, *, min_z_dim: int = 0) -> None:
        """One-line GvjaxErrors (prefixed `what`) for a non-finite number or an impossible shape."""
        check_finite_fields(self, what)
        res = self.img_resolution
        if res < 4 or res & (res - 1) or res > MAX_RESOLUTION:
            raise GvjaxError(f"{what}: img_resolution must be a power of two from 4 to {MAX_RESOLUTION}, got {res}")
        for name, low in (("z_dim", min_z_dim), ("w_dim", 1), ("c_dim", 0), ("img_channels", 1), ("mapping_layers", 1)):
            if getattr(self, name) < low:
                raise GvjaxError(f"{what}: {name} must be >= {low}, got {getattr(self, name)}")
        if not self.mapping_lr_multiplier > 0:
            raise GvjaxError(f"{what}: mapping_lr_multiplier must be > 0, got {self.mapping_lr_multiplier}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The config from `config.json` entries: unknown keys and wrong types are one-line GvjaxErrors."""
        return cls(**known_fields(cls, d, cls.WHAT))


@dataclasses.dataclass(frozen=True)
class GeneratorConfig(MappingConfig):
    """Shapes and constants of a StyleGAN2 generator (the `MappingConfig` fields, and these).

    Attributes:
      embed_features: label embedding size (None: w_dim; ignored when c_dim == 0).
      layer_features: hidden mapping width (None: w_dim).
      w_avg_beta: decay of the tracked average w during training.
      channel_base, channel_max: channels at resolution r = min(channel_base // r, channel_max).
      architecture: 'orig', 'skip' or 'resnet'.
      conv_clamp: clamp of convolution outputs (None: no clamping).
      resample_filter: 1-D FIR taps, used as their outer product (normalised to sum 1).
      num_fp16_res: recorded from the source model; gvjax computes in float32 or bfloat16.
    """

    embed_features: int | None = None
    layer_features: int | None = None
    w_avg_beta: float | None = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    num_fp16_res: int = 0

    def __post_init__(self):
        self.check_mapping_fields(self.WHAT)
        res = self.img_resolution
        for name, low in (("channel_base", 1), ("channel_max", 1), ("num_fp16_res", 0)):
            if getattr(self, name) < low:
                raise GvjaxError(f"generator config: {name} must be >= {low}, got {getattr(self, name)}")
        for name in ("embed_features", "layer_features"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise GvjaxError(f"generator config: {name} must be >= 1, got {getattr(self, name)}")
        if self.channel_base // res < 1:
            raise GvjaxError(f"generator config: channel_base {self.channel_base} gives no channels at {res}x{res}")
        if self.conv_clamp is not None and not self.conv_clamp > 0:
            raise GvjaxError(f"generator config: conv_clamp must be > 0 or null, got {self.conv_clamp}")
        if not self.resample_filter or sum(self.resample_filter) == 0:
            raise GvjaxError("generator config: resample_filter must be a non-empty list of taps with a non-zero sum")
        if self.architecture not in ARCHITECTURES:
            raise GvjaxError(
                f"unknown architecture {self.architecture!r}; expected one of {', '.join(ARCHITECTURES)}"
            )
        object.__setattr__(self, "resample_filter", tuple(float(v) for v in self.resample_filter))

    # ----- derived quantities -----
    @property
    def block_resolutions(self) -> tuple[int, ...]:
        """Resolutions of the synthesis blocks: (4, 8, ..., img_resolution)."""
        return tuple(2**i for i in range(2, int(math.log2(self.img_resolution)) + 1))

    def channels(self, res: int) -> int:
        """Feature channels of the block at resolution `res`."""
        return min(self.channel_base // res, self.channel_max)

    def num_conv(self, res: int) -> int:
        """Modulated 3x3 convolutions in block `res` (b4 has only conv1)."""
        return 1 if res == 4 else 2

    def has_torgb(self, res: int) -> bool:
        """Whether block `res` has a ToRGB layer."""
        return self.architecture == "skip" or res == self.img_resolution

    def w_offsets(self) -> dict[int, int]:
        """Index of the first w each block reads; block `res` reads num_conv + num_torgb ws from it.

        The index advances by num_conv only, so a block's ToRGB shares its w with the next
        block's conv0 (as in NVIDIA's and rosinality's code).
        """
        offsets, idx = {}, 0
        for res in self.block_resolutions:
            offsets[res] = idx
            idx += self.num_conv(res)
        return offsets

    @property
    def num_ws(self) -> int:
        """Number of per-layer ws: all convolutions plus the last ToRGB."""
        return sum(self.num_conv(r) for r in self.block_resolutions) + 1

    @property
    def mapping_embed_features(self) -> int:
        if self.c_dim == 0:
            return 0
        return self.w_dim if self.embed_features is None else self.embed_features

    @property
    def mapping_layer_features(self) -> int:
        return self.w_dim if self.layer_features is None else self.layer_features
