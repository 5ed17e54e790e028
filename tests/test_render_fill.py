"""Frames of any shape: --fill widen (synthesis draws the wider frame), crop and pad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DATA
from test_render import decode_frames

import gvjax
from gvjax import ops
from gvjax.bundled import bundled_model
from gvjax.convert import load_source
from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav
from gvjax.model import Generator
from gvjax.models import stylegan3 as sg3
from gvjax.render.step import fill_scale, resolve_fill, widen_canvas

FPS = 8.0
SG3T = DATA / "stylegan3" / "sg3t_micro.pkl"


def test_widen_tiles_by_mirroring_around_the_centre():
    x = jnp.arange(3.0)[:, None]
    # rows -2..4 around the original 0..2: reflections 1 0 | 0 1 2 | 2 1
    np.testing.assert_array_equal(np.asarray(ops.widen(x, (7, 1)))[:, 0], [1, 0, 0, 1, 2, 2, 1])
    y = jnp.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(np.asarray(ops.widen(y, (3, 4))), np.asarray(y))  # the identity at its own size
    wide = np.asarray(ops.widen(y, (3, 6)))
    np.testing.assert_array_equal(wide[:, 1:5], np.asarray(y))  # the original in the middle
    np.testing.assert_array_equal(wide[:, 0], np.asarray(y)[:, 0])
    np.testing.assert_array_equal(wide[:, 5], np.asarray(y)[:, 3])


def test_canvas_and_scale_for_a_frame():
    assert widen_canvas(64, 4, 448, 256) == (4, 7)  # 64 x 112, x4: exactly 256 x 448
    assert widen_canvas(64, 4, 256, 448) == (7, 4)
    assert widen_canvas(64, 4, 256, 256) == (4, 4)
    assert widen_canvas(64, 12, 1280, 720) == (4, 7)  # 768 x 1344 on screen, centre-cropped to 720 x 1280
    assert fill_scale("widen", 64, (1280, 720)) == 12 and fill_scale("crop", 64, (1280, 720)) == 16
    assert fill_scale("pad", 64, (1280, 720)) == 1
    for cfg in (bundled_model().config, load_source(SG3T).config):
        assert resolve_fill("auto", cfg, (448, 256)) == "widen" and resolve_fill("auto", cfg, (256, 256)) == "pad"
        assert resolve_fill("auto", cfg, None) == "pad"


def test_a_wider_canvas_draws_a_wider_image_from_the_same_weights():
    ckpt = bundled_model()
    z = jax.random.normal(jax.random.key(3), (ckpt.config.z_dim,))

    def image(canvas=None, **kw):
        gen = Generator(ckpt.config) if canvas is None else Generator(ckpt.config, canvas=canvas)
        return np.asarray(jax.jit(lambda v, z: gen.apply(v, z, truncation_psi=0.7, **kw))(ckpt.variables, z))

    np.testing.assert_array_equal(image((4, 4)), image())
    for canvas, shape in (((4, 7), (64, 112, 3)), ((7, 4), (112, 64, 3))):
        img = image(canvas)
        assert img.shape == shape and np.isfinite(img).all()
    noisy = image((4, 7), noise_mode="random", noise_key=jax.random.key(0))
    assert noisy.shape == (64, 112, 3) and np.abs(noisy - image((4, 7))).max() > 0  # the wider noise maps are used


@pytest.mark.parametrize("name", ["sg3t_micro", "sg3r_micro"])
def test_a_wider_stylegan3_canvas_shows_more_of_the_same_plane(name):
    """StyleGAN3 widens by sampling its Fourier input over more of the plane, every layer growing
    with it. Its layers are translation-equivariant, so the square image reappears inside the wide
    one on the same samples of the plane: equal within float32 rounding away from the square's own
    edges (there the square's last layers, which have no margin, saw zero padding; measured, the
    difference falls from ~2e-3 of the image's spread at the edge to 1.4e-4 (T) and 5e-7 (R) at a
    quarter of the side in). One pixel off, it is 2e-2 of the spread (these random micro models
    draw smooth images), so the bound below tells the aligned crop from a shifted one."""
    ckpt = load_source(DATA / "stylegan3" / f"{name}.pkl")
    res = ckpt.config.img_resolution
    z = jax.random.normal(jax.random.key(1), (ckpt.config.z_dim,))

    def image(canvas=None):
        gen = sg3.Generator(ckpt.config) if canvas is None else sg3.Generator(ckpt.config, canvas=canvas)
        return np.asarray(jax.jit(lambda v, z: gen.apply(v, z, truncation_psi=0.7))(ckpt.variables, z))

    square = image()
    np.testing.assert_array_equal(image((4, 4)), square)
    spread, m = float(square.std()), res // 4

    def inner(a):
        return a[m:res - m, m:res - m]

    for canvas in ((4, 6), (6, 4), (5, 7)):
        wide = image(canvas)
        rows, cols = res * canvas[0] // 4, res * canvas[1] // 4
        assert wide.shape == (rows, cols, ckpt.config.img_channels)
        y0, x0 = (rows - res) // 2, (cols - res) // 2
        centre = wide[y0:y0 + res, x0:x0 + res]
        assert np.abs(inner(centre) - inner(square)).max() < 1e-3 * spread, canvas
        dy, dx = (0, 1) if cols > res else (1, 0)
        off = wide[y0 + dy:y0 + dy + res, x0 + dx:x0 + dx + res]
        assert np.abs(inner(off) - inner(square)).max() > 5e-3 * spread, canvas
        beside = wide[:, :x0] if cols > res else wide[:y0]
        assert beside.std() > 0.3 * spread  # drawn, not blank


@pytest.mark.slow
def test_a_stylegan3_render_widens_to_the_frame(tmp_path):
    song = write_wav(tmp_path / "s.wav", synth_demo_track()[: 2 * DEMO_SR], DEMO_SR)
    result = gvjax.render_song(song, tmp_path / "w.mp4", model=str(SG3T), duration=1, fps=FPS, size=(96, 48), progress=False)
    import json

    config = json.loads(result.record.read_text())["config"]
    assert config["fill"] == "widen" and config["scale"] == 2  # auto: widen; the micro model's 32 px to the 48-px side
    frames = decode_frames(result.video)
    assert frames.shape == (8, 48, 96, 3)
    # The micro model's images are near 0 (mid-grey): no black bars anywhere, as a padded frame has.
    brightness = frames.astype(np.float32).mean(axis=3)
    assert brightness.mean(axis=1).min() > 60 and brightness.mean(axis=2).min() > 60


@pytest.mark.slow
@pytest.mark.parametrize("size", [(448, 256), (256, 448)], ids=["16:9", "9:16"])
def test_widen_fills_the_frame_edge_to_edge(tmp_path, size):
    w, h = size
    result = gvjax.render_song(None, tmp_path / "w.mp4", demo=True, duration=2, fps=FPS, size=size, fill="widen", progress=False)
    frames = decode_frames(result.video)
    assert frames.shape == (16, h, w, 3)
    import json

    record = json.loads(result.record.read_text())
    assert record["config"]["fill"] == "widen" and record["config"]["scale"] == 4  # the shorter side: 64 px x 4
    # The bundled model draws fruit on white: no row or column of any frame is black (pad's bars are).
    brightness = frames.astype(np.float32).mean(axis=3)
    assert brightness.mean(axis=1).min() > 60 and brightness.mean(axis=2).min() > 60
    padded = decode_frames(gvjax.render_song(None, tmp_path / "p.mp4", demo=True, duration=2, fps=FPS, size=size, fill="pad",
                                             scale=4, progress=False).video)
    bars = padded.astype(np.float32).mean(axis=3)
    assert min(bars.mean(axis=1).min(), bars.mean(axis=2).min()) < 10  # the check above can fail


@pytest.mark.slow
def test_widen_at_one_to_one_is_the_square_render(tmp_path):
    square = gvjax.render_song(None, tmp_path / "s.mp4", demo=True, duration=2, fps=FPS, progress=False)
    widened = gvjax.render_song(None, tmp_path / "w.mp4", demo=True, duration=2, fps=FPS, size=(256, 256), fill="widen", progress=False)
    assert square.video.read_bytes() == widened.video.read_bytes()
