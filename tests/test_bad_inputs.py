"""Bad and edge inputs over every command, through the real CLI (`gvjax.cli`).

Each case runs in a fresh copy of a small world of files (a song, checkpoints, a pickle, a
photo, records, a data set...) and asserts all of: the exit code; 1-3 lines on stderr with no
traceback, containing the expected words; nothing new on disk; every file that was there
byte-identical (sha256 before and after).

The table runs in-process through `gvjax.cli._run` (the entry point's whole error path, fast:
JAX is imported once); the cases that need a real process, file system or signal (SIGTERM,
a read-only mount, a full disk, decoder chatter on fd 2) run `python -m gvjax` in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import STYLEGAN2, run_cli

from gvjax.demo_audio import write_wav

SR = 22050


def tone(seconds, amplitude=0.5, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    beat = (np.sin(2 * np.pi * 2 * t) > 0.6).astype(np.float32)  # onsets twice a second
    noise = np.random.RandomState(seed).standard_normal(t.size) * 0.2
    return (amplitude * (np.sin(2 * np.pi * 220 * t) * (0.4 + 0.6 * beat) + noise) / 1.2).astype(np.float32)


def float_wav(path, samples):
    """A 32-bit float mono wav (WAVE_FORMAT_IEEE_FLOAT) holding `samples` as they are (NaN included)."""
    data = np.asarray(samples, "<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + SR.to_bytes(4, "little") + (SR * 4).to_bytes(4, "little")
    fmt += (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    pathlib.Path(path).write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


def png_bytes():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (16, 16, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def record_for(world: pathlib.Path, **config) -> dict:
    """A gvjax render record of the world's song and checkpoint (digests made up: a refusal comes first)."""
    from gvjax.render.config import RenderConfig

    return {
        "gvjax_render": 1,
        "config": {**RenderConfig().to_dict(), **config},
        "model": {"spec": "ckpt", "sha256": "0" * 64},
        "audio": {"path": str(world / "song.wav"), "demo": False, "sha256": "0" * 64},
        "output": str(world / "rec.mp4"),
    }


@pytest.fixture(scope="module")
def world_src(tmp_path_factory, nvidia_checkpoint):
    """The files every case starts from (copied per case)."""
    w = tmp_path_factory.mktemp("world")
    write_wav(w / "song.wav", tone(2.0), SR)
    float_wav(w / "nan.wav", np.where(np.arange(SR) % 100 == 0, np.nan, 0.1).astype(np.float32))
    (w / "notes.txt").write_text("my notes, not audio\n")
    (w / "photo.png").write_bytes(png_bytes())
    (w / "fake.mp3").write_bytes(png_bytes())
    (w / "truncated.pkl").write_bytes((STYLEGAN2 / "ada_micro_skip.pkl").read_bytes()[:5000])
    (w / "weights.npz").write_bytes(png_bytes())  # not a zip
    np.savez(w / "arrays.npz", weights=np.zeros(3, np.float32))  # an npz, but not a gvjax model's
    np.savez(w / "pickled.npz", __meta__=np.array([{"config": {}}], dtype=object))  # object arrays are never unpickled
    shutil.copy(STYLEGAN2 / "ada_micro_skip.pkl", w / "ada.pkl")
    shutil.copy(STYLEGAN2.parent / "stylegan3" / "sg3t_micro.pkl", w / "sg3.pkl")
    shutil.copytree(nvidia_checkpoint("ada_micro_skip"), w / "ckpt")
    shutil.copytree(nvidia_checkpoint("ada_micro_cond"), w / "cond")
    (w / "photos").mkdir()
    (w / "photos" / "holiday.png").write_bytes(png_bytes())
    (w / "data").mkdir()
    for i in range(4):
        (w / "data" / f"img{i}.png").write_bytes(png_bytes())
    (w / "run").mkdir()
    (w / "run" / "config.json").write_text('{"train": {}}\n')
    (w / "other.json").write_text('{"my": "settings"}\n')
    (w / "existing.mp4").write_bytes(b"an old video")
    (w / "kept.json").write_text(json.dumps(record_for(w)))  # a record whose video is gone
    (w / "recdir.json").mkdir()
    (w / "sub.mp4").mkdir()
    (w / "rec.json").write_text(json.dumps(record_for(w)))
    (w / "rec_list.json").write_text(json.dumps({**record_for(w), "config": [1, 2]}))
    (w / "rec_fps.json").write_text(json.dumps(record_for(w, fps="fast")))
    (w / "rec_seed.json").write_text(json.dumps(record_for(w, seed=-1)))
    (w / "rec_audio.json").write_text(json.dumps({**record_for(w), "audio": "song.wav"}))
    (w / "broken.json").write_text('{"gvjax_render": 1, "config": ')
    (w / "out").mkdir()
    (w / "out" / "seed0000.png").write_bytes(png_bytes())
    return w


def snapshot(root: pathlib.Path) -> dict[str, str]:
    """relative path -> sha256 (files) or 'dir', for everything under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def edit_config(path: str, change):
    """Setup: hand-edit a copied checkpoint's config.json with `change(meta)`."""

    def setup(world):
        cfg = world / path / "config.json"
        meta = json.loads(cfg.read_text())
        meta = change(meta) if change(meta) is not None else meta
        cfg.write_text(json.dumps(meta))

    return setup


