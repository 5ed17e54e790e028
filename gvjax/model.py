"""StyleGAN2 generator in Flax: modules hold parameters and call the pure ops in `gvjax.ops`.

Every module works on ONE example (`z [z_dim]`, `ws [num_ws, w_dim]`, `x [H, W, C]`,
images `[H, W, C]` in [-1, 1]); batch with `jax.vmap` over `Generator.apply`.

Parameter names mirror NVIDIA's state dict (`synthesis.b8.conv0.affine.weight` is
`params['synthesis']['b8']['conv0']['affine']['weight']`), with the same shapes. Weights are
stored raw and scaled at run time (equalized learning rate), so gradients behave like
NVIDIA's during fine-tuning. The buffers `w_avg` and `noise_const` live in the `buffers`
collection.

For inference, `with_arranged_kernels` adds a `kernels` collection: every conv weight
rearranged once into the layout the convolutions read (`gvjax.ops.arrange_kernel`), so a
render or benchmark call does not transpose ~all weights again each time. Without it (training,
tests) the modules arrange their weights inside the call, differentiably.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gvjax import ops
from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError
from gvjax.precision import matmul_precision

FAMILY = "stylegan2"  # this module is a model family (gvjax.models)
FRAME_INPUTS: tuple[str, ...] = ()  # per-frame synthesis inputs beyond ws (see frame_inputs)
WIDENS = True  # Generator(canvas=(rows, cols)) draws wider or taller frames (render --fill widen)
Config = GeneratorConfig
NOISE_MODES = ("const", "random", "none")
KERNELS = "kernels"
SQRT_HALF = math.sqrt(0.5)


def arranged_kernel(module: nn.Module, weight: jnp.ndarray, *, up: int = 1, winograd: bool = False):
    """`ops.arrange_kernel(weight, up=up, winograd=winograd)`, read from the `kernels` collection when it holds it.

    Arranged here otherwise, and stored when `kernels` is mutable (see `with_arranged_kernels`).
    """
    if module.has_variable(KERNELS, "weight"):
        return module.get_variable(KERNELS, "weight")
    kernel = ops.arrange_kernel(weight, up=up, winograd=winograd)
    if module.is_mutable_collection(KERNELS) and not module.is_initializing():
        module.put_variable(KERNELS, "weight", kernel)
    return kernel


class FullyConnected(nn.Module):
    """Equalized-lr linear layer: `[in_features] -> [out_features]`."""

    in_features: int
    out_features: int
    act: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float = 0.0

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        weight = self.param("weight", ops.normal_init((self.out_features, self.in_features), 1.0 / self.lr_multiplier))
        bias = self.param("bias", lambda key: jnp.full((self.out_features,), self.bias_init, jnp.float32))
        return ops.fully_connected(
            x.astype(jnp.float32),
            weight,
            bias,
            weight_gain=self.lr_multiplier / math.sqrt(self.in_features),
            bias_gain=self.lr_multiplier,
            act=self.act,
        )


class MappingNetwork(nn.Module):
    """z (and label c) -> per-layer ws `[num_ws, w_dim]`, with truncation."""

    config: GeneratorConfig

    @nn.compact
    def __call__(
        self,
        z: jnp.ndarray,
        c: jnp.ndarray | None = None,
        *,
        truncation_psi: float | jnp.ndarray = 1.0,
        truncation_cutoff: int | None = None,
    ) -> jnp.ndarray:
        """Args: `z [z_dim]`, `c [c_dim]` (one-hot label, or None when c_dim == 0). Returns `[num_ws, w_dim]`."""
        cfg = self.config
        parts = []
        if cfg.z_dim > 0:
            parts.append(ops.normalize_2nd_moment(z.astype(jnp.float32)))
        if cfg.c_dim > 0:
            if c is None:
                raise ValueError("this generator is conditional: pass a label c of size c_dim")
            embed = FullyConnected(cfg.c_dim, cfg.mapping_embed_features, name="embed")
            parts.append(ops.normalize_2nd_moment(embed(c.astype(jnp.float32))))
        x = jnp.concatenate(parts, axis=-1)
        features = (
            [cfg.z_dim + cfg.mapping_embed_features]
            + [cfg.mapping_layer_features] * (cfg.mapping_layers - 1)
            + [cfg.w_dim]
        )
        for i in range(cfg.mapping_layers):
            x = FullyConnected(
                features[i], features[i + 1], act="lrelu", lr_multiplier=cfg.mapping_lr_multiplier, name=f"fc{i}"
            )(x)
        w_avg = self.variable("buffers", "w_avg", lambda: jnp.zeros((cfg.w_dim,), jnp.float32)).value
        return truncate(jnp.broadcast_to(x, (cfg.num_ws, cfg.w_dim)), w_avg, truncation_psi, truncation_cutoff)


def truncate(ws: jnp.ndarray, w_avg: jnp.ndarray, psi, cutoff: int | None = None) -> jnp.ndarray:
    """Truncation trick: `w_avg + psi * (ws - w_avg)` on layers `[:cutoff]` (all when None).

    `ws [num_ws, w_dim]`, `w_avg [w_dim]`; psi may be a traced scalar.
    """
    if isinstance(psi, (int, float)) and psi == 1:
        return ws
    w_avg = w_avg[None, :]
    truncated = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return truncated
    layer = jnp.arange(ws.shape[0])[:, None]
    return jnp.where(layer < cutoff, truncated, ws)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up), noise, bias, lrelu: `[H, W, C_in] -> [H*up, W*up, C_out]`."""

    in_channels: int
    out_channels: int
    w_dim: int
    resolution: int
    up: int = 1
    kernel_size: int = 3
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    modconv: str = "grouped"
    winograd: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, w, *, noise_mode: str = "const", noise_key=None, gain: float = 1.0):
        """`x [H, W, C_in]`, `w [w_dim]`; `noise_key` is this layer's own key (noise_mode 'random')."""
        k, r = self.kernel_size, self.resolution
        styles = FullyConnected(self.w_dim, self.in_channels, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", ops.normal_init((self.out_channels, self.in_channels, k, k)))
        noise_strength = self.param("noise_strength", lambda key: jnp.zeros((), jnp.float32))
        bias = self.param("bias", lambda key: jnp.zeros((self.out_channels,), jnp.float32))
        noise_const = self.variable(
            "buffers", "noise_const", lambda: jax.random.normal(self.make_rng("params"), (r, r), jnp.float32)
        ).value
        out_hw = (x.shape[0] * self.up, x.shape[1] * self.up)  # [r, r], or wider on a widened canvas
        noise = None
        if noise_mode == "const":
            noise = ops.widen(noise_const, out_hw) * noise_strength
        elif noise_mode == "random":
            if noise_key is None:
                raise ValueError("noise_mode='random' needs an explicit noise_key")
            noise = jax.random.normal(noise_key, out_hw, jnp.float32) * noise_strength
            self.sow("intermediates", "random_noise", noise)
        elif noise_mode != "none":
            raise ValueError(f"unknown noise_mode {noise_mode!r}; expected one of {NOISE_MODES}")
        x = ops.modulated_conv2d(
            x,
            weight,
            styles,
            noise=noise,
            up=self.up,
            padding=k // 2,
            f=ops.setup_filter(self.resample_filter, separable=True),
            form=self.modconv,
            kernel=arranged_kernel(self, weight, up=self.up, winograd=self.winograd),
            precision=matmul_precision(self.dtype),
        )
        act_gain = ops.ACTIVATION_GAINS["lrelu"] * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return ops.bias_act(x, bias, act="lrelu", gain=act_gain, clamp=clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation: `[H, W, C_in] -> [H, W, img_channels]`."""

    in_channels: int
    out_channels: int
    w_dim: int
    conv_clamp: float | None = None
    modconv: str = "grouped"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, w):
        styles = FullyConnected(self.w_dim, self.in_channels, bias_init=1.0, name="affine")(w)
        styles = styles * (1.0 / math.sqrt(self.in_channels))
        weight = self.param("weight", ops.normal_init((self.out_channels, self.in_channels, 1, 1)))
        bias = self.param("bias", lambda key: jnp.zeros((self.out_channels,), jnp.float32))
        x = ops.modulated_conv2d(
            x, weight, styles, demodulate=False, form=self.modconv, kernel=arranged_kernel(self, weight),
            precision=matmul_precision(self.dtype),
        )
        return ops.bias_act(x.astype(jnp.float32), bias, clamp=self.conv_clamp)


class SkipConv(nn.Module):
    """Resnet skip path: 1x1 conv, no bias, 2x FIR up-sampling: `[H, W, C_in] -> [2H, 2W, C_out]`.

    Never clamped: NVIDIA builds the generator's skip layer without `conv_clamp`.
    """

    in_channels: int
    out_channels: int
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, gain: float = 1.0):
        weight = self.param("weight", ops.normal_init((self.out_channels, self.in_channels, 1, 1)))
        taps = arranged_kernel(self, weight, up=2)["taps"] * (1.0 / math.sqrt(self.in_channels))
        x = ops.conv2d_resample_arranged(
            x, taps.astype(x.dtype), kernel_size=1, f=ops.setup_filter(self.resample_filter, separable=True), up=2,
            precision=matmul_precision(self.dtype),
        )
        return ops.bias_act(x, None, gain=gain)


class SynthesisBlock(nn.Module):
    """One resolution: (x, img) at res/2 -> (x, img) at res. b4 starts from a learned constant.

    `winograd`: run the 3x3 non-resampling conv (conv1) as Winograd F(2x2, 3x3); None chooses
    by shape (`use_winograd`).
    """

    config: GeneratorConfig
    resolution: int
    modconv: str = "grouped"
    winograd: bool | None = None
    dtype: Any = jnp.float32
    canvas: tuple[int, int] = (4, 4)

    def _winograd(self, c_in: int, c_out: int) -> bool:
        return use_winograd(c_in, c_out, self.resolution) if self.winograd is None else self.winograd

    @nn.compact
    def __call__(self, x, img, ws, *, noise_mode: str = "const", noise_key=None):
        """`x [res/2, res/2, C_in]` or None (b4), `img [res/2, res/2, img_channels]` or None,
        `ws [num_conv + has_torgb, w_dim]` -> `(x [res, res, C], img or None)`."""
        cfg, res = self.config, self.resolution
        out_ch = cfg.channels(res)
        in_ch = cfg.channels(res // 2) if res > 4 else 0
        layer = dict(
            w_dim=cfg.w_dim,
            resolution=res,
            conv_clamp=cfg.conv_clamp,
            resample_filter=cfg.resample_filter,
            modconv=self.modconv,
            dtype=self.dtype,
        )

        def key(i):
            return None if noise_key is None else jax.random.fold_in(jax.random.fold_in(noise_key, res), i)

        noise = dict(noise_mode=noise_mode)
        if res == 4:
            const = self.param("const", ops.normal_init((out_ch, res, res)))
            x = ops.widen(jnp.transpose(const, (1, 2, 0)), self.canvas).astype(self.dtype)
            conv1 = SynthesisLayer(out_ch, out_ch, name="conv1", winograd=self._winograd(out_ch, out_ch), **layer)
            x = conv1(x, ws[0], noise_key=key(1), **noise)
        else:
            x = x.astype(self.dtype)
            conv0 = SynthesisLayer(in_ch, out_ch, up=2, name="conv0", **layer)
            conv1 = SynthesisLayer(out_ch, out_ch, name="conv1", winograd=self._winograd(out_ch, out_ch), **layer)
            if cfg.architecture == "resnet":
                skip = SkipConv(in_ch, out_ch, resample_filter=cfg.resample_filter, dtype=self.dtype, name="skip")
                y = skip(x, gain=SQRT_HALF)
                x = conv0(x, ws[0], noise_key=key(0), **noise)
                x = conv1(x, ws[1], noise_key=key(1), gain=SQRT_HALF, **noise)
                x = y + x
            else:
                x = conv0(x, ws[0], noise_key=key(0), **noise)
                x = conv1(x, ws[1], noise_key=key(1), **noise)
        if img is not None:
            img = ops.upsample2d(img, ops.setup_filter(cfg.resample_filter, separable=True))
        if cfg.has_torgb(res):
            torgb = ToRGB(
                out_ch, cfg.img_channels, cfg.w_dim, conv_clamp=cfg.conv_clamp,
                modconv=self.modconv, dtype=self.dtype, name="torgb",
            )
            y = torgb(x, ws[cfg.num_conv(res)])
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws `[num_ws, w_dim]` -> image `[R, R, img_channels]`; can run in pieces (see `run_blocks`)."""

    config: GeneratorConfig
    modconv: str = "grouped"
    winograd: bool | None = None
    dtype: Any = jnp.float32
    canvas: tuple[int, int] = (4, 4)

    def setup(self):
        for res in self.config.block_resolutions:
            block = SynthesisBlock(self.config, res, modconv=self.modconv, winograd=self.winograd, dtype=self.dtype, canvas=self.canvas)
            setattr(self, f"b{res}", block)

    def run_blocks(
        self,
        ws: jnp.ndarray,
        x: jnp.ndarray | None = None,
        img: jnp.ndarray | None = None,
        *,
        after_res: int = 0,
        upto_res: int | None = None,
        noise_mode: str = "const",
        noise_key=None,
    ):
        """Run the blocks with `after_res < res <= upto_res` and return `(x, img)`.

        `after_res=0` starts from the constant input (x and img must be None). To cut
        synthesis at resolution r: `x, img = run_blocks(ws, upto_res=r)`, change x, then
        `run_blocks(ws, x, img, after_res=r)`. Per-layer noise keys are derived from
        `noise_key`, the block resolution and the layer, so a split run equals a whole one.
        `img` is None between blocks of the 'orig' and 'resnet' architectures.
        """
        cfg = self.config
        upto_res = cfg.img_resolution if upto_res is None else upto_res
        offsets = cfg.w_offsets()
        for res in cfg.block_resolutions:
            if after_res < res <= upto_res:
                n = cfg.num_conv(res) + int(cfg.has_torgb(res))
                block_ws = ws[offsets[res] : offsets[res] + n]
                x, img = getattr(self, f"b{res}")(x, img, block_ws, noise_mode=noise_mode, noise_key=noise_key)
        return x, img

    def __call__(self, ws, *, noise_mode: str = "const", noise_key=None) -> jnp.ndarray:
        """`ws [num_ws, w_dim]` -> image `[R, R, img_channels]` float32, about [-1, 1]."""
        _, img = self.run_blocks(ws, noise_mode=noise_mode, noise_key=noise_key)
        return img


class Generator(nn.Module):
    """Mapping + synthesis. `dtype` is the synthesis compute dtype; params stay float32.

    `modconv` picks the modulated-conv form ('grouped' or 'shared', see
    `gvjax.ops.modulated_conv2d`); `modconv_for_batch` chooses by batch size. `winograd` runs
    the 3x3 same-resolution convs as Winograd F(2x2, 3x3) (True), directly (False), or chooses
    per layer by shape (None, `use_winograd`); results agree to float32 rounding.

    `canvas = (rows, cols)` is the size of the constant input ((4, 4) as trained): a wider or
    taller canvas widens the constant and every noise map by mirrored tiling around the centre
    (`gvjax.ops.widen`), so synthesis itself draws an `[R * rows / 4, R * cols / 4]` image.
    """

    config: GeneratorConfig
    modconv: str = "grouped"
    winograd: bool | None = None
    dtype: Any = jnp.float32
    canvas: tuple[int, int] = (4, 4)

    def setup(self):
        self.mapping = MappingNetwork(self.config)
        self.synthesis = SynthesisNetwork(
            self.config, modconv=self.modconv, winograd=self.winograd, dtype=self.dtype, canvas=self.canvas
        )

    def map(self, z, c=None, *, truncation_psi=1.0, truncation_cutoff=None):
        """`z [z_dim]`, `c [c_dim]` -> `ws [num_ws, w_dim]`."""
        return self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    def synthesize(self, ws, *, noise_mode="const", noise_key=None):
        """`ws [num_ws, w_dim]` -> image `[R, R, C]`."""
        return self.synthesis(ws, noise_mode=noise_mode, noise_key=noise_key)

    def run_blocks(self, ws, x=None, img=None, **kwargs):
        """See `SynthesisNetwork.run_blocks`."""
        return self.synthesis.run_blocks(ws, x, img, **kwargs)

    def run_stages(self, ws, carry=None, *, start: int = 0, stop: int | None = None, noise_mode="const", noise_key=None):
        """The family-neutral cut (see `gvjax.models`): run stages `start <= i < stop` of
        `stage_names(config)` (the blocks) on `carry = {'x': features, 'img': skip image or None}`
        (None before stage 0) and return the new carry. After the last stage `carry['img']` is the
        image `[R, R, C]`."""
        res = self.config.block_resolutions
        stop = len(res) if stop is None else stop
        if not 0 <= start <= stop <= len(res) or (carry is None) != (start == 0):
            raise ValueError(f"stages [{start}, {stop}) of {len(res)}: a cut starts at 0 from no carry, or later from one")
        x, img = (None, None) if carry is None else (carry["x"], carry["img"])
        if start < stop:
            x, img = self.synthesis.run_blocks(
                ws, x, img, after_res=res[start - 1] if start else 0, upto_res=res[stop - 1], noise_mode=noise_mode, noise_key=noise_key
            )
        return {"x": x, "img": img}

    def __call__(
        self, z, c=None, *, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", noise_key=None
    ):
        """`z [z_dim]`, `c [c_dim]` -> image `[R, R, C]`."""
        ws = self.map(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesize(ws, noise_mode=noise_mode, noise_key=noise_key)


def init_variables(config: GeneratorConfig, key: jax.Array) -> dict:
    """Randomly initialised variables `{'params': ..., 'buffers': ...}` (NVIDIA's init distributions)."""
    return init_generator(Generator(config), key)


def init_generator(gen: nn.Module, key: jax.Array) -> dict:
    """Variables of any family's generator `gen`, initialised from `key` by one call on zeros."""
    config = gen.config
    z = jnp.zeros((config.z_dim,), jnp.float32)
    c = jnp.zeros((config.c_dim,), jnp.float32) if config.c_dim else None
    return jax.jit(lambda k: gen.init(k, z, c))(key)


def widen_variables(variables: dict, fresh: dict, rescaled) -> dict:
    """Variables of a network -> those of the same network with more channels ("Net2Wider"),
    computing the same function: the shared step of `widen_generator` and
    `gvjax.discriminator.widen_discriminator`.

    Each parameter keeps its old entries; the entries the wider network adds take `fresh`'s
    (NVIDIA's init), except that a conv's weights `[out, in, k, k]` from a new input channel to an
    old output channel are zero, so the new channels start without influence. A conv scaled by
    `1 / sqrt(fan_in)` at run time and not demodulated (`rescaled(name)`, name a tuple of keys) has
    its old weights multiplied by `sqrt(new fan_in / old fan_in)`. Anything else that changes
    shape (a buffer, a dense layer's `[out, in]` inputs) is a ValueError.

    Args:
      variables: `{collection: tree}` of the narrow network.
      fresh: the same collections, freshly initialised for the wide network.
      rescaled: `name -> bool`, for the 4-d weights that take the fan-in correction.
    """
    from flax.traverse_util import flatten_dict, unflatten_dict

    out = {}
    for collection, tree in variables.items():
        old, new = flatten_dict(tree), flatten_dict(fresh[collection])
        if set(old) != set(new):
            raise ValueError(f"widen: the {collection} of the two configs differ in names")
        widened = {}
        for name, value in old.items():
            value, target = np.asarray(value, np.float32), np.array(new[name], np.float32)
            if value.shape == target.shape:
                widened[name] = value
                continue
            grows = value.ndim == target.ndim and all(a <= b for a, b in zip(value.shape, target.shape))
            if collection != "params" or not grows or (value.ndim == 2 and value.shape[1] != target.shape[1]):
                raise ValueError(f"widen: {'.'.join(name)} cannot go from {value.shape} to {target.shape}")
            if name[-1] == "weight" and value.ndim == 4:  # conv [out, in, k, k]
                o, i = value.shape[:2]
                if rescaled(name):
                    value = value * np.sqrt(target.shape[1] / i)
                target[:o, i:] = 0.0
            target[tuple(slice(0, n) for n in value.shape)] = value
            widened[name] = target
        out[collection] = unflatten_dict(widened)
    return out


def widen_generator(variables: dict, config: GeneratorConfig, wide: GeneratorConfig, key) -> dict:
    """StyleGAN2 generator variables of `config` -> variables of `wide` (more channels at some
    resolutions, all else equal) that draw the same images (`widen_variables`).

    Modulated convs are demodulated per output channel, so the smaller weight gain of a wider input
    (`1 / sqrt(fan_in)`) changes nothing; ToRGB is not, so its old weights take the fan-in
    correction. Buffers (w_avg, noise maps) must not change shape.

    Args:
      variables: `{'params', 'buffers'}` of a generator of `config`.
      config, wide: the two configs; `wide` may differ only in `channel_base` / `channel_max`.
      key: PRNG key of the new entries.
    """
    import dataclasses

    if dataclasses.replace(wide, channel_base=config.channel_base, channel_max=config.channel_max) != config:
        raise ValueError("widen: the configs may differ only in channel_base and channel_max")
    fresh = jax.device_get(init_variables(wide, key))
    return widen_variables({c: variables[c] for c in ("params", "buffers")}, fresh, lambda name: "torgb" in name)


def with_arranged_kernels(gen: Generator, variables: dict) -> dict:
    """`variables` plus the `kernels` collection: each synthesis conv weight arranged once.

    For inference only (render, generate, benchmarks): the arranged kernels are a copy of the
    weights, so they go stale if the params change. Outputs are the same as without them.
    """
    cfg = gen.config
    ws = jnp.zeros((cfg.num_ws, cfg.w_dim), jnp.float32)
    plain = {name: tree for name, tree in variables.items() if name != KERNELS}

    def arrange(plain):
        # The image is discarded, so XLA keeps only the weight rearrangements.
        _, state = gen.apply(plain, ws, method="synthesize", mutable=[KERNELS])
        return state[KERNELS]

    return {**plain, KERNELS: jax.jit(arrange)(plain)}


# --- the family interface of the cut (gvjax.models) ----------------------------------------------


def stage_names(config: GeneratorConfig) -> tuple[str, ...]:
    """Synthesis stages in execution order: the blocks `b4, b8, ..., b{R}` (NVIDIA's names)."""
    return tuple(f"b{res}" for res in config.block_resolutions)


def cut_stage(config: GeneratorConfig, *, resolution: int | None = None, layer: str | int | None = None) -> int:
    """Index into `stage_names` of the stage a warp cuts after: a block resolution (`32`), a block
    name (`'b32'`) or an index. A one-line GvjaxError naming the valid ones otherwise."""
    names = stage_names(config)
    if resolution is not None and resolution in config.block_resolutions:
        return config.block_resolutions.index(resolution)
    if layer is not None:
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool) and 0 <= layer < len(names):
            return int(layer)
        if isinstance(layer, str) and layer in names:
            return names.index(layer)
    given = f"resolution {resolution}" if resolution is not None else f"layer {layer!r}"
    raise GvjaxError(f"{given}: this StyleGAN2 model's blocks are {', '.join(names)} (resolutions {config.block_resolutions})")


def preview_stage(config: GeneratorConfig, preview_res: int) -> int:
    """The stage a `--preview` render stops after (its skip image is upscaled): 'skip' models only."""
    if config.architecture != "skip":
        raise GvjaxError(f"--preview needs a 'skip' architecture model (this one is {config.architecture!r})")
    if preview_res not in config.block_resolutions:
        raise GvjaxError(f"preview resolution {preview_res} is not one of the model's {config.block_resolutions}")
    return config.block_resolutions.index(preview_res)


def frame_inputs(config: GeneratorConfig, variables: dict) -> dict:
    """Per-frame synthesis inputs beyond ws, with their defaults: none for StyleGAN2."""
    return {}


def variable_shapes(config: GeneratorConfig) -> dict:
    """The tree of `jax.ShapeDtypeStruct` a generator of `config` has, without computing anything."""
    return jax.eval_shape(lambda: init_variables(config, jax.random.key(0)))


def use_winograd(c_in: int, c_out: int, resolution: int, backend: str | None = None) -> bool:
    """Whether a 3x3 conv of `c_in -> c_out` channels at `resolution` runs faster as Winograd.

    Measured on a 2-core CPU (benchmarks/winograd.py, direct / Winograd time at batch 1 and 8):
    8^2 x 512: 1.80x / 1.41x, 32^2 x 512: 1.84x / 1.39x, 64^2 x 256: 1.47x / 1.13x; but
    128^2 x 128: 0.70x / 0.75x and 256^2 x 64: 0.40x / 0.50x, where the 16 small-K GEMMs run
    far below peak and the transforms' memory passes cost more than the 2.25x fewer multiplies
    save. 4^2 is under a millisecond either way. Accelerator libraries pick their own conv
    algorithms, so there it is never chosen.
    """
    backend = backend or jax.default_backend()
    return backend == "cpu" and min(c_in, c_out) >= 256 and resolution >= 8


def modconv_for_batch(batch: int, backend: str | None = None) -> str:
    """The modulated-conv form to use for `batch` examples on `backend` (default: JAX's).

    Measured with benchmarks/generator.py (256^2 config, 2-core CPU, arranged kernels): 'shared'
    is faster at every batch (batch 1: 6.33 vs 5.69 images/s; batch 8: 6.15 vs 1.30, XLA's CPU
    grouped convolution is slow; benchmarks/RESULTS.md). On accelerators a single example keeps NVIDIA's choice,
    'grouped' (one plain conv with the modulated kernel, two elementwise passes fewer); batches
    use the dense 'shared' form.
    """
    backend = backend or jax.default_backend()
    return "grouped" if batch == 1 and backend != "cpu" else "shared"


def count_params(tree) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))
