"""The `gvjax` command line. A thin layer: parse, validate, call a library function, report.

This is the one core module that wires stages together (it loads models through
`gvjax.convert` and hands them to `gvjax.render` / `gvjax.train`). Errors the user can
cause are printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import sys
from typing import Optional

import typer

try:  # typer >= 0.20 vendors click as typer._click; older releases depend on click itself
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer
    import click

import gvjax
from gvjax.errors import GvjaxError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="gvjax: audio-reactive music videos from StyleGAN2 models, in JAX.",
)

MODEL_HELP = "Model: a gvjax checkpoint directory or model .npz (the bundled model's format), an NVIDIA .pkl (PyTorch or TensorFlow) or rosinality .pt file (converted in memory), or 'bundled'."


def _version_callback(value: bool):
    if value:
        typer.echo(f"gvjax {gvjax.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
    verbose: bool = typer.Option(False, "--verbose", help="Also print what the libraries underneath say (warnings, decoder and ffmpeg logs)."),
):
    """gvjax: audio-reactive music videos from StyleGAN2 models, in JAX."""
    from gvjax import chatter

    chatter.set_verbose(verbose)


def _finite(option: str, value: float | None, *, low: float | None = None, positive: bool = False) -> float | None:
    """`value` of a command-line number, checked: finite, and > 0 / >= low when asked."""
    import math

    if value is None:
        return None
    if not math.isfinite(value):
        raise GvjaxError(f"{option} must be a finite number, got {value}")
    if positive and not value > 0:
        raise GvjaxError(f"{option} must be > 0, got {value:g}")
    if low is not None and value < low:
        raise GvjaxError(f"{option} must be >= {low:g}, got {value:g}")
    return value


def _seed(option: str, value: int) -> int:
    from gvjax.config import check_seed

    return check_seed(value, option)


COORDINATOR_HELP = "Multi-process run: HOST:PORT of process 0's coordinator (with --num-processes, --process-id; default: the cluster JAX detects, else one process)."
NUM_PROCESSES_HELP = "Processes in the run (the same command on each, every process with its own --process-id)."
PROCESS_ID_HELP = "This process's index in the run, 0 .. N-1 (process 0 writes the output)."


def _join(coordinator: Optional[str], num_processes: Optional[int], process_id: Optional[int]) -> None:
    """Join a multi-process run before anything touches a device (see gvjax.distributed)."""
    from gvjax.distributed import ProcessSpec, initialize

    initialize(ProcessSpec(coordinator, num_processes, process_id))


def load_model(spec: str):
    """A Checkpoint from a model spec: 'bundled', a checkpoint directory, a model .npz, or a .pkl/.pt source file."""
    from gvjax.bundled import BUNDLED_NAME, bundled_model
    from gvjax.convert import load_any

    if spec == BUNDLED_NAME:
        return bundled_model()
    return load_any(spec)[0]


def _parse_dtype(name: str):
    """The jnp compute dtype of a `--dtype` choice, resolved for this backend (gvjax.precision)."""
    from gvjax.precision import jax_dtype, resolve_dtype

    return jax_dtype(resolve_dtype(name))


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
    seeds: str = typer.Option("0-3", help="Seeds, e.g. '0-3' or '1,5,9' (each in [0, 2**32))."),
    trunc: float = typer.Option(1.0, "--trunc", help="Truncation psi."),
    noise_mode: str = typer.Option("const", help="Noise: const, random or none."),
    outdir: pathlib.Path = typer.Option(..., help="Output directory (created if missing)."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    npy: bool = typer.Option(False, "--npy", help="Also write the float32 [H, W, C] output as .npy."),
    batch: int = typer.Option(8, min=1, help="Images per compiled step (at most the number of seeds)."),
    dtype: str = typer.Option("auto", help="Compute dtype: auto (bfloat16 on GPU/TPU, float32 on CPU), float32 (exact) or bfloat16."),
    force: bool = typer.Option(False, "--force", help="Replace images of the same seeds already in OUTDIR."),
    translate: Optional[str] = typer.Option(None, "--translate", help="StyleGAN3: move the camera by X,Y (input units, e.g. '0.2,0.3'), as stylegan3's gen_images.py."),
    rotate: Optional[float] = typer.Option(None, "--rotate", help="StyleGAN3: turn the camera by DEG degrees, as stylegan3's gen_images.py."),
):
    """Images from seeds, as NVIDIA's generate.py (and stylegan3's gen_images.py): OUTDIR/seed0000.png, ..."""
    from gvjax.generate import parse_seeds
    from gvjax.model import NOISE_MODES
    from gvjax.outputs import OutputError, check_file_output, check_not_input

    seed_list = parse_seeds(seeds)
    _finite("--trunc", trunc)
    shift = _vec2("--translate", translate)
    if rotate is not None:
        _finite("--rotate", rotate)
    if noise_mode not in NOISE_MODES:
        raise GvjaxError(f"unknown noise mode {noise_mode!r} (--noise-mode); expected one of {', '.join(NOISE_MODES)}")
    compute_dtype = _parse_dtype(dtype)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"--outdir {outdir} is a file, not a folder")
    check_not_input(outdir, (("model", model),))
    names = [f"seed{seed:04d}{ext}" for seed in seed_list for ext in ((".png", ".npy") if npy else (".png",))]
    if outdir.is_dir():
        for name in names:
            check_file_output(outdir / name, force=force, inputs=(("model", model),))
    elif not outdir.absolute().parent.is_dir():
        raise OutputError(f"output directory {outdir.absolute().parent} does not exist")
    ckpt = load_model(model)
    if ckpt.config.c_dim == 0 and class_idx is not None:
        typer.echo("warning: --class is ignored for an unconditional model", err=True)
        class_idx = None
    from gvjax.generate import write_images

    write_images(
        ckpt.config, ckpt.variables, seed_list, outdir, truncation_psi=trunc, noise_mode=noise_mode,
        class_idx=class_idx, batch=batch, dtype=compute_dtype, npy=npy, translate=shift, rotate=rotate,
    )
    typer.echo(f"wrote {len(seed_list)} image(s) to {outdir}")


def _vec2(flag: str, text: str | None) -> tuple[float, float] | None:
    """'X,Y' -> (x, y), two finite numbers; a one-line GvjaxError otherwise."""
    import math

    if text is None:
        return None
    parts = text.split(",")
    try:
        x, y = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        x = y = None
    if x is None or not (math.isfinite(x) and math.isfinite(y)):
        raise GvjaxError(f"{flag} must be two finite numbers X,Y (e.g. 0.2,0.3), got {text!r}")
    return x, y


@app.command()
def seeds(
    model: str = typer.Argument(..., help=MODEL_HELP),
    seed_list: str = typer.Option("0-63", "--seeds", help="Seeds to show, e.g. '0-63' or '1,5,9' (each in [0, 2**32))."),
    out: pathlib.Path = typer.Option(..., "-o", "--out", help="The contact sheet (.png)."),
    trunc: float = typer.Option(0.7, "--trunc", help="Truncation psi (0.7: as render's keyframes)."),
    cols: int = typer.Option(8, min=1, max=64, help="Tiles per row."),
    tile: Optional[int] = typer.Option(None, min=16, max=1024, help="Tile size in pixels (default: the model's, at least 128)."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class label for conditional models."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT."),
):
    """A contact sheet of seeds, each tile captioned with its seed: pick --keyframe-seeds from it."""
    from gvjax.generate import generate_images, parse_seeds
    from gvjax.images import contact_sheet, to_uint8, write_png
    from gvjax.outputs import OutputError, check_file_output

    chosen = parse_seeds(seed_list)
    if len(chosen) > 1024:
        raise GvjaxError(f"a contact sheet shows at most 1024 seeds, got {len(chosen)}")
    _finite("--trunc", trunc)
    if out.suffix.lower() != ".png":
        raise OutputError(f"-o {out.name}: the contact sheet must end in .png")
    check_file_output(out, force=force, inputs=(("model", model),))
    ckpt = load_model(model)
    size = tile or max(ckpt.config.img_resolution, 128)
    images = generate_images(ckpt.config, ckpt.variables, chosen, truncation_psi=trunc, class_idx=class_idx)
    sheet = contact_sheet([(f"seed {s}", to_uint8(img)) for s, img in images], cols=min(cols, len(chosen)), tile=size)
    write_png(out, sheet)
    typer.echo(f"wrote {out} ({len(chosen)} seeds, {sheet.shape[1]}x{sheet.shape[0]}); render with --keyframe-seeds A,B,C,...")


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


#: what `render --demo` plays unless told otherwise: travel that follows the loudness, then the
#: warps (slit-scan on the onsets, strips on the drums), upscaled to at least this many pixels
DEMO_TIMELINE = "original"
DEMO_SIDE = 256

#: render options that only steer this run (not what is rendered): allowed together with --from
REPLAY_OPTIONS = {"from_record", "out", "force", "quiet", "allow_changed", "resume", "encoders"}


def _given_options(ctx: click.Context) -> list[str]:
    """The command-line spellings of the options the user gave explicitly (not defaults)."""
    ParameterSource = click.core.ParameterSource
    given = []
    for param in ctx.command.params:
        if param.name not in REPLAY_OPTIONS and ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE:
            given.append(param.opts[0] if param.param_type_name == "option" else param.name.upper())
    return given


def _replay(record_file: pathlib.Path, allow_changed: bool):
    """(cfg, model spec, checkpoint, song or None for the demo, timeline source, replay info) from OUT.json.

    The audio, the model, the timeline and any stem or keyframes file must be what the record
    saw (sha256); a change is refused by name, unless `allow_changed`, and then recorded.
    """
    from gvjax.render.config import RenderConfig
    from gvjax.outputs import sha256_file
    from gvjax.render.pipeline import read_record, variables_digest
    from gvjax.render.timeline import read_timeline_source

    record = read_record(record_file)
    try:
        cfg = RenderConfig.from_dict(record["config"])
    except GvjaxError as e:
        raise GvjaxError(f"{record_file}: {e}") from None
    spec = record["model"]["spec"] or "bundled"
    audio = record["audio"]
    changed = []
    song = None if audio["demo"] else pathlib.Path(audio["path"])
    if song is not None and not song.is_file():
        raise GvjaxError(f"{record_file}: the song {song} is gone (the record needs it to render again)")
    if song is not None and sha256_file(song) != audio["sha256"]:
        changed.append(f"the song ({song.name})")
    for what, path, digest in (record.get("files") or []):
        if not pathlib.Path(path).is_file():
            raise GvjaxError(f"{record_file}: the {what} {path} is gone")
        if sha256_file(path) != digest:
            changed.append(f"the {what} ({pathlib.Path(path).name})")
    timeline = None
    stored = record.get("timeline")
    if stored is not None:
        timeline = (stored["name"], stored["toml"])  # replay what the record saw, even if the file is gone
        try:
            current = read_timeline_source(cfg.timeline or stored["name"])
        except GvjaxError:
            current = None
        if current is not None and current[1] != stored["toml"]:
            changed.append(f"the timeline ({pathlib.Path(stored['name']).name})")
            if allow_changed:
                timeline = current
    ckpt = load_model(spec)
    if variables_digest(ckpt.variables) != record["model"]["sha256"]:
        changed.append(f"the model ({spec})")
    if changed and not allow_changed:
        raise GvjaxError(
            f"{record_file}: {', '.join(changed)} changed since the render; the same video cannot be made again "
            "(--allow-changed renders anyway and records it)"
        )
    replay = {"record": str(record_file.absolute()), "changed": changed}
    return cfg, spec, ckpt, song, timeline, replay


def _render(cfg, ckpt, song, out, *, model_spec, progress, force, inputs, timeline_source=None, replay=None, resume=False, encoders=2):
    """render_video with the demo track synthesized in a temporary folder when `song` is None."""
    import tempfile

    from gvjax.render.pipeline import render_video

    demo = song is None
    # a folder only for the demo track: a render killed outright (SIGKILL) cannot remove it
    with tempfile.TemporaryDirectory(prefix="gvjax-demo-") if demo else contextlib.nullcontext() as tmp:
        if demo:
            from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav

            song = write_wav(pathlib.Path(tmp) / "demo.wav", synth_demo_track(), DEMO_SR)
        return render_video(
            cfg, ckpt, song, out, model_spec=model_spec, progress=progress, demo=demo, force=force, resume=resume,
            encoders=encoders, inputs=tuple(inputs), timeline_source=timeline_source, replay=replay,
        )


def render_song(
    song: str | pathlib.Path | None,
    out: str | pathlib.Path,
    *,
    model: str = "bundled",
    timeline: str | None = None,
    demo: bool = False,
    force: bool = False,
    progress: bool = True,
    resume: bool = False,
    encoders: int = 2,
    **options,
):
    """Render `song` to the video `out` (and `out`.json): the one-call API behind `gvjax render`.

    Args:
      song: an audio (or video) file; None with `demo=True` for the built-in demo track.
      out: the video (.mp4, .m4v, .mov, .mkv); replaced only with `force`.
      resume: continue a render of the same settings that was killed (its segments wait in
        `OUT.mp4.gvjax-partial/`); encoders: ffmpeg processes encoding segments at once.
      model: a gvjax checkpoint directory, an NVIDIA / rosinality file, or 'bundled'.
      timeline: a timeline TOML path or a preset name ('original', 'all-warps', 'stylegan3'); the demo
        plays 'original' unless told otherwise.
      options: any `gvjax.render.config.RenderConfig` field (fps, seed, keyframe_seeds,
        truncation_psi, duration, size=(w, h), scale, batch, class_idx, ...). `scale` left out
        (or None) means 1, or for the demo a 256-pixel side.
    Returns: a `gvjax.render.pipeline.RenderResult` (video, record, frames, seconds, ...).
    Raises: GvjaxError (one line) for anything wrong with the inputs, before any compute.

        import gvjax
        result = gvjax.render_song("song.mp3", "video.mp4", timeline="original", fps=24, seed=3)
    """
    from gvjax.outputs import check_file_output, check_record_output, check_video_output
    from gvjax.precision import resolve_dtype
    from gvjax.render.config import RenderConfig
    from gvjax.render.pipeline import RECORD_KEY, record_path
    from gvjax.render.timeline import parse_timeline_text, read_timeline_source

    out = check_video_output(out)
    song = None if song is None else pathlib.Path(song)
    if demo == (song is not None):
        raise GvjaxError("give either a SONG or --demo")
    fields = {f.name for f in dataclasses.fields(RenderConfig)} - {"timeline"}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise GvjaxError(f"unknown render option(s): {', '.join(unknown)}")
    scale = options.pop("scale", None)
    options["dtype"] = resolve_dtype(options.get("dtype", "auto"))  # what the record stores: this backend's choice
    if options.get("laps") is None and options.get("laps_per_minute") is None:
        options["laps"] = 1.0
    cfg = RenderConfig(**options, scale=1 if scale is None else scale, timeline=_timeline_path(timeline or (DEMO_TIMELINE if demo else None)))
    inputs = []
    timeline_source = None
    if cfg.timeline:
        timeline_source = read_timeline_source(cfg.timeline)
        parse_timeline_text(*timeline_source)  # a bad timeline fails before the model loads
        inputs.append(("timeline", cfg.timeline if pathlib.Path(cfg.timeline).is_file() else None))
    inputs.append(("model", model if model != "bundled" and pathlib.Path(model).exists() else None))
    check_file_output(out, force=force, inputs=[*inputs, ("song", song), *(("stem", p) for _, p in cfg.stems)])
    check_record_output(record_path(out), key=RECORD_KEY, force=force, inputs=[*inputs, ("song", song)])
    if song is not None and not song.is_file():
        raise GvjaxError(f"audio file not found: {song}" if not song.exists() else f"{song} is not a file")
    ckpt = load_model(model)
    if model != "bundled" and pathlib.Path(model).exists():
        model = str(pathlib.Path(model).absolute())  # the record replays from any folder
    from gvjax.render.step import fill_scale, resolve_fill

    cfg = dataclasses.replace(cfg, fill=resolve_fill(cfg.fill, ckpt.config, cfg.size))  # the record holds the choice
    if demo and cfg.size is None and scale is None:
        cfg = dataclasses.replace(cfg, scale=max(1, DEMO_SIDE // ckpt.config.img_resolution))  # a size worth watching
    elif cfg.size is not None and scale is None:
        cfg = dataclasses.replace(cfg, scale=fill_scale(cfg.fill, ckpt.config.img_resolution, cfg.size))
    return _render(cfg, ckpt, song, out, model_spec=model, progress=progress, force=force, inputs=inputs,
                   timeline_source=timeline_source, resume=resume, encoders=encoders)


@app.command()
def render(
    ctx: typer.Context,
    song: Optional[pathlib.Path] = typer.Argument(None, help="The song: any audio file or video with sound (wav, flac, mp3, ogg, opus, m4a/aac, wma; the audio of mp4, mov, mkv, webm). Omit with --demo or --from."),
    out: Optional[pathlib.Path] = typer.Option(None, "-o", "--out", help="Output video (.mp4, .m4v, .mov or .mkv); OUT.json is written beside it."),
    model: str = typer.Option("bundled", help=MODEL_HELP),
    demo: bool = typer.Option(False, "--demo", help="Render the built-in demo track (12 s): travel, then warps (the 'original' timeline), at 256x256 or more."),
    from_record: Optional[pathlib.Path] = typer.Option(None, "--from", help="Render again from an OUT.json record (needs -o; other options are refused)."),
    allow_changed: bool = typer.Option(False, "--allow-changed", help="With --from: render even if the song, model or timeline changed (recorded)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT and its OUT.json record."),
    fps: float = typer.Option(30.0, help="Frames per second."),
    seed: int = typer.Option(0, help="Seed of the keyframes (and of random noise), in [0, 2**32)."),
    keyframes: int = typer.Option(6, help="Number of keyframes on the loop."),
    keyframe_seeds: Optional[str] = typer.Option(None, help="Explicit keyframe seeds, e.g. '1,5,9' or '0-5'."),
    keyframes_npy: Optional[pathlib.Path] = typer.Option(None, help="A .npy of ws [N, num_ws, w_dim] as keyframes."),
    trunc: float = typer.Option(0.7, "--trunc", help="Truncation psi of the keyframes."),
    start: float = typer.Option(0.0, help="Start of the rendered range in the song, seconds."),
    duration: Optional[float] = typer.Option(None, help="Length of the rendered range, seconds (default: to the end)."),
    size: Optional[str] = typer.Option(None, help="Output WxH; a frame of another shape than the model's is filled as --fill says."),
    fill: str = typer.Option("auto", help="How --size of another shape is filled: widen (the model itself draws the wider/taller frame), crop (scaled to cover, centre-cropped), pad (centred, black around), auto (widen where the model can, else pad). Without --scale, widen scales the model to about the frame's shorter side, crop to its longer side."),
    scale: int = typer.Option(1, help="Upscale the model's output by this whole factor (Lanczos-3), e.g. 4 for a 64x64 model. Left out: 1, for the demo a 256-pixel side, with --size and --fill widen/crop what fits the frame."),
    batch: int = typer.Option(8, help="Frames per compiled step (at most the frames rendered)."),
    crf: int = typer.Option(18, help="H.264 quality (0..51, lower is better)."),
    preview: bool = typer.Option(False, "--preview", help="Fast preview: stop synthesis early and upscale."),
    noise_mode: str = typer.Option("const", help="Noise: const, random or none."),
    drive: str = typer.Option("rms", help="Audio feature that drives the speed: rms, onset, percussive, harmonic, low, mid, high."),
    base_speed: float = typer.Option(0.3, help="Relative speed of travel in silence."),
    speed_gain: float = typer.Option(1.0, help="Relative extra speed at full drive."),
    laps: Optional[float] = typer.Option(None, help="Loops over the keyframes during the video (default 1; whole laps loop seamlessly)."),
    laps_per_minute: Optional[float] = typer.Option(None, help="Instead of --laps: a fixed average speed."),
    stem: list[str] = typer.Option([], help="FEATURE=FILE: compute FEATURE from a separate audio file (repeatable)."),
    dtype: str = typer.Option("auto", help="Compute dtype: auto (bfloat16 on GPU/TPU, float32 on CPU), float32 (exact) or bfloat16."),
    timeline: Optional[str] = typer.Option(None, help="Timeline TOML of sections and feature warps (or a preset: original, all-warps, stylegan3)."),
    class_idx: Optional[int] = typer.Option(None, "--class", help="Class of a conditional model (a timeline section's `class` overrides it)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a render that was killed, from its last finished segment (OUT.mp4.gvjax-partial/)."),
    encoders: int = typer.Option(2, help="ffmpeg processes encoding segments at once."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", help=COORDINATOR_HELP),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", help=NUM_PROCESSES_HELP),
    process_id: Optional[int] = typer.Option(None, "--process-id", help=PROCESS_ID_HELP),
):
    """Render SONG into a video whose motion follows the music."""
    from gvjax.outputs import check_file_output, check_record_output, check_video_output
    from gvjax.render.pipeline import RECORD_KEY, record_path

    _join(coordinator, num_processes, process_id)
    if out is None:
        raise GvjaxError("give the output video with -o OUT.mp4")
    check_video_output(out)
    if from_record is not None:
        given = _given_options(ctx)
        if given:
            raise GvjaxError(
                f"{', '.join(given)} cannot be combined with --from: the record fixes what is rendered "
                "(render without --from to change it)"
            )
    if allow_changed and from_record is None:
        raise GvjaxError("--allow-changed only applies with --from")
    if from_record is None:
        from gvjax.generate import parse_seeds

        for option, value in (("--fps", fps), ("--trunc", trunc), ("--start", start), ("--duration", duration),
                              ("--base-speed", base_speed), ("--speed-gain", speed_gain), ("--laps", laps), ("--laps-per-minute", laps_per_minute)):
            _finite(option, value)
        stems = []
        for item in stem:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise GvjaxError(f"--stem must look like FEATURE=FILE, got {item!r}")
            stems.append((name, path))
        scale_given = ctx.get_parameter_source("scale") == click.core.ParameterSource.COMMANDLINE
        result = render_song(
            song, out, model=model, timeline=timeline, demo=demo, force=force, progress=not quiet, resume=resume, encoders=encoders,
            fps=fps, seed=_seed("--seed", seed), num_keyframes=keyframes,
            keyframe_seeds=None if keyframe_seeds is None else tuple(parse_seeds(keyframe_seeds)),
            keyframes_npy=None if keyframes_npy is None else str(keyframes_npy.absolute()),
            truncation_psi=trunc, start=start, duration=duration, size=_parse_size(size), fill=fill, scale=scale if scale_given else None,
            batch=batch, crf=crf, preview=preview, noise_mode=noise_mode, drive=drive, base_speed=base_speed, speed_gain=speed_gain,
            laps=laps, laps_per_minute=laps_per_minute, stems=tuple(stems), dtype=dtype, class_idx=class_idx,
        )
    else:
        inputs = [("render record", from_record)]
        check_file_output(out, force=force, inputs=inputs)
        check_record_output(record_path(out), key=RECORD_KEY, force=force, inputs=inputs)
        cfg, model, ckpt, song, timeline_source, replay = _replay(from_record, allow_changed)
        if cfg.timeline and pathlib.Path(cfg.timeline).is_file():
            inputs.append(("timeline", cfg.timeline))
        result = _render(cfg, ckpt, song, out, model_spec=model, progress=not quiet, force=force, inputs=inputs,
                         timeline_source=timeline_source, replay=replay, resume=resume, encoders=encoders)
    if result.part is not None and process_id:
        typer.echo(f"process {process_id}: rendered frames {result.part[0]}..{result.part[1] - 1} of {result.total_frames}; process 0 wrote the video")
    else:
        typer.echo(f"wrote {result.video} ({result.frames} frames, {result.seconds:.1f}s) and {result.record.name}")


@app.command()
def convert(
    src: pathlib.Path = typer.Argument(..., help="NVIDIA network pickle (.pkl, PyTorch or TensorFlow) or rosinality checkpoint (.pt)."),
    dst: pathlib.Path = typer.Argument(..., help="gvjax checkpoint directory to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing DST."),
):
    """Convert an NVIDIA .pkl (PyTorch or TensorFlow) or rosinality .pt file into a gvjax checkpoint (G_ema, and G, D when present)."""
    from gvjax.checkpoint import read_config
    from gvjax.convert import convert_checkpoint
    from gvjax.outputs import check_dir_output

    check_dir_output(dst, force=force, inputs=(("source file", src),))
    path = convert_checkpoint(src, dst, force=force)
    meta = read_config(path)
    res = meta["generator"]["img_resolution"]
    typer.echo(f"wrote {path} ({', '.join(meta['networks'])}) from {src.name} [{meta['provenance']['format']}, {res}x{res}]")


@app.command()
def inspect(
    path: str = typer.Argument(..., help="A gvjax checkpoint directory or model .npz, a .pkl/.pt source file, or 'bundled'."),
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
        "z_dim", "w_dim", "c_dim", "mapping_layers", "architecture", "conv_kernel", "use_radial_filters", "channel_base",
        "channel_max", "conv_clamp", "num_fp16_res") if k in gen))
    typer.echo("channels:    " + " ".join(f"{r}:{c}" for r, c in info["channels"].items()))
    typer.echo("parameters:  " + "  ".join(f"{name} {n:,}" for name, n in info["parameters"].items()))
    if info["provenance"].get("static_kwargs"):
        typer.echo("tf kwargs:   " + json.dumps(info["provenance"]["static_kwargs"].get("Gs"), sort_keys=True))


def _training_start(spec: str):
    """A gvjax.train.run.StartModel from a model spec (StyleGAN2 or StyleGAN3): the training stage
    picks the D (`start_model`); the convert stage's loader reads a converted NVIDIA pickle's D."""
    from gvjax.bundled import BUNDLED_NAME, bundled_model
    from gvjax.convert import load_any
    from gvjax.convert.nvidia_d import load_discriminator
    from gvjax.train.run import start_model

    ckpt = bundled_model() if spec == BUNDLED_NAME else load_any(spec, all_networks=True)[0]
    return start_model(ckpt, spec, load_d=load_discriminator, warn=lambda message: typer.echo(f"warning: {message}", err=True))


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
    pl_weight: Optional[float] = typer.Option(None, help="Path-length regularisation weight (0 disables; default 2 for StyleGAN2, 0 for StyleGAN3, which takes no other)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate of G and D (default 0.0025; StyleGAN3's D 0.002)."),
    g_lr: Optional[float] = typer.Option(None, "--g-lr", help="G's learning rate alone (overrides --lr for G)."),
    d_lr: Optional[float] = typer.Option(None, "--d-lr", help="D's learning rate alone (overrides --lr for D): lower it when D wins too easily."),
    ema_kimg: Optional[float] = typer.Option(None, help="Half-life of G_ema in kimg (default batch * 10 / 32)."),
    ema_rampup: float = typer.Option(0.05, help="Ramp-up of G_ema: its half-life is at most this times the images seen so far (NVIDIA's 0.05; 0: the whole --ema-kimg from the first step, for a model that is already trained)."),
    blur_sigma: Optional[float] = typer.Option(None, "--blur-sigma", help="Blur D's images at the start by a Gaussian of this sigma in pixels, fading out over --blur-kimg (0: no blur; default 10 for StyleGAN3-R, else 0)."),
    blur_kimg: Optional[float] = typer.Option(None, "--blur-kimg", help="kimg over which the blur fades to none (default batch * 200 / 32)."),
    augment: str = typer.Option("xflip,translate,color,cutout", help="Augmentations, comma-separated, or 'none'."),
    ada_target: Optional[float] = typer.Option(0.6, help="ADA target of the mean sign of D's logits on reals."),
    ada_fixed: bool = typer.Option(False, "--ada-fixed", help="Keep the augmentation probability at --augment-p."),
    augment_p: float = typer.Option(0.0, help="Initial augmentation probability."),
    ada_kimg: float = typer.Option(500.0, help="ADA speed: kimg for p to move by 1."),
    snap: float = typer.Option(4.0, help="Checkpoint interval, kimg."),
    sample_kimg: float = typer.Option(4.0, help="Sample-grid interval, kimg."),
    keep: int = typer.Option(3, help="Checkpoints to keep."),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", help=COORDINATOR_HELP),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", help=NUM_PROCESSES_HELP),
    process_id: Optional[int] = typer.Option(None, "--process-id", help=PROCESS_ID_HELP),
):
    """Train (fine-tune) a StyleGAN2 or StyleGAN3 on a folder of images, starting from --from."""
    from gvjax.outputs import OutputError, check_not_input
    from gvjax.train.config import TrainConfig
    from gvjax.train.run import train as run_training

    _join(coordinator, num_processes, process_id)
    _finite("--kimg", kimg, positive=True)
    _finite("--ema-rampup", ema_rampup, low=0)
    for option, value in (("--lr", lr), ("--g-lr", g_lr), ("--d-lr", d_lr)):
        _finite(option, value, positive=True)
    for option, value in (("--blur-sigma", blur_sigma), ("--blur-kimg", blur_kimg)):
        _finite(option, value, low=0)
    for option, value in (("--gamma", gamma), ("--ema-kimg", ema_kimg), ("--pl-weight", pl_weight), ("--ada-target", ada_target),
                          ("--augment-p", augment_p), ("--ada-kimg", ada_kimg), ("--snap", snap), ("--sample-kimg", sample_kimg)):
        _finite(option, value)
    check_not_input(out, (("training data", data), ("starting model", from_model)))
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a run directory")
    if not out.absolute().parent.is_dir():
        raise OutputError(f"output directory {out.absolute().parent} does not exist")
    if not data.exists():
        raise GvjaxError(f"no such dataset: {data}")
    if resume:
        config, start = None, (lambda: _training_start(from_model)) if from_model else None
    else:
        if from_model is None:
            raise GvjaxError("give the starting model with --from (a checkpoint, .pkl/.pt file or 'bundled')")
        names = () if augment.strip().lower() == "none" else tuple(a.strip() for a in augment.split(",") if a.strip())
        config = TrainConfig(
            batch=batch, kimg=100.0 if kimg is None else kimg, seed=seed, g_lr=lr if g_lr is None else g_lr, d_lr=lr if d_lr is None else d_lr, r1_gamma=gamma,
            pl_weight=pl_weight, ema_kimg=ema_kimg, ema_rampup=ema_rampup or None, augment=names, augment_p=augment_p,
            ada_target=None if ada_fixed else ada_target, ada_kimg=ada_kimg, snapshot_kimg=snap,
            sample_kimg=sample_kimg, keep=keep, blur_init_sigma=blur_sigma, blur_fade_kimg=blur_kimg,
        )
        start = _training_start(from_model)
    result = run_training(data, out, config, start, resume=resume, kimg=kimg if resume else None, log=typer.echo)
    import math

    wrote = f"process 0 wrote {result.model}" if process_id else f"wrote {result.model}"
    who = f"process {process_id}: " if process_id else ""
    if result.new_steps == 0:  # a resume at the run's --kimg
        typer.echo(f"{who}the run is at step {result.steps} ({result.kimg:g} kimg), its --kimg: no steps to train; {wrote}")
    else:
        speed = f", {result.images_per_second:.1f} images/s" if math.isfinite(result.images_per_second) else ""  # after the compiling step
        typer.echo(f"{who}trained {result.steps} step{'' if result.steps == 1 else 's'} ({result.kimg:g} kimg) in {result.seconds:.0f}s{speed}; {wrote}")


dataset_app = typer.Typer(no_args_is_help=True, help="Make training data sets.")
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("fruit")
def dataset_fruit(
    out: pathlib.Path = typer.Argument(..., help="Output folder (created; must not exist or be empty)."),
    count: int = typer.Option(1000, min=1, help="Number of images."),
    res: int = typer.Option(128, min=8, help="Side length in pixels."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same images."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes drawing the pictures (default: the CPU count; the files are the same for any number)."),
):
    """Procedural fruit on white: apples, oranges, lemons, pears, cherries, grapes, bananas, ...; OUT/labels.json names each picture's species."""
    import os

    from gvjax.train.fruit import write_fruit_dataset

    workers = (os.cpu_count() or 1) if workers is None else workers
    path = write_fruit_dataset(out, count=count, resolution=res, seed=_seed("--seed", seed), labels=True, workers=workers)
    typer.echo(f"wrote {count} fruit images ({res}x{res}) to {path}")