def set_generator(**values):
    def change(meta):
        meta["generator"].update(values)

    return change


def write_file(name: str, text: str):
    def setup(world):
        (world / name).write_text(text)

    return setup


TIMELINE_OK = "[[section]]\nstart = 0.0\nseeds = [1, 2, 3]\n"

# (id, argv, expected words in stderr, exit code, setup)
CASES = [
    # ---- render: the output policy
    ("render -o the song", ["render", "song.wav", "-o", "song.wav"], "must end in", 2, None),
    ("render -o a text file", ["render", "song.wav", "-o", "notes.txt"], "must end in", 2, None),
    ("render -o its own record", ["render", "song.wav", "-o", "rec.json"], "must end in", 2, None),
    ("render -o a video whose .json is foreign", ["render", "song.wav", "-o", "other.mp4"], "not a gvjax record", 2, None),
    ("render -o a foreign .json even with --force", ["render", "song.wav", "-o", "other.mp4", "--force"], "not a gvjax record", 2, None),
    ("render -o an existing video", ["render", "song.wav", "-o", "existing.mp4"], "already exists", 2, None),
    ("render -o beside an existing record", ["render", "song.wav", "-o", "kept.mp4"], "already exists", 2, None),
    ("render -o a directory", ["render", "song.wav", "-o", "sub.mp4"], "is a directory", 2, None),
    ("render record path is a directory", ["render", "song.wav", "-o", "recdir.mp4"], "directory", 2, None),
    ("render -o in a missing folder", ["render", "song.wav", "-o", "nodir/out.mp4"], "does not exist", 2, None),
    ("render -o a song that is also the stem", ["render", "song.wav", "-o", "v.mp4", "--stem", "low=v.mp4"], "is the stem", 2,
     write_file("v.mp4", "a stem that is a video")),
    ("render without -o", ["render", "song.wav"], "-o OUT.mp4", 2, None),
    # ---- render and train: a multi-process run that cannot be
    ("render --num-processes alone", ["render", "song.wav", "-o", "v.mp4", "--num-processes", "2"], "go together", 2, None),
    ("render --coordinator without a port", ["render", "song.wav", "-o", "v.mp4", "--coordinator", "localhost", "--num-processes", "2",
                                             "--process-id", "0"], "HOST:PORT", 2, None),
    ("render --process-id out of range", ["render", "song.wav", "-o", "v.mp4", "--coordinator", "127.0.0.1:1234", "--num-processes", "2",
                                          "--process-id", "2"], "--process-id must be from 0 to 1", 2, None),
    ("train --num-processes 0", ["train", "data", "--from", "ckpt", "--out", "r", "--coordinator", "127.0.0.1:1234", "--num-processes", "0",
                                 "--process-id", "0"], "--num-processes must be at least 1", 2, None),
    # ---- render: numbers
    ("render --seed -1", ["render", "song.wav", "-o", "v.mp4", "--seed", "-1"], "[0, 2**32)", 2, None),
    ("render --seed 2**32", ["render", "song.wav", "-o", "v.mp4", "--seed", str(2**32)], "[0, 2**32)", 2, None),
    ("render --trunc nan", ["render", "song.wav", "-o", "v.mp4", "--trunc", "nan"], "--trunc must be a finite number", 2, None),
    ("render --trunc inf", ["render", "song.wav", "-o", "v.mp4", "--trunc", "inf"], "--trunc must be a finite number", 2, None),
    ("render --fps 0", ["render", "song.wav", "-o", "v.mp4", "--fps", "0"], "--fps must be > 0", 2, None),
    ("render --fps nan", ["render", "song.wav", "-o", "v.mp4", "--fps", "nan"], "--fps must be a finite number", 2, None),
    ("render --fps abc", ["render", "song.wav", "-o", "v.mp4", "--fps", "abc"], "--fps", 2, None),
    ("render --batch 0", ["render", "song.wav", "-o", "v.mp4", "--batch", "0"], "--batch must be >= 1", 2, None),
    ("render --start -1", ["render", "song.wav", "-o", "v.mp4", "--start", "-1"], "--start must be >= 0", 2, None),
    ("render --start past the end", ["render", "song.wav", "-o", "v.mp4", "--start", "30"], "past the end", 2, None),
    ("render --duration 0", ["render", "song.wav", "-o", "v.mp4", "--duration", "0"], "--duration must be > 0", 2, None),
    ("render --duration inf", ["render", "song.wav", "-o", "v.mp4", "--duration", "inf"], "--duration must be a finite", 2, None),
    ("render --size 100x", ["render", "song.wav", "-o", "v.mp4", "--size", "100x"], "--size must look like", 2, None),
    ("render --size odd", ["render", "song.wav", "-o", "v.mp4", "--size", "33x33"], "even", 2, None),
    ("render --fill stretch", ["render", "song.wav", "-o", "v.mp4", "--size", "64x32", "--fill", "stretch"], "--fill must be one of", 2, None),
    ("render --fill crop with a --scale too small", ["render", "song.wav", "-o", "v.mp4", "--size", "256x128", "--fill", "crop", "--scale", "2"],
     "does not cover 256x128", 2, None),
    ("render --size giant", ["render", "song.wav", "-o", "v.mp4", "--size", "100000x100000"], "at most 8192", 2, None),
    ("render batch too large for memory", ["render", "song.wav", "-o", "v.mp4", "--size", "8192x8192", "--fps", "120", "--batch", "240"],
     "available", 2, None),
    ("render --scale 0", ["render", "song.wav", "-o", "v.mp4", "--scale", "0"], "--scale", 2, None),
    ("render --scale 17", ["render", "song.wav", "-o", "v.mp4", "--scale", "17"], "--scale", 2, None),
    ("render --crf 99", ["render", "song.wav", "-o", "v.mp4", "--crf", "99"], "--crf", 2, None),
    ("render --noise-mode loud", ["render", "song.wav", "-o", "v.mp4", "--noise-mode", "loud"], "--noise-mode", 2, None),
    ("render --drive nope", ["render", "song.wav", "-o", "v.mp4", "--drive", "nope"], "--drive", 2, None),
    ("render --laps 0", ["render", "song.wav", "-o", "v.mp4", "--laps", "0"], "--laps must be > 0", 2, None),
    ("render --laps-per-minute -1", ["render", "song.wav", "-o", "v.mp4", "--laps-per-minute", "-1"], "--laps-per-minute", 2, None),
    ("render --base-speed -1", ["render", "song.wav", "-o", "v.mp4", "--base-speed", "-1"], "--base-speed", 2, None),
    ("render --keyframes 0", ["render", "song.wav", "-o", "v.mp4", "--keyframes", "0"], "keyframe", 2, None),
    ("render --keyframe-seeds 5-1", ["render", "song.wav", "-o", "v.mp4", "--keyframe-seeds", "5-1"], "empty", 2, None),
    ("render --keyframe-seeds too big", ["render", "song.wav", "-o", "v.mp4", "--keyframe-seeds", "99999999999"], "[0, 2**32)", 2, None),
    ("render --stem without =", ["render", "song.wav", "-o", "v.mp4", "--stem", "low"], "FEATURE=FILE", 2, None),
    ("render --stem missing file", ["render", "song.wav", "-o", "v.mp4", "--stem", "low=gone.wav"], "gone.wav", 2, None),
    ("render --dtype float16", ["render", "song.wav", "-o", "v.mp4", "--dtype", "float16"], "--dtype", 2, None),
    ("render --keyframes-npy missing", ["render", "song.wav", "-o", "v.mp4", "--keyframes-npy", "kf.npy"], "kf.npy", 2, None),
    ("render --keyframes-npy not npy", ["render", "song.wav", "-o", "v.mp4", "--keyframes-npy", "notes.txt"], "notes.txt", 2, None),
    ("render --nosuch option", ["render", "song.wav", "-o", "v.mp4", "--nosuch"], "No such option", 2, None),
    # ---- render: timelines
    ("render --timeline missing", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "no such timeline", 2, None),
    ("render --timeline bad TOML", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "t.toml", 2,
     write_file("t.toml", "[[section]\nstart = ")),
    ("render --timeline unknown key", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "unknown key 'colour'", 2,
     write_file("t.toml", TIMELINE_OK + "colour = 'red'\n")),
    ("render --timeline seed -1", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "[0, 4294967296)", 2,
     write_file("t.toml", "[[section]]\nstart = 0.0\nseeds = [1, -1]\n")),
    ("render --timeline seed 2**32", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "seed must be", 2,
     write_file("t.toml", f"[[section]]\nstart = 0.0\nseed = {2**32}\n")),
    ("render --timeline keyframes a string", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "keyframes must be", 2,
     write_file("t.toml", "[[section]]\nstart = 0.0\nkeyframes = 'six'\n")),
    ("render --timeline warp resolution a string", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "resolution must be", 2,
     write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'rotate'\nresolution = 'x'\n")),
    ("render --timeline warp delay a string", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "delay must be", 2,
     write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'slitscan'\nresolution = 8\ndelay = 'x'\n")),
    ("render --timeline warp seed -1", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"], "seed must be", 2,
     write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'strips'\nresolution = 8\nseed = -1\n")),
    ("render --timeline is a directory", ["render", "song.wav", "-o", "v.mp4", "--timeline", "photos"], "directory", 2, None),
    ("render --timeline resolution not in model", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt", "--timeline", "t.toml"],
     "resolution", 2, write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'rotate'\nresolution = 64\n")),
    # ---- render: StyleGAN3 models (layers, not resolution blocks) and the camera
    ("render StyleGAN3 with a layer it lacks", ["render", "song.wav", "-o", "v.mp4", "--model", "sg3.pkl", "--timeline", "t.toml"],
     "no StyleGAN3 stage 'L99'", 2, write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'rotate'\nlayer = 'L99'\n")),
    ("render StyleGAN3 with a resolution warp", ["render", "song.wav", "-o", "v.mp4", "--model", "sg3.pkl", "--timeline", "t.toml"],
     "name a layer instead", 2, write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'rotate'\nresolution = 16\n")),
    ("render StyleGAN3 warp at ToRGB", ["render", "song.wav", "-o", "v.mp4", "--model", "sg3.pkl", "--timeline", "t.toml"],
     "last stage", 2, write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'rotate'\nlayer = 'L14'\n")),
    ("render --preview on StyleGAN3", ["render", "song.wav", "-o", "v.mp4", "--model", "sg3.pkl", "--preview"],
     "--preview needs a StyleGAN2", 2, None),
    ("render the camera on StyleGAN2", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt", "--timeline", "t.toml"],
     "moves StyleGAN3's Fourier input", 2, write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'camera'\n")),
    ("render a camera with a layer", ["render", "song.wav", "-o", "v.mp4", "--model", "sg3.pkl", "--timeline", "t.toml"],
     "unknown key 'layer'", 2, write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'camera'\nlayer = 'L2'\n")),
    ("render a warp with both layer and resolution", ["render", "song.wav", "-o", "v.mp4", "--timeline", "t.toml"],
     "one of them", 2, write_file("t.toml", TIMELINE_OK + "[[section.warp]]\ntype = 'rotate'\nlayer = 'b8'\nresolution = 8\n")),
    # ---- render: songs
    ("render a missing song", ["render", "gone.wav", "-o", "v.mp4"], "not found", 2, None),
    ("render a text file", ["render", "notes.txt", "-o", "v.mp4"], "notes.txt", 2, None),
    ("render a PNG named .mp3", ["render", "fake.mp3", "-o", "v.mp4"], "fake.mp3", 2, None),
    ("render a folder as the song", ["render", "photos", "-o", "v.mp4"], "not a file", 2, None),
    ("render float audio with NaN samples", ["render", "nan.wav", "-o", "v.mp4"], "nan.wav", 2, None),
    ("render neither song nor --demo", ["render", "-o", "v.mp4"], "SONG or --demo", 2, None),
    ("render song and --demo", ["render", "song.wav", "--demo", "-o", "v.mp4"], "SONG or --demo", 2, None),
    # ---- render: models
    ("render --model missing", ["render", "song.wav", "-o", "v.mp4", "--model", "gone"], "no such model", 2, None),
    ("render --model a text file", ["render", "song.wav", "-o", "v.mp4", "--model", "notes.txt"], "notes.txt", 2, None),
    ("render --model a folder of photos", ["render", "song.wav", "-o", "v.mp4", "--model", "photos"], "not a gvjax checkpoint", 2, None),
    ("render --model negative channels", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt"], "channel_max must be >= 1", 2,
     edit_config("ckpt", set_generator(channel_max=-32))),
    ("render --model a string for a number", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt"], "w_dim must be a whole number", 2,
     edit_config("ckpt", set_generator(w_dim="32"))),
    ("render --model config without generator", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt"], "'generator'", 2,
     edit_config("ckpt", lambda m: {k: v for k, v in m.items() if k != "generator"})),
    ("render --model NaN conv_clamp", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt"], "conv_clamp", 2,
     lambda w: (w / "ckpt" / "config.json").write_text((w / "ckpt" / "config.json").read_text().replace('"conv_clamp": null', '"conv_clamp": NaN'))),
    ("render --model config.json not JSON", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt"], "not valid JSON", 2,
     write_file("ckpt/config.json", "{oops")),
    ("render --model unknown config key", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt"], "unknown generator config keys", 2,
     edit_config("ckpt", set_generator(colour="red"))),
    ("render a conditional model without --class", ["render", "song.wav", "-o", "v.mp4", "--model", "cond"], "pass --class N", 2, None),
    ("render --class out of range", ["render", "song.wav", "-o", "v.mp4", "--model", "cond", "--class", "9"], "out of range", 2, None),
    ("render --class -1", ["render", "song.wav", "-o", "v.mp4", "--model", "cond", "--class", "-1"], "--class must be >= 0", 2, None),
    ("render --class on an unconditional model", ["render", "song.wav", "-o", "v.mp4", "--model", "ckpt", "--class", "1"],
     "needs a conditional model", 2, None),
    ("render --timeline class a string", ["render", "song.wav", "-o", "v.mp4", "--model", "cond", "--timeline", "t.toml"], "class must be", 2,
     write_file("t.toml", TIMELINE_OK + "class = 'cat'\n")),
    # ---- render --from
    ("render --from missing", ["render", "--from", "gone.json", "-o", "v.mp4"], "no such render record", 2, None),
    ("render --from foreign JSON", ["render", "--from", "other.json", "-o", "v.mp4"], "not a gvjax render record", 2, None),
    ("render --from broken JSON", ["render", "--from", "broken.json", "-o", "v.mp4"], "invalid JSON", 2, None),
    ("render --from a list for config", ["render", "--from", "rec_list.json", "-o", "v.mp4"], "config must be an object", 2, None),
    ("render --from 'fast' for fps", ["render", "--from", "rec_fps.json", "-o", "v.mp4"], "fps must be a finite number", 2, None),
    ("render --from seed -1", ["render", "--from", "rec_seed.json", "-o", "v.mp4"], "[0, 2**32)", 2, None),
    ("render --from audio not an object", ["render", "--from", "rec_audio.json", "-o", "v.mp4"], "audio must be", 2, None),
    ("render --from with --seed", ["render", "--from", "rec.json", "-o", "v.mp4", "--seed", "3"], "--seed cannot be combined", 2, None),
    ("render --from with --fps and --size", ["render", "--from", "rec.json", "-o", "v.mp4", "--fps", "10", "--size", "64x64"],
     "--fps, --size cannot be combined", 2, None),
    ("render --from with a SONG", ["render", "song.wav", "--from", "rec.json", "-o", "v.mp4"], "SONG cannot be combined", 2, None),
    ("render --from with --demo", ["render", "--demo", "--from", "rec.json", "-o", "v.mp4"], "--demo cannot be combined", 2, None),
    ("render --from without -o", ["render", "--from", "rec.json"], "-o OUT.mp4", 2, None),
    ("render --from onto its own record", ["render", "--from", "rec.json", "-o", "rec.mp4", "--force"], "is the render record", 2, None),
    ("render --from a record of another model", ["render", "--from", "rec.json", "-o", "v.mp4"], "changed since the render", 2, None),
    ("render --allow-changed without --from", ["render", "song.wav", "-o", "v.mp4", "--allow-changed"], "only applies with --from", 2, None),
    # ---- generate
    ("generate a missing model", ["generate", "gone", "--outdir", "o"], "no such model", 2, None),
    ("generate --seeds x", ["generate", "ckpt", "--seeds", "x", "--outdir", "o"], "seeds", 2, None),
    ("generate --seeds 2**32", ["generate", "ckpt", "--seeds", str(2**32), "--outdir", "o"], "[0, 2**32)", 2, None),
    ("generate --seeds -1", ["generate", "ckpt", "--seeds", "-1", "--outdir", "o"], "seeds", 2, None),
    ("generate too many seeds", ["generate", "ckpt", "--seeds", "0-99999999", "--outdir", "o"], "more than", 2, None),
    ("generate --trunc nan", ["generate", "ckpt", "--trunc", "nan", "--outdir", "o"], "--trunc must be a finite", 2, None),
    ("generate --noise-mode loud", ["generate", "ckpt", "--noise-mode", "loud", "--outdir", "o"], "noise mode", 2, None),
    ("generate --dtype float16", ["generate", "ckpt", "--dtype", "float16", "--outdir", "o"], "--dtype", 2, None),
    ("generate --batch 0", ["generate", "ckpt", "--batch", "0", "--outdir", "o"], "--batch", 2, None),
    ("generate --outdir a file", ["generate", "ckpt", "--outdir", "notes.txt"], "is a file", 2, None),
    ("generate --outdir in a missing folder", ["generate", "ckpt", "--outdir", "nodir/o"], "does not exist", 2, None),
    ("generate over an existing image", ["generate", "ckpt", "--seeds", "0-1", "--outdir", "out"], "already exists", 2, None),
    ("generate --outdir the model", ["generate", "ckpt", "--outdir", "ckpt"], "is the model", 2, None),
    ("generate conditional without --class", ["generate", "cond", "--outdir", "o"], "--class", 2, None),
    ("generate --class out of range", ["generate", "cond", "--class", "7", "--outdir", "o"], "out of range", 2, None),
    ("generate a hand-edited checkpoint", ["generate", "ckpt", "--outdir", "o"], "img_resolution", 2,
     edit_config("ckpt", set_generator(img_resolution=48))),
    # ---- convert and inspect
    ("convert a missing file", ["convert", "gone.pkl", "new"], "not found", 2, None),
    ("convert a text file", ["convert", "notes.txt", "new"], "notes.txt", 2, None),
    ("convert a truncated pickle", ["convert", "truncated.pkl", "new"], "truncated.pkl", 2, None),
    ("convert --force onto a folder of photos", ["convert", "ada.pkl", "photos", "--force"], "replaces only a gvjax checkpoint", 2, None),
    ("convert --force onto the current folder", ["convert", "ada.pkl", ".", "--force"], "current directory", 2, None),
    ("convert --force onto a file", ["convert", "ada.pkl", "notes.txt", "--force"], "replaces only a gvjax checkpoint", 2, None),
    ("convert onto a checkpoint without --force", ["convert", "ada.pkl", "ckpt"], "already exists", 2, None),
    ("convert onto its own source", ["convert", "ada.pkl", "ada.pkl", "--force"], "is the source file", 2, None),
    ("convert into a missing folder", ["convert", "ada.pkl", "nodir/new"], "does not exist", 2, None),
    ("convert without DST", ["convert", "ada.pkl"], "'dst'", 2, None),
    ("inspect a missing path", ["inspect", "gone"], "no such model", 2, None),
    ("inspect a text file", ["inspect", "notes.txt"], "notes.txt", 2, None),
    ("inspect a png named .npz", ["inspect", "weights.npz"], "weights.npz is not a gvjax model npz: not an npz (zip) file", 2, None),
    ("render a foreign npz", ["render", "song.wav", "-o", "v.mp4", "--model", "arrays.npz"], "it has no __meta__ entry", 2, None),
    ("generate a pickled npz", ["generate", "pickled.npz", "--seeds", "0", "--outdir", "g"], "pickled.npz is not a readable gvjax model npz", 2, None),
    ("inspect a hand-edited checkpoint", ["inspect", "ckpt"], "z_dim must be >= 0", 2, edit_config("ckpt", set_generator(z_dim=-1))),
    ("inspect a list for config.json", ["inspect", "ckpt"], "not a gvjax checkpoint", 2, write_file("ckpt/config.json", "[1, 2]")),
    # ---- train
    ("train --kimg inf", ["train", "data", "--from", "ckpt", "--out", "r", "--kimg", "inf"], "--kimg must be a finite", 2, None),
    ("train --kimg nan", ["train", "data", "--from", "ckpt", "--out", "r", "--kimg", "nan"], "--kimg must be a finite", 2, None),
    ("train --kimg 0", ["train", "data", "--from", "ckpt", "--out", "r", "--kimg", "0"], "--kimg must be > 0", 2, None),
    ("train --lr nan", ["train", "data", "--from", "ckpt", "--out", "r", "--lr", "nan"], "--lr must be a finite", 2, None),
    ("train --lr -1", ["train", "data", "--from", "ckpt", "--out", "r", "--lr", "-1"], "--lr must be > 0", 2, None),
    ("train --d-lr 0", ["train", "data", "--from", "ckpt", "--out", "r", "--d-lr", "0"], "--d-lr must be > 0", 2, None),
    ("train --g-lr nan", ["train", "data", "--from", "ckpt", "--out", "r", "--g-lr", "nan"], "--g-lr must be a finite", 2, None),
    ("train --blur-sigma -1", ["train", "data", "--from", "ckpt", "--out", "r", "--blur-sigma", "-1"], "--blur-sigma must be >= 0", 2, None),
    ("train --blur-kimg inf", ["train", "data", "--from", "ckpt", "--out", "r", "--blur-kimg", "inf"], "--blur-kimg must be a finite", 2, None),
    ("train --gamma -1", ["train", "data", "--from", "ckpt", "--out", "r", "--gamma", "-1"], "--gamma must be >= 0", 2, None),
    ("train --gamma inf", ["train", "data", "--from", "ckpt", "--out", "r", "--gamma", "inf"], "--gamma must be a finite", 2, None),
    ("train --ema-kimg 0", ["train", "data", "--from", "ckpt", "--out", "r", "--ema-kimg", "0"], "--ema-kimg must be > 0", 2, None),
    ("train --ema-rampup -1", ["train", "data", "--from", "ckpt", "--out", "r", "--ema-rampup", "-1"], "--ema-rampup must be >= 0", 2, None),
    ("train --pl-weight -2", ["train", "data", "--from", "ckpt", "--out", "r", "--pl-weight", "-2"], "--pl-weight must be >= 0", 2, None),
    ("train --seed -1", ["train", "data", "--from", "ckpt", "--out", "r", "--seed", "-1"], "[0, 2**32)", 2, None),
    ("train --augment bogus", ["train", "data", "--from", "ckpt", "--out", "r", "--augment", "bogus"], "unknown augmentation", 2, None),
    ("train --augment-p 2", ["train", "data", "--from", "ckpt", "--out", "r", "--augment-p", "2"], "augment_p", 2, None),
    ("train --ada-target 0", ["train", "data", "--from", "ckpt", "--out", "r", "--ada-target", "0"], "--ada-target", 2, None),
    ("train --batch 0", ["train", "data", "--from", "ckpt", "--out", "r", "--batch", "0"], "--batch must be >= 1", 2, None),
    ("train --out a file", ["train", "data", "--from", "ckpt", "--out", "notes.txt"], "is a file", 2, None),
    ("train --out the data", ["train", "data", "--from", "ckpt", "--out", "data"], "is the training data", 2, None),
    ("train --out the model", ["train", "data", "--from", "ckpt", "--out", "ckpt"], "is the starting model", 2, None),
    ("train --out in a missing folder", ["train", "data", "--from", "ckpt", "--out", "nodir/r"], "does not exist", 2, None),
    ("train --out a used run", ["train", "data", "--from", "ckpt", "--out", "run"], "not empty", 2, None),
    ("train missing data", ["train", "gone", "--from", "ckpt", "--out", "r"], "no such dataset", 2, None),
    ("train without --from", ["train", "data", "--out", "r"], "--from", 2, None),
    ("train --from a missing model", ["train", "data", "--from", "gone", "--out", "r"], "no such model", 2, None),
    ("train --resume without a run", ["train", "data", "--out", "r", "--resume"], "no checkpoint to resume", 2, None),
    # ---- dataset
    ("dataset --res 100000", ["dataset", "fruit", "f", "--res", "100000"], "--res in 8..4096", 2, None),
    ("dataset --res 4", ["dataset", "fruit", "f", "--res", "4"], "--res", 2, None),
    ("dataset --count 0", ["dataset", "fruit", "f", "--count", "0"], "--count", 2, None),
    ("dataset --workers 0", ["dataset", "fruit", "f", "--workers", "0"], "--workers must be >= 1", 2, None),
    ("dataset into a used folder", ["dataset", "fruit", "photos", "--count", "2"], "not an empty folder", 2, None),
    ("dataset onto a file", ["dataset", "fruit", "notes.txt", "--count", "2"], "not an empty folder", 2, None),
    ("dataset --seed -1", ["dataset", "fruit", "f", "--seed", "-1"], "[0, 2**32)", 2, None),
    ("dataset into a missing folder", ["dataset", "fruit", "nodir/f"], "does not exist", 2, None),
    ("dataset unknown kind", ["dataset", "cats", "f"], "cats", 2, None),
    # ---- the command line itself
    ("no such command", ["paint"], "paint", 2, None),
    ("generate without a model", ["generate", "--outdir", "o"], "'model'", 2, None),
]


@pytest.fixture
def world(world_src, tmp_path, monkeypatch):
    w = tmp_path / "w"
    shutil.copytree(world_src, w)
    monkeypatch.chdir(w)
    return w


def check_case(world, argv, needle, code, run):
    before = snapshot(world)
    rc, err = run(argv)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == code, (argv, rc, err)
    assert 1 <= len(lines) <= 3, (argv, err)
    assert "Traceback" not in err and "Warning" not in err and "Note:" not in err, (argv, err)
    assert needle in err, (argv, needle, err)
    after = snapshot(world)
    assert sorted(set(after) - set(before)) == [], f"{argv}: left behind {sorted(set(after) - set(before))}"
    changed = [p for p in before if after.get(p) != before[p]]
    assert changed == [], f"{argv}: changed or removed {changed}"


@pytest.mark.parametrize("case_id,argv,needle,code,setup", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, capfd, case_id, argv, needle, code, setup):
    from gvjax.cli import _run

    if setup is not None:
        setup(world)

    def run(argv):
        capfd.readouterr()
        rc = _run(list(argv))
        out, err = capfd.readouterr()
        return rc, err

    check_case(world, argv, needle, code, run)


def test_the_table_is_large_and_covers_every_command():
    commands = {c[1][0] for c in CASES}
    assert len(CASES) >= 80
    assert {"render", "generate", "convert", "inspect", "train", "dataset"} <= commands


# --- cases that need a real process, file system or signal --------------------------------------------


def subprocess_run(argv):
    r = run_cli(*argv, cwd=os.getcwd(), timeout=240)  # each case takes seconds: a hang fails fast
    return r.returncode, r.stderr


def test_decoder_chatter_never_reaches_the_terminal(world):
    """mpg123 prints 'Note: Illegal Audio-MPEG-Header' on fd 2 for a PNG named .mp3; a real process shows only our line."""
    check_case(world, ["render", "fake.mp3", "-o", "v.mp4"], "fake.mp3", 2, subprocess_run)


@pytest.fixture
def mount(tmp_path):
    """Factory: a small tmpfs mounted under tmp_path (read-only if asked); skipped where mounting is not allowed."""
    mounted = []

    def make(name, size="64k", read_only=False):
        point = tmp_path / name
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount_read_only(point):
    r = subprocess.run(["mount", "-o", "remount,ro", str(point)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")


@pytest.mark.parametrize("argv,needle", [
    (["render", "song.wav", "-o", "ro/v.mp4", "--model", "ckpt"], "read-only file system"),
    (["generate", "ckpt", "--outdir", "ro/imgs"], "read-only file system"),
    (["convert", "ada.pkl", "ro/new"], "read-only file system"),
    (["dataset", "fruit", "ro/f", "--count", "2", "--res", "16"], "read-only file system"),
], ids=["render", "generate", "convert", "dataset"])
def test_read_only_folder(world, mount, argv, needle):
    point = mount("ro")
    (point / "mine.txt").write_text("keep")
    os.symlink(point, world / "ro")
    remount_read_only(point)
    before = snapshot(point)
    check_case(world, argv, needle, 2, subprocess_run)
    assert snapshot(point) == before


@pytest.mark.parametrize("argv,needle", [
    (["render", "song.wav", "-o", "full/v.mp4", "--model", "ckpt", "--scale", "4", "--fps", "8"], "no space left"),
    (["generate", "ckpt", "--seeds", "0-63", "--outdir", "full/imgs", "--npy"], "no space left"),
    (["convert", "ada.pkl", "full/new"], "no space left"),
    (["dataset", "fruit", "full/f", "--count", "50", "--res", "64"], "no space left"),
], ids=["render", "generate", "convert", "dataset"])
def test_full_disk(world, mount, argv, needle):
    point = mount("full", size="40k")
    (point / "mine.txt").write_text("keep")
    os.symlink(point, world / "full")
    before = snapshot(point)
    rc, err = subprocess_run(argv)
    lines = err.strip().splitlines()
    assert rc != 0 and 1 <= len(lines) <= 3 and "Traceback" not in err, err
    assert needle in err.lower(), err
    assert snapshot(point) == before  # the user's file kept, nothing half-written left
    assert not [p for p in world.iterdir() if p.name not in snapshot(world)]


def test_sigterm_behaves_like_ctrl_c(world):
    """SIGTERM mid-render: one 'interrupted' message, exit 130, a playable partial video, no temp file."""
    write_wav(world / "long.wav", tone(60.0), SR)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gvjax", "render", "long.wav", "-o", "int.mp4", "--model", "ckpt", "--fps", "30", "--batch", "4"],
        stderr=subprocess.PIPE, text=True, cwd=world,
    )
    line = proc.stderr.readline()  # the first progress line: frames are being written
    assert line.startswith("render "), line
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    left = sorted(p.name for p in world.iterdir() if ".gvjax-tmp-" in p.name)
    assert left == [], left
    assert (world / "int.mp4").exists() and (world / "int.json").exists()


def test_sigterm_before_the_first_frame_leaves_nothing(world):
    proc = subprocess.Popen(
        [sys.executable, "-m", "gvjax", "generate", "ckpt", "--seeds", "0-2000", "--outdir", "imgs"],
        stderr=subprocess.PIPE, text=True, cwd=world,
    )
    deadline = time.time() + 120
    while not (world / "imgs").exists() and time.time() < deadline:  # wait until it writes
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert not (world / "imgs").exists()  # every image written so far, and the folder it made, removed
    assert [p.name for p in world.iterdir() if ".gvjax-tmp-" in p.name] == []


INTERRUPT_IN_A_CALLBACK = """
import time
from gvjax.cli import handle_interrupts
from gvjax.errors import check_interrupt
handle_interrupts()

class Dropped:
    def __del__(self):
        raise KeyboardInterrupt  # lands where Python cannot raise it: reported to sys.unraisablehook

try:
    Dropped()
    for batch in range(100):  # a command's loop: one check per batch
        check_interrupt()
        time.sleep(0.01)
    print("lost")
except KeyboardInterrupt:
    print(f"stopped at batch {batch}")
"""


def test_an_interrupt_raised_in_a_callback_still_stops_the_command():
    """A KeyboardInterrupt Python can only report (raised in a __del__, as in a jax gc callback)
    is not dropped: the command's next batch stops."""
    r = subprocess.run([sys.executable, "-c", INTERRUPT_IN_A_CALLBACK], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "stopped at batch 0", (r.stdout, r.stderr)
    assert r.stderr == "", r.stderr  # nothing printed about an ignored exception



SIGNALS_BETWEEN_BATCHES = """
import os, signal
from gvjax.cli import handle_interrupts
from gvjax.errors import check_interrupt, interrupts_between_batches
handle_interrupts()
seen = []
for sig in (signal.SIGINT, signal.SIGTERM):
    try:
        with interrupts_between_batches():
            for batch in range(5):
                check_interrupt()
                if batch == 1:
                    os.kill(os.getpid(), sig)  # delivered here, inside the batch
                    seen.append(f"batch {batch} finished")
    except KeyboardInterrupt:
        seen.append(f"stopped before batch {batch}")
try:  # a second signal while the first is pending stops at once
    with interrupts_between_batches():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        seen.append("not reached")
except KeyboardInterrupt:
    seen.append("second: at once")
try:  # one that arrives after the last batch's check is raised when the loop ends
    with interrupts_between_batches():
        os.kill(os.getpid(), signal.SIGTERM)
        seen.append("loop ended")
except KeyboardInterrupt:
    seen.append("raised at the end")
check_interrupt()  # nothing left pending
try:  # outside, the CLI's handlers are back: SIGTERM raises where it lands
    os.kill(os.getpid(), signal.SIGTERM)
    seen.append("not reached")
except KeyboardInterrupt:
    seen.append("outside: at once")
print("; ".join(seen))
"""


def test_signals_inside_a_loop_stop_it_between_batches():
    """Ctrl-C or SIGTERM inside a command's loop finishes the batch and stops before the next
    (a KeyboardInterrupt raised inside jax's C callbacks can turn into a SystemError or be lost)."""
    r = subprocess.run([sys.executable, "-c", SIGNALS_BETWEEN_BATCHES], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == (
        "batch 1 finished; stopped before batch 2; batch 1 finished; stopped before batch 2; "
        "second: at once; loop ended; raised at the end; outside: at once"
    ), (r.stdout, r.stderr)
    assert r.stderr == "", r.stderr

@pytest.mark.slow
def test_float_audio_far_beyond_full_scale_renders(world):
    """A float wav peaking at 1e30 is analysed and muxed at full scale (no NaN, no stalled encoder)."""
    from gvjax.render.video import probe_streams

    float_wav(world / "loud.wav", tone(1.0) * np.float32(1e30))
    r = run_cli("render", "loud.wav", "-o", "loud.mp4", "--model", "ckpt", "--fps", "4", "--quiet", cwd=world, timeout=300)
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
    info = probe_streams(world / "loud.mp4")
    assert info["video_frames"] == 4 and info["audio_seconds"] == pytest.approx(1.0, abs=0.1)


@pytest.mark.slow
def test_batch_far_above_the_frames_is_clamped(world):
    """--batch 100000 for a 4-frame render: the step is built for 4 frames (no giant allocation)."""
    r = run_cli("render", "song.wav", "-o", "b.mp4", "--model", "ckpt", "--fps", "2", "--batch", "100000", "--quiet", cwd=world, timeout=300)
    assert r.returncode == 0, r.stderr
    record = json.loads((world / "b.json").read_text())
    assert record["frames"] == 4 and record["compilations"] == 1
