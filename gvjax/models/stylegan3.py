"""StyleGAN3 (configs T and R) generator in Flax: "Alias-Free Generative Adversarial Networks".

Same conventions as the StyleGAN2 generator (`gvjax.model`): every module works on ONE example
(`z [z_dim]`, `ws [num_ws, w_dim]`, `x [H, W, C]`), batched with `jax.vmap` from outside; weights are
raw in NVIDIA's layout and names (`synthesis.L3_36_12.affine.weight` is
`params['synthesis']['L3_36_12']['affine']['weight']`) and scaled at run time; `w_avg`, the input's
`freqs` / `phases` / `transform` and each layer's `magnitude_ema` are in `buffers`. The mapping network
is StyleGAN2's (`gvjax.model.MappingNetwork`), with StyleGAN3's defaults (2 layers).

Synthesis is a sequence of *stages* (`stage_names`): the Fourier-feature `input`, then layers
`L0 ... L{num_layers}`, the last of which is ToRGB. Stage i reads `ws[i]` (no sharing between layers).
`run_layers` runs a range of stages on a carry (the feature map `[*shape, C]`), so synthesis can be
cut anywhere. The `transform` of the input is an explicit `[3, 3]` argument per example.

A wider or taller `canvas` (render's --fill widen) samples the input's Fourier features over a wider
or taller part of the same plane; every layer is translation-equivariant, so synthesis draws more of
the same picture around the square one (which it matches away from the square's edges, where the
square frame's last layers see zero padding).

Everything a layer's shapes and filters depend on (cutoffs, stopbands, sampling rates, sizes, channels,
up/down factors, filter taps and padding) is computed from `StyleGAN3Config` by `synthesis_layout`,
as NVIDIA's `SynthesisNetwork` and `SynthesisLayer` constructors compute it; the lowpass filters are
designed from it (`gvjax.ops.design_lowpass_filter`) as static arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gvjax import ops
from gvjax.config import MappingConfig
from gvjax.errors import GvjaxError
from gvjax.model import NOISE_MODES, FullyConnected, MappingNetwork, arranged_kernel, init_generator
from gvjax.precision import matmul_precision

FAMILY = "stylegan3"
FRAME_INPUTS = ("transform",)  # per-frame synthesis inputs beyond ws (see frame_inputs)
WIDENS = True  # Generator(canvas=(rows, cols)) samples a wider or taller part of the plane (render --fill widen)


@dataclasses.dataclass(frozen=True)
class StyleGAN3Config(MappingConfig):
    """Shapes and constants of a StyleGAN3 generator (NVIDIA's `networks_stylegan3` kwargs, flattened).

    The defaults are NVIDIA's constructor defaults (config T). `train.py --cfg=stylegan3-r` sets
    `conv_kernel=1, use_radial_filters=True` and doubles channel_base / channel_max.

    Attributes:
      z_dim, w_dim, c_dim, img_resolution, img_channels, mapping_layers, mapping_lr_multiplier:
        the `MappingConfig` fields (StyleGAN3's mapping has 2 layers by default).
      w_avg_beta: decay of the tracked average w during training.
      channel_base, channel_max: a layer of cutoff f_c has `rint(min(channel_base / 2 / f_c, channel_max))` channels.
      num_layers: synthesis layers excluding the input and ToRGB (ToRGB is layer `num_layers`).
      num_critical: critically sampled layers at the end.
      first_cutoff, first_stopband: cutoff f_c and minimum stopband f_t of the first layer.
      last_stopband_rel: minimum stopband of the last layers, relative to their cutoff (img_resolution / 2).
      margin_size: extra pixels on each side of the feature maps outside the image.
      output_scale: the image is ToRGB's output times this.
      conv_kernel: modulated conv size (3 for T, 1 for R; ToRGB is always 1).
      filter_size: lowpass taps per unit of the resampling factor.
      lrelu_upsampling: the activation runs at this multiple of the higher sampling rate.
      use_radial_filters: radially symmetric downsampling filters in the non-critical layers (R).
      conv_clamp: clamp of every layer's output (None: none).
      magnitude_ema_beta: decay of each layer's tracked input magnitude during training.
      num_fp16_res: recorded from the source model; gvjax computes in float32 or bfloat16.
    """

    mapping_layers: int = 2
    w_avg_beta: float | None = 0.998
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999
    num_fp16_res: int = 4

    WHAT = "StyleGAN3 generator config"

    def __post_init__(self):
        what = self.WHAT
        self.check_mapping_fields(what, min_z_dim=1)
        for name, low in (
            ("channel_base", 1), ("channel_max", 1), ("num_layers", 1), ("num_critical", 0), ("margin_size", 0),
            ("conv_kernel", 1), ("filter_size", 1), ("lrelu_upsampling", 1), ("num_fp16_res", 0),
        ):
            if getattr(self, name) < low:
                raise GvjaxError(f"{what}: {name} must be >= {low}, got {getattr(self, name)}")
        if self.num_critical >= self.num_layers:
            raise GvjaxError(f"{what}: num_critical must be < num_layers, got {self.num_critical} >= {self.num_layers}")
        for name in ("first_cutoff", "first_stopband", "last_stopband_rel"):
            if not getattr(self, name) > 0:
                raise GvjaxError(f"{what}: {name} must be > 0, got {getattr(self, name)}")
        if self.conv_clamp is not None and not self.conv_clamp > 0:
            raise GvjaxError(f"{what}: conv_clamp must be > 0 or null, got {self.conv_clamp}")
        synthesis_layout(self)  # every layer's factors and sizes are whole numbers

    @property
    def num_ws(self) -> int:
        """ws per example: the input, `num_layers` layers and ToRGB."""
        return self.num_layers + 2

    @property
    def mapping_embed_features(self) -> int:
        """Label embedding size of the mapping network (w_dim when conditional)."""
        return self.w_dim if self.c_dim else 0

    @property
    def mapping_layer_features(self) -> int:
        return self.w_dim


Config = StyleGAN3Config


# --- the layer table ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The Fourier-feature input: `channels` maps of `shape` (rows, cols; `size x size` on the square
    canvas), `sampling_rate` pixels per unit, `bandwidth` (cycles per unit)."""

    channels: int
    size: int
    sampling_rate: float
    bandwidth: float
    shape: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer, as NVIDIA's `SynthesisLayer` computes it (rates in pixels per unit).

    On the square canvas the layer maps `[in_size, in_size, in_channels]` to `[out_size, out_size,
    out_channels]` (NVIDIA's sizes, which name the layer); on a wider or taller one, `in_shape` to
    `out_shape` (rows, cols). A `conv_kernel` modulated conv with padding `conv_kernel - 1`, then
    `filtered_lrelu` at `tmp_sampling_rate` (`up_factor` x the input rate, `down_factor` x the output
    rate), with filters of `up_taps` / `down_taps` taps (1: none) and `padding = (x0, x1, y0, y1)` on
    the upsampled signal.
    """

    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    up_taps: int
    down_factor: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]
    in_shape: tuple[int, int]
    out_shape: tuple[int, int]


def _factor(tmp: int, rate: int, what: str) -> int:
    """`tmp / rate` as a whole number, else a GvjaxError."""
    factor = int(np.rint(tmp / rate))
    if factor < 1 or rate * factor != tmp:
        raise GvjaxError(f"StyleGAN3 generator config: {what} sampling rate {rate} does not divide {tmp}")
    return factor


def canvas_extra(rates: np.ndarray, cells: int) -> np.ndarray:
    """Pixels each layer adds along an axis of `cells` (4: the square) quarters of the square's
    extent: `rate * (cells - 4) / 4`, checked whole and even (half on each side, so the square's
    samples stay where they are); else a GvjaxError."""
    if cells < 4:
        raise GvjaxError(f"a StyleGAN3 canvas of {cells}/4 of the square is narrower than the square: it only widens")
    extra = rates * (cells - 4) / 4
    if not np.all(extra == np.rint(extra)) or np.any(np.rint(extra) % 2):
        raise GvjaxError(f"a StyleGAN3 canvas of {cells}/4 of the square: its sampling rates {sorted(set(rates.astype(int).tolist()))} "
                         "do not widen by a whole, even number of pixels")
    return np.rint(extra).astype(int)


@functools.lru_cache(maxsize=64)
def synthesis_layout(cfg: StyleGAN3Config, canvas: tuple[int, int] = (4, 4)) -> tuple[InputSpec, tuple[LayerSpec, ...]]:
    """The input and every layer of `cfg`'s synthesis network, in execution order (float64 math, as NVIDIA's).

    Cutoffs f_c and minimum stopbands f_t grow geometrically from the first layer's to
    `img_resolution / 2` (and `* last_stopband_rel`) over `num_layers - num_critical` layers; the
    sampling rate is `2**ceil(log2(min(2 f_t, img_resolution)))`, the transition half-width
    `max(f_t, s / 2) - f_c`, the size `s + 2 * margin_size` (the last two: `img_resolution`).

    `canvas = (rows, cols)` in quarters of the square ((4, 4): NVIDIA's layout): each axis of
    `cells` quarters grows every layer by `rate * (cells - 4) / 4` pixels (`canvas_extra`), the same
    extent of the plane at every layer; the padding formula, applied per axis, keeps the square's
    (the growth scales with the rate, so `out * down - in * up` is unchanged).
    """
    n, res = cfg.num_layers, cfg.img_resolution
    last_cutoff = res / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    if channels.min() < 1:
        raise GvjaxError(f"StyleGAN3 generator config: channel_base {cfg.channel_base} gives a layer without channels")
    extra_rows, extra_cols = canvas_extra(rates, canvas[0]), canvas_extra(rates, canvas[1])
    layers = []

    def padding(in_size, out_size, up, down, kernel, up_taps, down_taps):
        total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2  # sample locations shifted as in the paper's appendix C.3
        return lo, total - lo

    for i in range(n + 1):
        prev = max(i - 1, 0)
        torgb = i == n
        in_rate, out_rate = int(rates[prev]), int(rates[i])
        tmp = max(in_rate, out_rate) * (1 if torgb else cfg.lrelu_upsampling)
        kernel = 1 if torgb else cfg.conv_kernel
        up, down = _factor(tmp, in_rate, "input"), _factor(tmp, out_rate, "output")
        up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
        in_size, out_size = int(sizes[prev]), int(sizes[i])
        in_shape = (in_size + int(extra_rows[prev]), in_size + int(extra_cols[prev]))
        out_shape = (out_size + int(extra_rows[i]), out_size + int(extra_cols[i]))
        pad_y = padding(in_shape[0], out_shape[0], up, down, kernel, up_taps, down_taps)
        pad_x = padding(in_shape[1], out_shape[1], up, down, kernel, up_taps, down_taps)
        layers.append(LayerSpec(
            name=f"L{i}_{out_size}_{int(channels[i])}",
            is_torgb=torgb,
            is_critically_sampled=i >= n - cfg.num_critical,
            use_fp16=bool(rates[i] * 2**cfg.num_fp16_res > res),
            in_channels=int(channels[prev]), out_channels=int(channels[i]),
            in_size=in_size, out_size=out_size,
            in_sampling_rate=in_rate, out_sampling_rate=out_rate, tmp_sampling_rate=tmp,
            in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[i]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[i]),
            conv_kernel=kernel, up_factor=up, up_taps=up_taps, down_factor=down, down_taps=down_taps,
            down_radial=cfg.use_radial_filters and not i >= n - cfg.num_critical,
            padding=(*pad_x, *pad_y), in_shape=in_shape, out_shape=out_shape,
        ))
    shape = (int(sizes[0] + extra_rows[0]), int(sizes[0] + extra_cols[0]))
    spec = InputSpec(int(channels[0]), int(sizes[0]), float(rates[0]), float(cutoffs[0]), shape)
    return spec, tuple(layers)


@functools.lru_cache(maxsize=1024)
def layer_filters(spec: LayerSpec) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(up_filter, down_filter) of a layer: static float32 taps, `[T]` or (radial down) `[T, T]`, or None."""
    fu = ops.design_lowpass_filter(spec.up_taps, spec.in_cutoff, 2 * spec.in_half_width, spec.tmp_sampling_rate)
    fd = ops.design_lowpass_filter(
        spec.down_taps, spec.out_cutoff, 2 * spec.out_half_width, spec.tmp_sampling_rate, radial=spec.down_radial
    )
    return fu, fd


def stage_names(config: StyleGAN3Config) -> tuple[str, ...]:
    """Synthesis stages in execution order: 'input', then the layer names (`L0_36_512`, ..., ToRGB last)."""
    return ("input",) + tuple(spec.name for spec in synthesis_layout(config)[1])


def stage_index(config: StyleGAN3Config, stage: str | int) -> int:
    """Index into `stage_names` of a stage named in full ('L5_52_10'), by layer ('L5'), 'input', or by index.

    A GvjaxError (one line, naming the valid stages) for anything else.
    """
    names = stage_names(config)
    if isinstance(stage, (int, np.integer)) and not isinstance(stage, bool) and 0 <= stage < len(names):
        return int(stage)
    if isinstance(stage, str):
        for i, name in enumerate(names):
            if stage in (name, name.split("_")[0]):
                return i
    raise GvjaxError(f"no StyleGAN3 stage {stage!r}: expected 'input', L0 ... L{len(names) - 2} (or 0 ... {len(names) - 1})")


def cut_stage(config: StyleGAN3Config, *, resolution: int | None = None, layer: str | int | None = None) -> int:
    """Index into `stage_names` of the stage a warp cuts after, named by `layer` (see `stage_index`).

    StyleGAN3 layers are not resolution blocks: a `resolution` is a one-line GvjaxError.
    """
    if resolution is not None:
        raise GvjaxError(
            f"a warp at resolution {resolution} needs a StyleGAN2 model; StyleGAN3 layers are not resolution "
            f"blocks: name a layer instead, e.g. layer = \"L{config.num_layers // 2}\" (L0 ... L{config.num_layers})"
        )
    return stage_index(config, layer)


def preview_stage(config: StyleGAN3Config, preview_res: int) -> int:
    """StyleGAN3 has no intermediate images to preview: a one-line GvjaxError."""
    raise GvjaxError("--preview needs a StyleGAN2 'skip' model: StyleGAN3 makes no intermediate image (use a smaller --scale or --size)")


def frame_inputs(config: StyleGAN3Config, variables: dict) -> dict:
    """Per-frame synthesis inputs beyond ws, with their defaults: the input's `transform [3, 3]`
    (NVIDIA's buffer: the inverse of the camera's rotation and translation; the identity when trained)."""
    return {"transform": variables["buffers"]["synthesis"]["input"]["transform"]}


# --- modules -------------------------------------------------------------------------------------


class InputAffine(nn.Module):
    """`w [w_dim] -> (r_c, r_s, t_x, t_y) [4]`, starting at the identity transform (weight 0, bias [1, 0, 0, 0])."""

    w_dim: int

    @nn.compact
    def __call__(self, w):
        weight = self.param("weight", lambda key: jnp.zeros((4, self.w_dim), jnp.float32))
        bias = self.param("bias", lambda key: jnp.asarray([1.0, 0.0, 0.0, 0.0], jnp.float32))
        return ops.fully_connected(w.astype(jnp.float32), weight, bias, weight_gain=1.0 / math.sqrt(self.w_dim))


class SynthesisInput(nn.Module):
    """w [w_dim] (and a `[3, 3]` transform) -> Fourier features `[*spec.shape, channels]`, mixed by a learned matrix."""

    spec: InputSpec
    w_dim: int
    dtype: Any = jnp.float32

    def _frequencies(self) -> jnp.ndarray:
        """NVIDIA's init: directions uniform, radii shaped to fill the disc of radius `bandwidth`."""
        freqs = jax.random.normal(self.make_rng("params"), (self.spec.channels, 2), jnp.float32)
        radii = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1, keepdims=True))
        return freqs / (radii * jnp.exp(jnp.square(radii)) ** 0.25) * self.spec.bandwidth

    @nn.compact
    def __call__(self, w, transform=None):
        """`w [w_dim]`, `transform [3, 3]` (None: the `transform` buffer, the identity) -> `[*spec.shape, C]`."""
        s = self.spec
        weight = self.param("weight", ops.normal_init((s.channels, s.channels)))
        t = InputAffine(self.w_dim, name="affine")(w)
        stored = self.variable("buffers", "transform", lambda: jnp.eye(3, dtype=jnp.float32)).value
        freqs = self.variable("buffers", "freqs", self._frequencies).value
        phases = self.variable(
            "buffers", "phases", lambda: jax.random.uniform(self.make_rng("params"), (s.channels,), jnp.float32) - 0.5
        ).value
        matrix = ops.learned_transform(t, stored if transform is None else transform)
        x = ops.fourier_features(freqs, phases, matrix, size=s.shape, sampling_rate=s.sampling_rate, bandwidth=s.bandwidth)
        mix = jnp.transpose(weight) * (1.0 / math.sqrt(s.channels))
        return jnp.matmul(x, mix, precision=lax.Precision.HIGHEST).astype(self.dtype)


class SynthesisLayer(nn.Module):
    """Modulated conv, then the filtered leaky ReLU: `[*in_shape, C_in] -> [*out_shape, C_out]`.

    Not ToRGB: the weight is normalised per output channel and the styles to unit mean square,
    then modulated and demodulated. ToRGB: styles times `1 / sqrt(C_in)`, no demodulation, a linear
    activation. Both scale the conv output by `input_gain = rsqrt(magnitude_ema)`. Arranged kernels
    (`gvjax.model.with_arranged_kernels`) hold the normalised weight.

    The activation is `filtered_lrelu_trainable` (`ops.filtered_lrelu`, with a fast gradient).
    Sows `input_mean_square` (the mean of `x²` over this example's input, float32) into
    'intermediates' when that collection is mutable: the statistic training tracks in `magnitude_ema`
    (see `synthesize_tracking_magnitudes`).
    """

    spec: LayerSpec
    w_dim: int
    conv_clamp: float | None = 256.0
    modconv: str = "grouped"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, w):
        """`x [*in_shape, C_in]`, `w [w_dim]`."""
        s, k = self.spec, self.spec.conv_kernel
        self.sow("intermediates", "input_mean_square", jnp.mean(jnp.square(x.astype(jnp.float32))))
        styles = FullyConnected(self.w_dim, s.in_channels, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", ops.normal_init((s.out_channels, s.in_channels, k, k)))
        bias = self.param("bias", lambda key: jnp.zeros((s.out_channels,), jnp.float32))
        magnitude_ema = self.variable("buffers", "magnitude_ema", lambda: jnp.ones((), jnp.float32)).value
        if s.is_torgb:
            styles = styles * (1.0 / math.sqrt(s.in_channels * k * k))
        else:
            weight = weight * lax.rsqrt(jnp.mean(jnp.square(weight), axis=(1, 2, 3), keepdims=True))
            styles = styles * lax.rsqrt(jnp.mean(jnp.square(styles)))
        x = ops.modulated_conv2d(
            x.astype(self.dtype), weight, styles, padding=k - 1, demodulate=not s.is_torgb, form=self.modconv,
            kernel=arranged_kernel(self, weight), precision=matmul_precision(self.dtype),
        )
        x = x * lax.rsqrt(magnitude_ema).astype(x.dtype)
        fu, fd = layer_filters(s)
        return filtered_lrelu_trainable(
            x, fu, fd, bias, up=s.up_factor, down=s.down_factor, padding=s.padding,
            gain=1.0 if s.is_torgb else ops.ACTIVATION_GAINS["lrelu"], slope=1.0 if s.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )


class SynthesisNetwork(nn.Module):
    """ws `[num_ws, w_dim]` -> image `[R * rows / 4, R * cols / 4, img_channels]` (`canvas = (rows,
    cols)`; `[R, R, C]` as trained); runs in pieces with `run_layers`."""

    config: StyleGAN3Config
    modconv: str = "grouped"
    dtype: Any = jnp.float32
    canvas: tuple[int, int] = (4, 4)

    def setup(self):
        cfg = self.config
        input_spec, layers = synthesis_layout(cfg, tuple(self.canvas))
        self.input = SynthesisInput(input_spec, cfg.w_dim, dtype=self.dtype)
        for spec in layers:
            layer = SynthesisLayer(spec, cfg.w_dim, conv_clamp=cfg.conv_clamp, modconv=self.modconv, dtype=self.dtype)
            setattr(self, spec.name, layer)

    def run_layers(self, ws, carry=None, *, start: int = 0, stop: int | None = None, transform=None):
        """Run stages `start <= i < stop` of `stage_names(config)` and return the carry.

        Stage 0 (the input) starts from nothing (`carry` must be None) and reads `transform`
        (`[3, 3]`; None: the stored one), which later stages ignore; stage i reads `ws[i]`. The carry
        is stage `stop - 1`'s output `[*out_shape, C]`; after the last stage (ToRGB) it is the image,
        `output_scale` times ToRGB's output, float32. `run_layers(ws, run_layers(ws, stop=i), start=i)`
        equals `run_layers(ws)`.
        """
        names = stage_names(self.config)
        stop = len(names) if stop is None else stop
        if not 0 <= start <= stop <= len(names):
            raise ValueError(f"stages [{start}, {stop}) are not within the {len(names)} stages")
        if (carry is None) != (start == 0):
            raise ValueError("the input stage (0) starts from no carry; a later start needs one")
        x = carry
        for i in range(start, stop):
            x = self.input(ws[0], transform) if i == 0 else getattr(self, names[i])(x, ws[i])
        if stop == len(names) and start < stop:
            x = x.astype(jnp.float32) * self.config.output_scale
        return x

    def __call__(self, ws, *, transform=None):
        """`ws [num_ws, w_dim]`, `transform [3, 3]` or None -> image `[R * rows / 4, R * cols / 4, img_channels]` (`[R, R, C]` on the square canvas) float32."""
        return self.run_layers(ws, transform=transform)


class Generator(nn.Module):
    """Mapping + synthesis. `dtype` is the synthesis compute dtype (params stay float32); `modconv`
    picks the modulated-conv form ('grouped' or 'shared', see `gvjax.ops.modulated_conv2d`).
    `canvas = (rows, cols)`, in quarters of the square ((4, 4) as trained), draws a taller or wider
    image from the same variables (see `synthesis_layout`)."""

    config: StyleGAN3Config
    modconv: str = "grouped"
    dtype: Any = jnp.float32
    canvas: tuple[int, int] = (4, 4)

    def setup(self):
        self.mapping = MappingNetwork(self.config)
        self.synthesis = SynthesisNetwork(self.config, modconv=self.modconv, dtype=self.dtype, canvas=self.canvas)

    def map(self, z, c=None, *, truncation_psi=1.0, truncation_cutoff=None):
        """`z [z_dim]`, `c [c_dim]` -> `ws [num_ws, w_dim]`; truncation on `ws[:cutoff]` (all when None)."""
        return self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    def synthesize(self, ws, *, transform=None, noise_mode="const", noise_key=None):
        """`ws [num_ws, w_dim]`, `transform [3, 3]` -> image `[R * rows / 4, R * cols / 4, C]`. StyleGAN3 has no noise:
        `noise_mode` is checked and ignored (as NVIDIA's), `noise_key` unused."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"unknown noise_mode {noise_mode!r}; expected one of {NOISE_MODES}")
        return self.synthesis(ws, transform=transform)

    def run_layers(self, ws, carry=None, **kwargs):
        """See `SynthesisNetwork.run_layers`."""
        return self.synthesis.run_layers(ws, carry, **kwargs)

    def run_stages(self, ws, carry=None, *, start: int = 0, stop: int | None = None, noise_mode="const", noise_key=None, transform=None):
        """The family-neutral cut (see `gvjax.models`): `carry = {'x': features, 'img': image or None}`
        (None before stage 0); after the last stage `carry['img']` is the image `[R * rows / 4, R * cols / 4, C]`.
        `transform [3, 3]` is the input's (None: the stored one); StyleGAN3 has no noise."""
        n = len(stage_names(self.config))
        stop = n if stop is None else stop
        x = self.synthesis.run_layers(ws, None if carry is None else carry["x"], start=start, stop=stop, transform=transform)
        return {"x": x, "img": x if stop == n else None}

    def __call__(self, z, c=None, *, truncation_psi=1.0, truncation_cutoff=None, transform=None, noise_mode="const", noise_key=None):
        """`z [z_dim]`, `c [c_dim]` -> image `[R * rows / 4, R * cols / 4, C]`."""
        ws = self.map(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesize(ws, transform=transform, noise_mode=noise_mode)


def init_variables(config: StyleGAN3Config, key: jax.Array) -> dict:
    """Randomly initialised variables `{'params': ..., 'buffers': ...}` (NVIDIA's init distributions)."""
    return init_generator(Generator(config), key)


def variable_shapes(config: StyleGAN3Config) -> dict:
    """The tree of `jax.ShapeDtypeStruct` a generator of `config` has, without computing anything."""
    return jax.eval_shape(lambda: init_variables(config, jax.random.key(0)))


# --- training ------------------------------------------------------------------------------------


def synthesize_tracking_magnitudes(gen: Generator, variables: dict, ws: jnp.ndarray, beta) -> tuple[jnp.ndarray, dict]:
    """Synthesis of a batch that updates every layer's `magnitude_ema` as NVIDIA's training does (`update_emas`).

    Stage by stage: before layer i runs, its `magnitude_ema` becomes
    `lerp(m, magnitude_ema, beta) = m + beta * (magnitude_ema - m)`, where `m` is the mean of `x²` of
    the layer's input over the whole batch (every example, position and channel; no gradient); the
    layer then runs with the new value, so each later layer's input is computed with the updated gains
    before its own statistic is taken. The stages work on one example at a time (vmapped); only the
    mean spans the batch. A forward pass with the returned buffers sees the same layer inputs, so its
    sown `input_mean_square` (batch-averaged) is `m` of each layer.

    Args:
      gen: the generator module; variables: its `{'params', 'buffers'}`.
      ws: `[N, num_ws, w_dim]`.
      beta: the decay, a float or a scalar array (NVIDIA's train.py: `0.5 ** (batch / 20000)`).

    Returns:
      (images `[N, R, R, C]` float32, `variables['buffers']` with each layer's new `magnitude_ema`).
    """
    names = stage_names(gen.config)
    buffers = variables["buffers"]
    synthesis = dict(buffers["synthesis"])
    x = jax.vmap(lambda w: gen.apply(variables, w, None, start=0, stop=1, method="run_layers"))(ws)
    for i, name in enumerate(names[1:], start=1):
        m = jnp.mean(jnp.square(lax.stop_gradient(x).astype(jnp.float32)))
        synthesis[name] = {**synthesis[name], "magnitude_ema": m + beta * (synthesis[name]["magnitude_ema"] - m)}
        current = {**variables, "buffers": {**buffers, "synthesis": dict(synthesis)}}
        x = jax.vmap(lambda w, x, v=current, i=i: gen.apply(v, w, x, start=i, stop=i + 1, method="run_layers"))(ws, x)
    return x, {**buffers, "synthesis": synthesis}


def filtered_lrelu_trainable(x, fu, fd, b, *, up, down, padding, gain, slope, clamp):
    """`ops.filtered_lrelu` (the same forward, argument for argument) with a gradient as fast as that forward.

    JAX's own transpose of the FIR loops of `ops.upfirdn2d` runs 20-40x slower than the forward on
    XLA:CPU (every shifted tap becomes a padded full-size array; measured: 0.89 s vs 0.022 s on
    L0 of the micro T fixture at batch 16), which made StyleGAN3 training crawl. The gradient here
    is NVIDIA's: the transpose of each `upfirdn2d` is another `upfirdn2d` (`upfirdn2d_transpose`),
    and only the elementwise activation is differentiated by JAX.
    """
    one = np.ones((1, 1), np.float32)
    fu_, fd_ = (one if fu is None else fu), (one if fd is None else fd)
    filters_up = fu is not None or up > 1 or any(np.atleast_1d(padding))
    filters_down = fd is not None or down > 1
    act = functools.partial(ops.bias_act, act="linear" if slope == 1 else "lrelu", alpha=slope, gain=gain, clamp=clamp)

    @jax.custom_vjp
    def run(x, b):
        return ops.filtered_lrelu(x, fu, fd, b, up=up, down=down, padding=padding, gain=gain, slope=slope, clamp=clamp)

    def run_fwd(x, b):
        return run(x, b), (x, b)

    def run_bwd(res, dy):
        x, b = res
        v = ops.bias_act(x.astype(jnp.float32), b)
        u = ops.upfirdn2d(v, fu_, up=up, padding=padding, gain=up * up) if filters_up else v
        a, act_vjp = jax.vjp(act, u)
        g = dy.astype(jnp.float32)
        if filters_down:
            g = upfirdn2d_transpose(g, fd_, a.shape, down=down)
        (g,) = act_vjp(g)
        if filters_up:
            g = upfirdn2d_transpose(g, fu_, v.shape, up=up, padding=padding, gain=up * up)
        db = None if b is None else jnp.sum(g, axis=tuple(range(g.ndim - 1))).astype(b.dtype)
        return g.astype(x.dtype), db

    run.defvjp(run_fwd, run_bwd)
    return run(x, b)


def upfirdn2d_transpose(dy, f, x_shape, *, up=1, down=1, padding=0, gain=1.0, flip_filter=False):
    """The transpose (vector-Jacobian product) of `ops.upfirdn2d(x, f, up, down, padding, flip_filter, gain)`
    applied to `dy`, for an `x` of shape `x_shape`: `upfirdn2d` with up and down swapped, the filter
    flipped and the padding mirrored (NVIDIA's formula), cut or zero-padded at the end to `x_shape`
    where a downsampling dropped trailing samples."""
    f = np.asarray(f, np.float32)
    if isinstance(padding, int):
        padding = (padding,) * 4
    elif len(padding) == 2:
        padding = (padding[0], padding[0], padding[1], padding[1])
    px0, _, py0, _ = padding
    fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else f.shape
    h, w = x_shape[-3], x_shape[-2]
    oh, ow = dy.shape[-3], dy.shape[-2]
    p = (fw - px0 - 1, w * up - ow * down + px0 - up + 1, fh - py0 - 1, h * up - oh * down + py0 - up + 1)
    dx = ops.upfirdn2d(dy, f, up=down, down=up, padding=p, flip_filter=not flip_filter, gain=gain)[..., :h, :w, :]
    tail = [(0, 0)] * (dx.ndim - 3) + [(0, h - dx.shape[-3]), (0, w - dx.shape[-2]), (0, 0)]
    return jnp.pad(dx, tail)
