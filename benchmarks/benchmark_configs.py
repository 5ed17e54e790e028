"""Model configs shared by the benchmarks."""

from gvjax.config import GeneratorConfig
from gvjax.models.stylegan3 import StyleGAN3Config

# The 256x256 benchmark config: z = w = 512, 8 mapping layers, channel_base 16384,
# channel_max 512, skip architecture (random weights).
BENCH_CONFIG = GeneratorConfig(
    z_dim=512, w_dim=512, img_resolution=256, mapping_layers=8, channel_base=16384, channel_max=512, architecture="skip"
)

# 1024x1024 config-f, as NVIDIA's stylegan2-ada-pytorch trains it (conv_clamp 256): the device
# check's generator, NVIDIA baseline and render model (random weights).
CONFIG_F_1024 = GeneratorConfig(
    z_dim=512, w_dim=512, img_resolution=1024, mapping_layers=8, channel_base=32768, channel_max=512, architecture="skip",
    conv_clamp=256,
)

# A tiny model with the same code paths (blocks 4..64, so the presets' warps at 16 and 32 apply):
# `device_check.py --quick`.
TINY_CONFIG = GeneratorConfig(
    z_dim=32, w_dim=32, img_resolution=64, mapping_layers=2, channel_base=512, channel_max=32, architecture="skip",
    conv_clamp=256,
)

# The quick check's train part: the same code at 32x32 (blocks 4..32), half the compile of TINY_CONFIG.
TINY_TRAIN_CONFIG = GeneratorConfig(
    z_dim=32, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=32, architecture="skip",
    conv_clamp=256,
)


# StyleGAN3 as NVlabs/stylegan3 train.py builds it: z_dim = w_dim = 512, 2 mapping layers, --cbase
# 32768 and --cmax 512 (its defaults); --cfg=stylegan3-r also sets conv_kernel=1 and
# use_radial_filters=True and doubles channel_base / channel_max. Everything else is the
# constructors' defaults (14 layers, 2 critical, conv_clamp 256, num_fp16_res 4). Random weights.
def _sg3(kind: str, resolution: int) -> StyleGAN3Config:
    if kind == "t":
        return StyleGAN3Config(z_dim=512, w_dim=512, img_resolution=resolution, mapping_layers=2, channel_base=32768, channel_max=512)
    return StyleGAN3Config(
        z_dim=512, w_dim=512, img_resolution=resolution, mapping_layers=2, channel_base=65536, channel_max=1024, conv_kernel=1,
        use_radial_filters=True,
    )


# name -> config: t256 / r256 for the CPU table beside NVIDIA's; t1024 / r1024 for a device session.
SG3_CONFIGS = {f"{kind}{res}": _sg3(kind, res) for res in (256, 1024) for kind in ("t", "r")}
