"""StyleGAN2 discriminator in Flax (NVIDIA's 'resnet' architecture), with its frozen config.

Unlike the generator, the discriminator takes a whole batch, `img [N, H, W, C]` in [-1, 1]
(channels last), because minibatch standard deviation mixes examples. Each layer fetches its
parameters and runs the pure per-example ops of `gvjax.ops` under `jax.vmap`; only
`minibatch_stddev` looks across the batch.

Parameter names and shapes mirror NVIDIA's state dict (`b32.conv1.weight` is
`params['b32']['conv1']['weight']`); FIR filters are derived from the config, not stored.
Weights are raw and scaled at run time (equalized learning rate).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gvjax import ops
from gvjax.config import GeneratorConfig, known_fields
from gvjax.errors import GvjaxError

SQRT_HALF = math.sqrt(0.5)
D_ARCHITECTURES = ("resnet",)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Shapes and constants of a StyleGAN2 discriminator (NVIDIA's init kwargs, flattened).

    Attributes:
      c_dim: conditioning label size, 0 for unconditional models.
      img_resolution: input side length, a power of two >= 8.
      img_channels: input channels.
      architecture: 'resnet' (the only one gvjax implements; NVIDIA's default).
      channel_base, channel_max: channels at resolution r = min(channel_base // r, channel_max).
      conv_clamp: clamp of convolution outputs (None: no clamping).
      cmap_dim: size of the mapped label (None: channels at 4x4); 0 when c_dim == 0.
      mbstd_group_size: examples per minibatch-stddev group (None: the whole batch).
      mbstd_num_channels: minibatch-stddev features (0 disables the layer).
      mapping_layers, mapping_lr_multiplier: the label mapping network (c_dim > 0 only).
      resample_filter: 1-D FIR taps of the down-sampling filter.
      num_fp16_res: recorded from the source model; gvjax computes in float32.
    """

    c_dim: int = 0
    img_resolution: int = 1024
    img_channels: int = 3
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    cmap_dim: int | None = None
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    num_fp16_res: int = 0

    def __post_init__(self):
        res = self.img_resolution
        if res < 8 or res & (res - 1):
            raise GvjaxError(f"discriminator img_resolution must be a power of two >= 8, got {res}")
        if self.architecture not in D_ARCHITECTURES:
            raise GvjaxError(f"discriminator architecture {self.architecture!r} is not supported (gvjax implements 'resnet')")
        object.__setattr__(self, "resample_filter", tuple(float(v) for v in self.resample_filter))

    @classmethod
    def for_generator(cls, g: GeneratorConfig, **overrides) -> "DiscriminatorConfig":
        """NVIDIA's training default for a generator: same resolution, channels and labels."""
        kwargs = dict(
            c_dim=g.c_dim, img_resolution=g.img_resolution, img_channels=g.img_channels,
            channel_base=g.channel_base, channel_max=g.channel_max, conv_clamp=g.conv_clamp,
            resample_filter=g.resample_filter,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        """Resolutions of the down-sampling blocks, largest first: (R, R/2, ..., 8)."""
        return tuple(2**i for i in range(int(math.log2(self.img_resolution)), 2, -1))

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def mapped_label_dim(self) -> int:
        """cmap_dim as the network uses it: 0 unconditional, else cmap_dim or channels(4)."""
        if self.c_dim == 0:
            return 0
        return self.channels(4) if self.cmap_dim is None else self.cmap_dim

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiscriminatorConfig":
        return cls(**known_fields(cls, d, "discriminator config"))


def minibatch_stddev(x: jnp.ndarray, group_size: int | None, num_channels: int = 1) -> jnp.ndarray:
    """Append the minibatch standard deviation as `num_channels` feature maps.

    `x [N, H, W, C]` -> `[N, H, W, C + num_channels]`. As NVIDIA's MinibatchStdLayer: the
    batch splits into groups of G = min(group_size, N) examples, example i belonging to group
    i mod (N / G); channels split into `num_channels` sets. Per group and set: the stddev over
    the group (eps 1e-8 inside the sqrt), averaged over pixels and channels. N must be a
    multiple of G.
    """
    n, h, w, c = x.shape
    g = n if group_size is None else min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch-stddev: batch {n} is not a multiple of the group size {g}")
    f = num_channels
    y = x.astype(jnp.float32).reshape(g, n // g, h, w, f, c // f)
    y = y - jnp.mean(y, axis=0, keepdims=True)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [n/G, H, W, F, c]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n/G, F]
    y = jnp.tile(y, (g, 1))  # [N, F]: example i gets group i mod (N/G)
    y = jnp.broadcast_to(y[:, None, None, :], (n, h, w, f)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


class Conv2dLayer(nn.Module):
    """Equalized-lr conv, optional 2x FIR down-sampling, bias and activation: `[N, H, W, C_in] -> [N, H/down, W/down, C_out]`."""

    in_channels: int
    out_channels: int
    kernel_size: int
    bias: bool = True
    act: str = "linear"
    down: int = 1
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)

    @nn.compact
    def __call__(self, x: jnp.ndarray, gain: float = 1.0) -> jnp.ndarray:
        k = self.kernel_size
        weight = self.param("weight", ops.normal_init((self.out_channels, self.in_channels, k, k)))
        bias = self.param("bias", lambda key: jnp.zeros((self.out_channels,), jnp.float32)) if self.bias else None
        w = weight * (1.0 / math.sqrt(self.in_channels * k * k))
        f = ops.setup_filter(self.resample_filter, separable=True)
        conv = lambda v: ops.conv2d_resample(v, w, f=f, down=self.down, padding=k // 2, precision=lax.Precision.HIGHEST)
        x = jax.vmap(conv)(x)
        act_gain = ops.ACTIVATION_GAINS[self.act] * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, bias, act=self.act, gain=act_gain, clamp=clamp)


class Dense(nn.Module):
    """Equalized-lr fully connected layer on a batch: `[N, in_features] -> [N, out_features]`."""

    in_features: int
    out_features: int
    act: str = "linear"
    lr_multiplier: float = 1.0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        weight = self.param("weight", ops.normal_init((self.out_features, self.in_features), 1.0 / self.lr_multiplier))
        bias = self.param("bias", lambda key: jnp.zeros((self.out_features,), jnp.float32))
        fc = lambda v: ops.fully_connected(
            v, weight, bias, weight_gain=self.lr_multiplier / math.sqrt(self.in_features),
            bias_gain=self.lr_multiplier, act=self.act,
        )
        return jax.vmap(fc)(x.astype(jnp.float32))


class LabelMapping(nn.Module):
    """Label c `[N, c_dim]` -> `cmap [N, cmap_dim]`: embed, normalise, lrelu FC layers (lr 0.01)."""

    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, c: jnp.ndarray) -> jnp.ndarray:
        cfg, dim = self.config, self.config.mapped_label_dim
        x = ops.normalize_2nd_moment(Dense(cfg.c_dim, dim, name="embed")(c))
        for i in range(cfg.mapping_layers):
            x = Dense(dim, dim, act="lrelu", lr_multiplier=cfg.mapping_lr_multiplier, name=f"fc{i}")(x)
        return x


