"""Model families. Each module (`stylegan3`) exports its `Config`, `Generator`, `init_variables(config, key)`
and `variable_shapes(config)`; variables are `{'params': ..., 'buffers': ...}` in NVIDIA's state-dict names."""
