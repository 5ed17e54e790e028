"""rosinality/stylegan2-pytorch generators -> NVIDIA state-dict names (then `convert.nvidia`).

A rosinality checkpoint holds state dicts only (`g_ema`, optionally `g`, `d`), so the config is
inferred from tensor shapes: `style_dim` and `n_mlp` from `style.<i>`, the size from the number
of `to_rgbs`, the channels per resolution from the conv weights (they need not follow the stock
table). `ROSINALITY_TABLE` is the one place that renames and reshapes each tensor into the
NVIDIA name that `convert.nvidia.NAME_TABLE` knows:

* `style.<i>` (i >= 1; `style.0` is PixelNorm) -> `mapping.fc<i-1>`;
* `conv1` -> `synthesis.b4.conv1`; `convs.<j>` -> `synthesis.b<2**(j//2+3)>.conv<j%2>`;
  `to_rgb1` -> `synthesis.b4.torgb`; `to_rgbs.<i>` -> `synthesis.b<2**(i+3)>.torgb`;
* `noises.noise_<i>` `[1, 1, r, r]` -> `noise_const` `[r, r]` of conv1 (i = 0) or `convs.<i-1>`;
  `noise.weight` `[1]` -> `noise_strength` `[]`; `activate.bias` -> `bias`;
  to_rgb `bias` `[1, 3, 1, 1]` -> `[3]`; conv weights `[1, out, in, k, k]` -> `[out, in, k, k]`;
* the FIR kernels `blur.kernel` / `upsample.kernel` are stored x4 (sum 4): divided by 4 they are
  NVIDIA's `resample_filter` buffers (checked against the config, not stored).

Both codes compute the same function (rosinality scales weights before demodulating, NVIDIA after;
the 1e-8 epsilon is the only difference). rosinality's mapping learning-rate multiplier (`lr_mlp`,
0.01) is not stored in the file; the default is assumed.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from gvjax.config import GeneratorConfig
from gvjax.errors import GvjaxError

# (rosinality state-dict name, NVIDIA name template, array transform); named groups are
# resolved by `_RESOLVE` before formatting the template.
ROSINALITY_TABLE: tuple[tuple[str, str, str], ...] = (
    (r"style\.(?P<fc>\d+)\.(?P<p>weight|bias)", "mapping.fc{fc}.{p}", "same"),
    (r"input\.input", "synthesis.b4.const", "drop_batch"),
    (r"(?P<layer>conv1|convs\.\d+|to_rgb1|to_rgbs\.\d+)\.conv\.weight", "{layer}.weight", "drop_batch"),
    (r"(?P<layer>conv1|convs\.\d+|to_rgb1|to_rgbs\.\d+)\.conv\.modulation\.(?P<p>weight|bias)", "{layer}.affine.{p}", "same"),
    (r"(?P<layer>conv1|convs\.\d+)\.noise\.weight", "{layer}.noise_strength", "scalar"),
    (r"(?P<layer>conv1|convs\.\d+)\.activate\.bias", "{layer}.bias", "same"),
    (r"(?P<layer>to_rgb1|to_rgbs\.\d+)\.bias", "{layer}.bias", "flatten"),
    (r"noises\.noise_(?P<noise>\d+)", "{noise}.noise_const", "drop_batch_channel"),
    (r"(?P<layer>convs\.\d+)\.conv\.blur\.kernel", "{layer}.resample_filter", "fir_x4"),
    (r"to_rgbs\.(?P<block>\d+)\.upsample\.kernel", "{block}.resample_filter", "fir_x4"),
)


def _layer(token: str) -> str:
    """NVIDIA path of a rosinality layer: 'convs.3' -> 'synthesis.b16.conv1', 'to_rgbs.0' -> 'synthesis.b8.torgb'."""
    kind, _, index = token.partition(".")
    if kind == "conv1":
        return "synthesis.b4.conv1"
    if kind == "to_rgb1":
        return "synthesis.b4.torgb"
    i = int(index)
    if kind == "convs":
        return f"synthesis.b{2 ** (i // 2 + 3)}.conv{i % 2}"
    return f"synthesis.b{2 ** (i + 3)}.torgb"


_RESOLVE: dict[str, Callable[[str], str]] = {
    "fc": lambda i: str(int(i) - 1),
    "p": lambda p: p,
    "layer": _layer,
    "noise": lambda i: _layer("conv1" if int(i) == 0 else f"convs.{int(i) - 1}"),
    "block": lambda i: f"synthesis.b{2 ** (int(i) + 3)}",
}


def _one(x: np.ndarray, axes: int) -> np.ndarray:
    """x without its `axes` leading size-1 axes."""
    if x.shape[:axes] != (1,) * axes:
        raise GvjaxError(f"expected {axes} leading axes of size 1, got shape {list(x.shape)}")
    return x.reshape(x.shape[axes:])


_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "same": lambda x: x,
    "drop_batch": lambda x: _one(x, 1),
    "drop_batch_channel": lambda x: _one(x, 2),
    "flatten": lambda x: x.reshape(-1),
    "scalar": lambda x: _one(x.reshape(-1), 1),
    "fir_x4": lambda x: x / 4,
}
_COMPILED = tuple((re.compile(p), t, f) for p, t, f in ROSINALITY_TABLE)


def nvidia_name(name: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(NVIDIA state-dict name, array transform) of a rosinality generator tensor name."""
    for pattern, template, transform in _COMPILED:
        m = pattern.fullmatch(name)
        if m:
            groups = {k: _RESOLVE[k](v) for k, v in m.groupdict().items()}
            return template.format(**groups), _TRANSFORMS[transform]
    raise GvjaxError(f"unexpected tensor {name!r}: not a rosinality StyleGAN2 generator")