class DiscriminatorBlock(nn.Module):
    """Resnet block at resolution `res`: `[N, res, res, C_res] -> [N, res/2, res/2, C_res/2]`.

    The first block (res == img_resolution) starts from the image with a 1x1 `fromrgb`.
    """

    config: DiscriminatorConfig
    resolution: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        cfg, res = self.config, self.resolution
        tmp, out = cfg.channels(res), cfg.channels(res // 2)
        common = dict(conv_clamp=cfg.conv_clamp, resample_filter=cfg.resample_filter)
        if res == cfg.img_resolution:
            x = Conv2dLayer(cfg.img_channels, tmp, 1, act="lrelu", name="fromrgb", **common)(x)
        y = Conv2dLayer(tmp, out, 1, bias=False, down=2, name="skip", resample_filter=cfg.resample_filter)(x, gain=SQRT_HALF)
        x = Conv2dLayer(tmp, tmp, 3, act="lrelu", name="conv0", **common)(x)
        x = Conv2dLayer(tmp, out, 3, act="lrelu", down=2, name="conv1", **common)(x, gain=SQRT_HALF)
        return y + x


class Epilogue(nn.Module):
    """4x4 head: minibatch stddev, conv, fc, out, label projection: `[N, 4, 4, C] -> [N, 1]`."""

    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, x: jnp.ndarray, cmap: jnp.ndarray | None) -> jnp.ndarray:
        cfg = self.config
        ch, cmap_dim = cfg.channels(4), cfg.mapped_label_dim
        if cfg.mbstd_num_channels > 0:
            x = minibatch_stddev(x, cfg.mbstd_group_size, cfg.mbstd_num_channels)
        x = Conv2dLayer(ch + cfg.mbstd_num_channels, ch, 3, act="lrelu", conv_clamp=cfg.conv_clamp, name="conv")(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # NVIDIA flattens [C, H, W]
        x = Dense(ch * 16, ch, act="lrelu", name="fc")(x)
        x = Dense(ch, 1 if cmap_dim == 0 else cmap_dim, name="out")(x)
        if cmap_dim > 0:
            x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1.0 / math.sqrt(cmap_dim))
        return x


