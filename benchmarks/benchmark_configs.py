"""Model configs shared by the benchmarks."""

from gvjax.config import GeneratorConfig

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