def nvidia_state_dict(state: dict[str, np.ndarray], latent_avg: np.ndarray | None) -> dict[str, np.ndarray]:
    """A rosinality generator state dict in NVIDIA's names and layouts.

    latent_avg `[style_dim]` (or None) becomes `mapping.w_avg`. Reshapes are views: no copies.
    """
    out = {}
    for name, value in state.items():
        target, transform = nvidia_name(name)
        try:
            out[target] = transform(np.asarray(value))
        except GvjaxError as e:
            raise GvjaxError(f"{name}: {e}") from None
    if latent_avg is not None:
        out["mapping.w_avg"] = np.asarray(latent_avg).reshape(-1)
    return out


# --- config from shapes ---------------------------------------------------------------------------

STOCK_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _shape(state: dict[str, np.ndarray], name: str) -> tuple[int, ...]:
    if name not in state:
        raise GvjaxError(f"not a rosinality StyleGAN2 generator: no {name!r}")
    return tuple(np.shape(state[name]))


def _count(state: dict[str, np.ndarray], pattern: str) -> int:
    """Number of names in `state` that match the regular expression `pattern`."""
    return sum(1 for name in state if re.fullmatch(pattern, name))


def channel_table(state: dict[str, np.ndarray]) -> dict[int, int]:
    """{resolution: feature channels} of a rosinality generator, from its tensor shapes."""
    channels = {4: _shape(state, "input.input")[1]}
    for i in range(_count(state, r"to_rgbs\.\d+\.conv\.weight")):
        # to_rgbs.<i>.conv.weight: [1, img_channels, C_in, 1, 1] at resolution 2**(i+3)
        channels[2 ** (i + 3)] = _shape(state, f"to_rgbs.{i}.conv.weight")[2]
    return channels


def channel_base_max(channels: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) with `min(channel_base // r, channel_max) == channels[r]` for every r.

    GvjaxError if no such pair exists (a table that does not decrease like NVIDIA's).
    """
    cmax = max(channels.values())
    base = max(c * r for r, c in channels.items())  # base // r >= c everywhere
    upper = [(c + 1) * r - 1 for r, c in channels.items() if c < cmax]  # base // r == c where below the max
    if upper and base > min(upper):
        table = ", ".join(f"{r}: {c}" for r, c in sorted(channels.items()))
        raise GvjaxError(f"channel table {{{table}}} has no NVIDIA channel_base/channel_max equivalent")
    return base, cmax


def stock_multiplier(channels: dict[int, int]) -> int | None:
    """rosinality's `channel_multiplier` if `channels` is its stock table for some multiplier, else None."""
    if 64 not in channels:
        return None
    multiplier, rem = divmod(channels[64], STOCK_CHANNELS[64])
    if rem or multiplier < 1:
        return None
    stock = {r: c if r <= 32 else c * multiplier for r, c in STOCK_CHANNELS.items()}
    return multiplier if all(stock.get(r) == c for r, c in channels.items()) else None


def filter_taps(kernel: np.ndarray) -> tuple[float, ...]:
    """1-D FIR taps of a rosinality kernel (outer(k, k) / sum * 4), scaled to integers when they are."""
    kernel = np.asarray(kernel, np.float64)
    taps = kernel.sum(axis=0)
    taps = taps / taps[taps > 0].min()
    rounded = np.round(taps)
    if np.allclose(taps, rounded, atol=1e-5):
        taps = rounded
    return tuple(float(t) for t in taps)


def config_from_state_dict(state: dict[str, np.ndarray]) -> tuple[GeneratorConfig, dict[str, Any]]:
    """(GeneratorConfig, inferred rosinality ctor args) of a rosinality generator state dict.

    The ctor args are what `model.Generator(size, style_dim, n_mlp, channel_multiplier)` would
    have been given (`channel_multiplier` None when the table is not a stock one), plus the
    channel table itself.
    """
    style_dim = _shape(state, "style.1.weight")[0]
    n_mlp = _count(state, r"style\.\d+\.weight")
    num_rgbs = _count(state, r"to_rgbs\.\d+\.conv\.weight")
    size = 4 * 2**num_rgbs
    channels = channel_table(state)
    base, cmax = channel_base_max(channels)
    kernels = [v for k, v in state.items() if k.endswith(".kernel")]
    taps = filter_taps(kernels[0]) if kernels else (1.0, 3.0, 3.0, 1.0)
    config = GeneratorConfig(
        z_dim=style_dim,
        w_dim=style_dim,
        c_dim=0,
        img_resolution=size,
        img_channels=_shape(state, "to_rgb1.conv.weight")[1],
        mapping_layers=n_mlp,
        mapping_lr_multiplier=0.01,
        channel_base=base,
        channel_max=cmax,
        architecture="skip",
        conv_clamp=None,
        resample_filter=taps,
        num_fp16_res=0,
    )
    ctor = {
        "size": size,
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channel_multiplier": stock_multiplier(channels),
        "blur_kernel": [int(t) if t.is_integer() else t for t in taps],
        "lr_mlp": 0.01,
        "channels": {str(r): c for r, c in sorted(channels.items())},
    }
    return config, ctor
