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

MODEL_HELP = "Model: a gvjax checkpoint directory, an NVIDIA .pkl or rosinality .pt file (converted in memory), or 'bundled'."


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
    """A Checkpoint from a model spec: 'bundled', a checkpoint directory, or a .pkl/.pt source file."""
    from gvjax.bundled import BUNDLED_NAME, bundled_model
    from gvjax.convert import load_any

    if spec == BUNDLED_NAME:
        return bundled_model()
    return load_any(spec)[0]


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


def _parse_size(text: Optional[str]):
    if text is None:
        return None
    import re

    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise GvjaxError(f"--size must look like 1280x720, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _timeline_path(spec: Optional[str]) -> Optional[str]:
    """An existing TOML path (made absolute, for OUT.json) or a preset name, as given."""
    if spec is None:
        return None
    path = pathlib.Path(spec)
    return str(path.absolute()) if path.exists() else spec


@app.command()
def render(
    song: Optional[pathlib.Path] = typer.Argument(None, help="The song (wav, flac, ogg, mp3). Omit with --demo or --from."),
    out: Optional[pathlib.Path] = typer.Option(None, "-o", "--out", help="Output video (.mp4); OUT.json is written beside it."),
    model: str = typer.Option("bundled", help=MODEL_HELP),
    demo: bool = typer.Option(False, "--demo", help="Render the built-in synthesized demo track."),
    from_record: Optional[pathlib.Path] = typer.Option(None, "--from", help="Render again from an OUT.json record."),
    fps: float = typer.Option(30.0, help="Frames per second."),
    seed: int = typer.Option(0, help="Seed of the keyframes (and of random noise)."),
    keyframes: int = typer.Option(6, help="Number of keyframes on the loop."),
    keyframe_seeds: Optional[str] = typer.Option(None, help="Explicit keyframe seeds, e.g. '1,5,9' or '0-5'."),
    keyframes_npy: Optional[pathlib.Path] = typer.Option(None, help="A .npy of ws [N, num_ws, w_dim] as keyframes."),
    trunc: float = typer.Option(0.7, "--trunc", help="Truncation psi of the keyframes."),
    start: float = typer.Option(0.0, help="Start of the rendered range in the song, seconds."),
    duration: Optional[float] = typer.Option(None, help="Length of the rendered range, seconds (default: to the end)."),
    size: Optional[str] = typer.Option(None, help="Output WxH (crop or pad of the model's square output, after --scale)."),
    scale: int = typer.Option(1, help="Upscale the model's output by this whole factor (Lanczos-3), e.g. 4 for a 64x64 model."),
    batch: int = typer.Option(8, help="Frames per compiled step."),
    crf: int = typer.Option(18, help="H.264 quality (0..51, lower is better)."),
    preview: bool = typer.Option(False, "--preview", help="Fast preview: stop synthesis early and upscale."),
    noise_mode: str = typer.Option("const", help="Noise: const, random or none."),
    drive: str = typer.Option("rms", help="Audio feature that drives the speed: rms, onset, percussive, harmonic, low, mid, high."),
    base_speed: float = typer.Option(0.3, help="Relative speed of travel in silence."),
    speed_gain: float = typer.Option(1.0, help="Relative extra speed at full drive."),
    laps: Optional[float] = typer.Option(None, help="Loops over the keyframes during the video (default 1; whole laps loop seamlessly)."),
    laps_per_minute: Optional[float] = typer.Option(None, help="Instead of --laps: a fixed average speed."),
    stem: list[str] = typer.Option([], help="FEATURE=FILE: compute FEATURE from a separate audio file (repeatable)."),
    dtype: str = typer.Option("float32", help="Compute dtype: float32 or bfloat16."),
    timeline: Optional[str] = typer.Option(None, help="Timeline TOML of sections and feature warps (or a preset: original, all-warps)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Render SONG into a video whose motion follows the music."""
    import tempfile

    from gvjax.render.config import RenderConfig
    from gvjax.render.pipeline import read_record, render_video

    record = None
    if from_record is not None:
        record = read_record(from_record)
        cfg = RenderConfig.from_dict(record["config"])
        model = record["model"]["spec"] or model
        demo = bool(record["audio"].get("demo"))
        song = None if demo else pathlib.Path(record["audio"]["path"])
        out = out or pathlib.Path(record["output"])
    else:
        from gvjax.generate import parse_seeds

        stems = []
        for item in stem:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise GvjaxError(f"--stem must look like FEATURE=FILE, got {item!r}")
            stems.append((name, path))
        cfg = RenderConfig(
            fps=fps, seed=seed, num_keyframes=keyframes,
            keyframe_seeds=None if keyframe_seeds is None else tuple(parse_seeds(keyframe_seeds)),
            keyframes_npy=None if keyframes_npy is None else str(keyframes_npy.absolute()),
            truncation_psi=trunc, start=start, duration=duration, size=_parse_size(size), scale=scale, batch=batch, crf=crf,
            preview=preview, noise_mode=noise_mode, drive=drive, base_speed=base_speed, speed_gain=speed_gain,
            laps=laps if laps is not None or laps_per_minute is not None else 1.0, laps_per_minute=laps_per_minute,
            stems=tuple(stems), dtype=dtype, timeline=_timeline_path(timeline),
        )
    if out is None:
        raise GvjaxError("give the output video with -o OUT.mp4")
    if demo == (song is not None):
        raise GvjaxError("give either a SONG or --demo")
    ckpt = load_model(model)
    with tempfile.TemporaryDirectory(prefix="gvjax-demo-") as tmp:
        if demo:
            from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav

            song = write_wav(pathlib.Path(tmp) / "demo.wav", synth_demo_track(), DEMO_SR)
        result = render_video(cfg, ckpt, song, out, model_spec=model, progress=not quiet, demo=demo)
    typer.echo(f"wrote {result.video} ({result.frames} frames, {result.seconds:.1f}s) and {result.record.name}")


@app.command()
def convert(
    src: pathlib.Path = typer.Argument(..., help="NVIDIA network pickle (.pkl) or rosinality checkpoint (.pt)."),
    dst: pathlib.Path = typer.Argument(..., help="gvjax checkpoint directory to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing DST."),
):
    """Convert an NVIDIA .pkl or rosinality .pt file into a gvjax checkpoint (G_ema, and G, D when present)."""
    from gvjax.checkpoint import read_config
    from gvjax.convert import convert_checkpoint

    path = convert_checkpoint(src, dst, force=force)
    meta = read_config(path)
    res = meta["generator"]["img_resolution"]
    typer.echo(f"wrote {path} ({', '.join(meta['networks'])}) from {src.name} [{meta['provenance']['format']}, {res}x{res}]")


@app.command()
def inspect(
    path: str = typer.Argument(..., help="A gvjax checkpoint directory, a .pkl/.pt source file, or 'bundled'."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
):
    """Format, generator config, resolution and parameter counts of a checkpoint or source file."""
    import json

    from gvjax.bundled import BUNDLED_NAME, bundled_model
    from gvjax.convert import describe, load_any

    info = describe(bundled_model(), "bundled") if path == BUNDLED_NAME else describe(*load_any(path, all_networks=True))
    if as_json:
        typer.echo(json.dumps(info, sort_keys=True))
        return
    gen = info["generator"]
    fmt = info["format"] + (f" (converted from {info['source_format']})" if info["format"] == "gvjax" and info["source_format"] else "")
    typer.echo(f"path:        {path}")
    typer.echo(f"format:      {fmt}")
    typer.echo(f"class:       {info['class_name'] or '-'}")
    typer.echo(f"resolution:  {info['resolution']}x{info['resolution']}, {info['img_channels']} channels, {info['num_ws']} ws")
    typer.echo("generator:   " + " ".join(f"{k}={gen[k]}" for k in (
        "z_dim", "w_dim", "c_dim", "mapping_layers", "architecture", "channel_base", "channel_max", "conv_clamp", "num_fp16_res")))
    typer.echo("channels:    " + " ".join(f"{r}:{c}" for r, c in info["channels"].items()))
    typer.echo("parameters:  " + "  ".join(f"{name} {n:,}" for name, n in info["parameters"].items()))


def _training_start(spec: str):
    """A gvjax.train.run.StartModel from a model spec: G_ema, G and D as the model has them.

    A converted NVIDIA pickle's D goes through the converter's name table; a D gvjax wrote is
    used as is; other discriminators (rosinality) are reported and replaced by a fresh D.
    """
    from gvjax.bundled import BUNDLED_NAME, bundled_model
    from gvjax.convert import load_any
    from gvjax.convert.nvidia_d import load_discriminator
    from gvjax.discriminator import load_gvjax_discriminator
    from gvjax.train.run import StartModel

    ckpt = bundled_model() if spec == BUNDLED_NAME else load_any(spec, all_networks=True)[0]
    d_config = d = None
    if "D" in ckpt.networks:
        info = ckpt.extra.get("D") or {}
        load = load_gvjax_discriminator if info.get("format") == "gvjax" else load_discriminator
        try:
            d_config, d = load(ckpt.networks["D"], info)
        except GvjaxError as e:
            typer.echo(f"warning: {e}; training starts from a fresh discriminator", err=True)
    return StartModel(ckpt.config, ckpt.networks["G_ema"], ckpt.networks.get("G"), d_config, d, spec, ckpt.provenance)


@app.command()
def train(
    data: pathlib.Path = typer.Argument(..., help="Training images: a folder or zip of png/jpg (centre-cropped and resized)."),
    from_model: Optional[str] = typer.Option(None, "--from", help=MODEL_HELP + " Not needed with --resume."),
    out: pathlib.Path = typer.Option(..., "--out", help="Run directory (config, log.jsonl, sample grids, checkpoints, model/)."),
    kimg: Optional[float] = typer.Option(None, help="Length in thousands of real images (default 100; with --resume, the run's)."),
    batch: int = typer.Option(16, help="Images per step, over all devices."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    seed: int = typer.Option(0, help="Seed of the data order, latents, noise and augmentation."),
    gamma: Optional[float] = typer.Option(None, help="R1 weight (default 0.0002 * res^2 / batch)."),
    pl_weight: float = typer.Option(2.0, help="Path-length regularisation weight (0 disables)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate of G and D (default 0.0025)."),
    ema_kimg: Optional[float] = typer.Option(None, help="Half-life of G_ema in kimg (default batch * 10 / 32)."),
    augment: str = typer.Option("xflip,translate,color,cutout", help="Augmentations, comma-separated, or 'none'."),
    ada_target: Optional[float] = typer.Option(0.6, help="ADA target of the mean sign of D's logits on reals."),
    ada_fixed: bool = typer.Option(False, "--ada-fixed", help="Keep the augmentation probability at --augment-p."),
    augment_p: float = typer.Option(0.0, help="Initial augmentation probability."),
    ada_kimg: float = typer.Option(500.0, help="ADA speed: kimg for p to move by 1."),
    snap: float = typer.Option(4.0, help="Checkpoint interval, kimg."),
    sample_kimg: float = typer.Option(4.0, help="Sample-grid interval, kimg."),
    keep: int = typer.Option(3, help="Checkpoints to keep."),
):
    """Train (fine-tune) a StyleGAN2 on a folder of images, starting from --from."""
    from gvjax.train.config import TrainConfig
    from gvjax.train.run import train as run_training

    if resume:
        config, start = None, (lambda: _training_start(from_model)) if from_model else None
    else:
        if from_model is None:
            raise GvjaxError("give the starting model with --from (a checkpoint, .pkl/.pt file or 'bundled')")
        names = () if augment.strip().lower() == "none" else tuple(a.strip() for a in augment.split(",") if a.strip())
        config = TrainConfig(
            batch=batch, kimg=100.0 if kimg is None else kimg, seed=seed, g_lr=lr, d_lr=lr, r1_gamma=gamma,
            pl_weight=pl_weight, ema_kimg=ema_kimg, augment=names, augment_p=augment_p,
            ada_target=None if ada_fixed else ada_target, ada_kimg=ada_kimg, snapshot_kimg=snap,
            sample_kimg=sample_kimg, keep=keep,
        )
        start = _training_start(from_model)
    result = run_training(data, out, config, start, resume=resume, kimg=kimg if resume else None, log=typer.echo)
    typer.echo(
        f"trained {result.steps} steps ({result.kimg:g} kimg) in {result.seconds:.0f}s, "
        f"{result.images_per_second:.1f} images/s; wrote {result.model}"
    )


dataset_app = typer.Typer(no_args_is_help=True, help="Make training data sets.")
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("fruit")
def dataset_fruit(
    out: pathlib.Path = typer.Argument(..., help="Output folder (created; must not exist or be empty)."),
    count: int = typer.Option(1000, min=1, help="Number of images."),
    res: int = typer.Option(128, min=8, help="Side length in pixels."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same images."),
):
    """Procedural fruit on white: apples, oranges, lemons, pears, cherries, grapes, bananas, ..."""
    from gvjax.train.fruit import write_fruit_dataset

    path = write_fruit_dataset(out, count=count, resolution=res, seed=seed)
    typer.echo(f"wrote {count} fruit images ({res}x{res}) to {path}")


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
