"""Model configs shared by the benchmarks."""

from gvjax.config import GeneratorConfig

# The 256x256 benchmark config: z = w = 512, 8 mapping layers, channel_base 16384,
# channel_max 512, skip architecture (random weights).
BENCH_CONFIG = GeneratorConfig(
    z_dim=512, w_dim=512, img_resolution=256, mapping_layers=8, channel_base=16384, channel_max=512, architecture="skip"
)
