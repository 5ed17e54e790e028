"""Convert stage: reads NVIDIA .pkl (torch and TensorFlow) and rosinality .pt checkpoints into gvjax checkpoints.

`load_source(path)` converts in memory, `convert_checkpoint(src, dst)` writes a checkpoint
directory; see `gvjax.convert.source`. Files are read by `torch_io` and, for TensorFlow network
pickles, `tensorflow` (never executing them).
"""

from gvjax.convert.source import FORMATS, convert_checkpoint, describe, load_any, load_source

__all__ = ["FORMATS", "convert_checkpoint", "describe", "load_any", "load_source"]
