"""Images from seeds, following NVIDIA's generate.py (z from `RandomState(seed)`, same PNG mapping)."""

from __future__ import annotations

import os
import pathlib
import re
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from gvjax import models
from gvjax.config import GeneratorConfig, check_seed
from gvjax.errors import GvjaxError, check_interrupt, interrupts_between_batches
from gvjax.model import NOISE_MODES, modconv_for_batch, with_arranged_kernels


MAX_SEEDS = 1_000_000


def parse_seeds(text: str) -> list[int]:
    """'0-3' -> [0, 1, 2, 3]; '1,5,9' -> [1, 5, 9]; forms can be mixed: '0-2,7'.

    Every seed is in [0, 2**32); at most MAX_SEEDS in all.
    """
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = check_seed(int(m.group(1)), "a seed"), check_seed(int(m.group(2)), "a seed")
            if hi < lo:
                raise GvjaxError(f"seed range {part!r} is empty (end before start)")
            if len(seeds) + hi - lo + 1 > MAX_SEEDS:
                raise GvjaxError(f"seeds {text!r} name more than {MAX_SEEDS:,} seeds")
            seeds.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(check_seed(int(part), "a seed"))
        else:
            raise GvjaxError(f"cannot read seeds {text!r}: use forms like '0-3' or '1,5,9'")
    return seeds


def z_for_seed(seed: int, z_dim: int) -> np.ndarray:
    """`[z_dim]` float32: `np.random.RandomState(seed).randn(1, z_dim)[0]`, as NVIDIA's generate.py."""
    if not 0 <= seed < 2**32:
        raise GvjaxError(f"seed {seed} is out of range [0, 2**32)")
    return np.random.RandomState(seed).randn(1, z_dim)[0].astype(np.float32)


def label_vector(config: GeneratorConfig, class_idx: int | None) -> np.ndarray | None:
    """One-hot `[c_dim]` label for conditional models, None for unconditional ones."""
    if config.c_dim == 0:
        return None
    if class_idx is None:
        raise GvjaxError(f"this model is conditional ({config.c_dim} classes): pass --class N")
    if not 0 <= class_idx < config.c_dim:
        raise GvjaxError(f"--class {class_idx} is out of range: the model has classes 0..{config.c_dim - 1}")
    c = np.zeros(config.c_dim, np.float32)
    c[class_idx] = 1
    return c


def image_fn(
    config: GeneratorConfig,
    *,
    batch: int,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    dtype=jnp.float32,
):
    """A jitted `(variables, z [B, z_dim], c [B, c_dim] | None, keys [B], inputs) -> images [B, R, R, C]`
    float32; `inputs` are the family's synthesis inputs shared by the batch (`camera_inputs`)."""
    if noise_mode not in NOISE_MODES:
        raise GvjaxError(f"unknown noise mode {noise_mode!r}; expected one of {', '.join(NOISE_MODES)}")
    gen = models.generator(config, modconv=modconv_for_batch(batch), dtype=dtype)

    def one(variables, z, c, key, inputs):
        img = gen.apply(
            variables, z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            noise_mode=noise_mode, noise_key=key if noise_mode == "random" else None, **inputs,
        )
        return img.astype(jnp.float32)

    c_axis = 0 if config.c_dim else None
    return jax.jit(jax.vmap(one, in_axes=(None, 0, c_axis, 0, None)))


def camera_inputs(config, variables: dict, translate: tuple[float, float] | None = None, rotate: float | None = None) -> dict:
    """The family's synthesis inputs for images seen through a camera, as stylegan3's gen_images.py:
    StyleGAN3's `transform` is `inv(make_transform(translate, rotate))` (identity at 0, 0), in place
    of the stored one. StyleGAN2 has no such input: a camera there is a one-line GvjaxError."""
    from gvjax.ops import make_transform

    names = models.frame_inputs_names(config)
    if "transform" not in names:
        if translate is not None or rotate is not None:
            raise GvjaxError(f"--translate and --rotate move StyleGAN3's Fourier input; this {models.family_of(config)} model has none")
        return {}
    tx, ty = translate or (0.0, 0.0)
    return {"transform": np.linalg.inv(make_transform((tx, ty), rotate or 0.0)).astype(np.float32)}


def generate_images(
    config: GeneratorConfig,
    variables: dict,
    seeds: list[int],
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,
    batch: int = 8,
    dtype=jnp.float32,
    translate: tuple[float, float] | None = None,
    rotate: float | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(seed, image [R, R, C] float32)` for each seed; random noise uses `jax.random.key(seed)`.
    `translate` (x, y) and `rotate` (degrees) move a StyleGAN3 model's camera (`camera_inputs`)."""
    c = label_vector(config, class_idx)
    inputs = camera_inputs(config, variables, translate, rotate)
    batch = max(1, min(batch, len(seeds)))
    fn = image_fn(config, batch=batch, truncation_psi=truncation_psi, noise_mode=noise_mode, dtype=dtype)
    variables = with_arranged_kernels(models.generator(config), variables)
    for start in range(0, len(seeds), batch):
        check_interrupt()
        chunk = seeds[start : start + batch]
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        z = np.stack([z_for_seed(s, config.z_dim) for s in padded])
        cs = None if c is None else np.tile(c, (batch, 1))
        keys = jax.vmap(jax.random.key)(jnp.asarray(padded, jnp.uint32))
        images = np.asarray(fn(variables, z, cs, keys, inputs))
        yield from zip(chunk, images[: len(chunk)])


def write_images(
    config: GeneratorConfig,
    variables: dict,
    seeds: list[int],
    outdir: str | os.PathLike,
    *,
    npy: bool = False,
    **options,
) -> list[pathlib.Path]:
    """Write `outdir/seed0000.png` (and `.npy` with `npy`) for each seed; returns the paths.

    `options` go to `generate_images`. Each file is written to a temporary sibling and renamed;
    `outdir` is created only when the first image is ready. On any failure (Ctrl-C included)
    the files written so far, and `outdir` if this call created it, are removed.
    """
    from gvjax.images import to_uint8, write_png
    from gvjax.outputs import OutputError, atomic_output, os_error_message, remove

    outdir = pathlib.Path(outdir)
    created, written = False, []
    try:
        with interrupts_between_batches():
            for seed, img in generate_images(config, variables, seeds, **options):
                if not outdir.exists():
                    try:
                        outdir.mkdir(parents=False)
                    except OSError as e:
                        raise OutputError(f"cannot create {outdir}: {os_error_message(e, outdir)}") from None
                    created = True
                write_png(outdir / f"seed{seed:04d}.png", to_uint8(img))
                written.append(outdir / f"seed{seed:04d}.png")
                if npy:
                    with atomic_output(outdir / f"seed{seed:04d}.npy", suffix=".npy") as tmp:
                        np.save(tmp, img.astype(np.float32))
                    written.append(outdir / f"seed{seed:04d}.npy")
    except BaseException:
        for path in written:
            remove(path)
        if created:
            remove(outdir)
        raise
    return written
