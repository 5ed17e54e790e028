"""gvjax: StyleGAN2 in JAX, driven by music."""

__version__ = "0.1.0"