class Discriminator(nn.Module):
    """Images `[N, R, R, C]` in [-1, 1] (and labels `c [N, c_dim]`) -> logits `[N, 1]` float32."""

    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, img: jnp.ndarray, c: jnp.ndarray | None = None) -> jnp.ndarray:
        cfg = self.config
        x = img.astype(jnp.float32)
        for res in cfg.block_resolutions:
            x = DiscriminatorBlock(cfg, res, name=f"b{res}")(x)
        cmap = None
        if cfg.c_dim > 0:
            if c is None:
                raise ValueError("this discriminator is conditional: pass labels c [N, c_dim]")
            cmap = LabelMapping(cfg, name="mapping")(c.astype(jnp.float32))
        return Epilogue(cfg, name="b4")(x, cmap)


def init_d_variables(config: DiscriminatorConfig, key: jax.Array) -> dict:
    """Randomly initialised `{'params': ...}` (NVIDIA's init distributions)."""
    d = Discriminator(config)
    n = config.mbstd_group_size or 1
    img = jnp.zeros((n, config.img_resolution, config.img_resolution, config.img_channels), jnp.float32)
    c = jnp.zeros((n, config.c_dim), jnp.float32) if config.c_dim else None
    return jax.jit(lambda k: d.init(k, img, c))(key)


def widen_discriminator(variables: dict, config: DiscriminatorConfig, wide: DiscriminatorConfig, key: jax.Array) -> dict:
    """Discriminator variables of `config` -> those of `wide` (a larger `channel_base`: more channels
    in some blocks, the same 4x4 head) that give the same logits (`gvjax.model.widen_variables`).

    Every conv is scaled by `1 / sqrt(fan_in)` at run time, so the old weights of a conv whose input
    widens take the fan-in correction.

    Args:
      variables: `{'params'}` of a discriminator of `config`.
      config, wide: the two configs; `wide` may differ only in `channel_base`, and must keep the
        channels at 4x4 (the head's fully connected layers read them).
      key: PRNG key of the new entries.
    """
    from gvjax.model import widen_variables

    if dataclasses.replace(wide, channel_base=config.channel_base) != config or wide.channels(4) != config.channels(4):
        raise ValueError("widen: the discriminators may differ only in channel_base, with the same channels at 4x4")
    fresh = jax.device_get(init_d_variables(wide, key))
    return widen_variables({"params": variables["params"]}, fresh, lambda name: True)


def d_variable_shapes(config: DiscriminatorConfig) -> dict:
    """The tree of `jax.ShapeDtypeStruct` a discriminator of `config` has."""
    return jax.eval_shape(lambda: init_d_variables(config, jax.random.key(0)))


def count_params(tree) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))


def load_gvjax_discriminator(raw: dict, info: dict[str, Any]) -> tuple[DiscriminatorConfig, dict]:
    """(config, variables) of a D that gvjax itself wrote into a checkpoint (`extra['D']['format'] == 'gvjax'`)."""
    from gvjax.checkpoint import check_shapes

    if info.get("format") != "gvjax" or not isinstance(info.get("config"), dict):
        raise GvjaxError("the checkpoint's discriminator was not written by gvjax")
    config = DiscriminatorConfig.from_dict(info["config"])
    variables = {"params": raw.get("params", {})}
    check_shapes(d_variable_shapes(config), variables, "D")
    return config, variables
