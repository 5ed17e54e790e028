"""Convert stage: reads NVIDIA .pkl and rosinality .pt checkpoints into gvjax checkpoints."""
