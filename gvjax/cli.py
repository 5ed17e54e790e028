"""The `gvjax` command line. A thin layer: parse, validate, call a library function, report.

This is the one core module that wires stages together (it loads models through
`gvjax.convert` and hands them to `gvjax.render` / `gvjax.train`). Errors the user can
cause are printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Optional

import typer

import gvjax
from gvjax.errors import GvjaxError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="gvjax: audio-reactive music videos from StyleGAN2 models, in JAX.",
)

MODEL_HELP = "Model: a gvjax checkpoint directory, or 'bundled' for the built-in model."


def _version_callback(value: bool):
    if value:
        typer.echo(f"gvjax {gvjax.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
):
    """gvjax: audio-reactive music videos from StyleGAN2 models, in JAX."""


def load_model(spec: str):
    """A Checkpoint from a model spec: 'bundled' or a checkpoint directory."""
    from gvjax.bundled import BUNDLED_NAME, bundled_model
    from gvjax.checkpoint import is_checkpoint, load_checkpoint

    if spec == BUNDLED_NAME:
        return bundled_model()
    path = pathlib.Path(spec)
    if not path.exists():
        raise GvjaxError(f"no such model: {spec}")
    if path.is_dir() and is_checkpoint(path):
        return load_checkpoint(path)
    raise GvjaxError(f"{spec} is not a gvjax checkpoint directory")


def _parse_dtype(name: str):
    import jax.numpy as jnp

    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if name not in dtypes:
        raise GvjaxError(f"--dtype must be one of {', '.join(dtypes)}, got {name!r}")
    return dtypes[name]


@app.command()
def info():
    """Versions, the JAX backend and its devices."""
    import importlib.metadata as md
    import platform

    import jax

    typer.echo(f"gvjax {gvjax.__version__} (Python {platform.python_version()})")
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "librosa", "orbax-checkpoint", "imageio-ffmpeg", "typer", "pillow"):
        try:
            typer.echo(f"  {pkg:18s} {md.version(pkg)}")
        except md.PackageNotFoundError:
            typer.echo(f"  {pkg:18s} not installed")
    typer.echo(f"backend: {jax.default_backend()}")
    for d in jax.devices():
        typer.echo(f"  device {d.id}: {d.device_kind} ({d.platform})")


@app.command()
def generate(
    model: str = typer.Argument(..., help=MODEL_HELP),
    seeds: str = typer.Option("0-3", help="Seeds, e.g. '0-3' or '1,5,9'."),
    trunc: float = typer.Option(1.0, "--trunc", help="Truncation psi."),
    noise_mode: str = typer.Option("const", help="Noise: const, random or none."),
    outdir: pathlib.Path = typer.Option(..., help="Output directory (created if missing)."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    npy: bool = typer.Option(False, "--npy", help="Also write the float32 [H, W, C] output as .npy."),
    batch: int = typer.Option(8, min=1, help="Images per compiled step."),
    dtype: str = typer.Option("float32", help="Compute dtype: float32 or bfloat16."),
):
    """Images from seeds, as NVIDIA's generate.py: OUTDIR/seed0000.png, ..."""
    import numpy as np

    from gvjax.generate import generate_images, parse_seeds
    from gvjax.images import to_uint8, write_png

    seed_list = parse_seeds(seeds)
    compute_dtype = _parse_dtype(dtype)
    ckpt = load_model(model)
    if ckpt.config.c_dim == 0 and class_idx is not None:
        typer.echo("warning: --class is ignored for an unconditional model", err=True)
        class_idx = None
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GvjaxError(f"cannot create {outdir}: {e.strerror}") from None
    images = generate_images(
        ckpt.config, ckpt.variables, seed_list, truncation_psi=trunc, noise_mode=noise_mode,
        class_idx=class_idx, batch=batch, dtype=compute_dtype,
    )
    for seed, img in images:
        write_png(outdir / f"seed{seed:04d}.png", to_uint8(img))
        if npy:
            np.save(outdir / f"seed{seed:04d}.npy", img.astype(np.float32))
    typer.echo(f"wrote {len(seed_list)} image(s) to {outdir}")


def main():
    """Console entry point: runs the app, turning GvjaxError into one line and exit code 2."""
    try:
        app()
    except GvjaxError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