def _usage_error(e: click.exceptions.UsageError) -> str:
    """One or two plain lines for a usage error (no boxes): the problem, and where help is."""
    message = e.format_message().strip().replace("\n", " ")
    hint = f"\n(see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
    return f"error: {message}{hint}"


def _run(argv: list[str] | None) -> int:
    """Run the app; every failure the user can cause becomes one line on stderr and an exit code."""
    from gvjax import chatter
    from gvjax.outputs import os_error_message

    try:
        with chatter.captured():
            code = app(args=argv, prog_name="gvjax", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help())
        return 2
    except click.exceptions.UsageError as e:
        typer.echo(_usage_error(e), err=True)
        return 2
    except click.exceptions.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except GvjaxError as e:
        typer.echo(f"error: {e}", err=True)
        return e.exit_code
    except OSError as e:  # a full disk, a read-only folder, ... met outside a checked path
        typer.echo(f"error: {os_error_message(e)}", err=True)
        return 2
    except MemoryError:
        typer.echo("error: out of memory (try a smaller --size, --batch or --res)", err=True)
        return 2
    except Exception as e:
        if "RESOURCE_EXHAUSTED" in str(e):  # XLA's out-of-memory
            typer.echo("error: the device ran out of memory (try a smaller --batch or --size)", err=True)
            return 2
        if not isinstance(e.__cause__ or e.__context__, KeyboardInterrupt):
            raise
        code = 130  # Ctrl-C landed inside C code that called back into Python ("returned a result with an exception set")
    if code == 130:  # typer turns Ctrl-C (and SIGTERM, below) into exit code 130
        typer.echo("interrupted", err=True)
    return code or 0


def handle_interrupts() -> None:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C, and no interrupt is lost in a callback.

    An interrupt that lands in a callback Python cannot raise from (a gc or weakref callback of
    jax, a `__del__`) is reported to `sys.unraisablehook` and would be dropped ("Exception
    ignored in ..."). The hook notes it (`errors.note_interrupt`), and the next batch of a
    render, image run, training run or data set stops there (`errors.check_interrupt`).
    Raising it again from the hook would not do: the hook runs on the main thread, so the
    exception would land in the hook itself and be dropped again.
    """
    import signal

    from gvjax.errors import note_interrupt

    def terminate(signum, frame):
        raise KeyboardInterrupt

    def unraisable(info):
        if isinstance(info.exc_value, KeyboardInterrupt):
            note_interrupt()
        else:
            from gvjax import chatter

            chatter.note("python", f"ignored {type(info.exc_value).__name__}: {info.exc_value} in {info.object!r}")

    signal.signal(signal.SIGTERM, terminate)
    sys.unraisablehook = unraisable


def main(argv: list[str] | None = None):
    """Console entry point: SIGTERM behaves like Ctrl-C; errors are one line (see `_run`)."""
    handle_interrupts()
    sys.exit(_run(argv))


if __name__ == "__main__":
    main()
