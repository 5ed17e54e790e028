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
from gvjax.errors import GvjaxError
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
    # widen: 11 would draw 880 x 1408 for a 720 x 1280 frame, 12 draws 768 x 1344; for a 1024 model
    # at 1080p, 2 would draw 2048 x 2048 (47% of the rows cut), 1 draws 1280 x 2048 (canvas 5 x 8).
    assert fill_scale("widen", 1024, (1920, 1080)) == 1 and widen_canvas(1024, 1, 1920, 1080) == (5, 8)
    assert fill_scale("widen", 64, (448, 256)) == 4 and fill_scale("widen", 512, (1920, 1080)) == 2
    for cfg in (bundled_model().config, load_source(SG3T).config):
        assert resolve_fill("auto", cfg, (448, 256)) == "widen" and resolve_fill("auto", cfg, (256, 256)) == "pad"
        assert resolve_fill("auto", cfg, None) == "pad"


def test_a_family_that_cannot_widen_is_padded_or_refused(monkeypatch):
    """Both families widen today; a family that could not (`WIDENS = False`) gets pad from auto and
    a one-line error from an explicit widen."""
    from gvjax import models

    monkeypatch.setattr(models, "widens", lambda config: False)
    cfg = bundled_model().config
    assert resolve_fill("auto", cfg, (448, 256)) == "pad"
    with pytest.raises(GvjaxError, match="--fill widen needs a model whose synthesis widens"):
        resolve_fill("widen", cfg, (448, 256))


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


@pytest.mark.parametrize("name, canvases", [("sg3t_micro", ((4, 6), (6, 4), (5, 7))), ("sg3r_micro", ((6, 4),))], ids=["T", "R"])
def test_a_wider_stylegan3_canvas_shows_more_of_the_same_plane(name, canvases):
    """StyleGAN3 widens by sampling its Fourier input over more of the plane, every layer growing
    with it. Its layers are translation-equivariant, so the wide image is the square one with more
    of the plane around it:

    * its centre is the square image, on the same samples of the plane;
    * its extra columns (rows) are what the square shows when the camera moves that far sideways
      (the input's `transform`, as `gen_images.py --translate` sets it).

    Both hold away from the square's own edges, where its last layers (which have no margin) saw
    zero padding; measured a quarter of the side in: 1.1e-4 of the image's spread (T) and 6e-7 (R).
    The other side, or one pixel off, differs by 2e-2 to 2e-1 of the spread (these random micro
    models draw smooth images), so the bound tells the right samples from near ones."""
    ckpt = load_source(DATA / "stylegan3" / f"{name}.pkl")
    res = ckpt.config.img_resolution
    z = jax.random.normal(jax.random.key(1), (ckpt.config.z_dim,))

    compiled = {}

    def image(canvas=None, translate=(0.0, 0.0)):
        if canvas not in compiled:  # one program per canvas; the camera is an argument
            gen = sg3.Generator(ckpt.config) if canvas is None else sg3.Generator(ckpt.config, canvas=canvas)
            compiled[canvas] = jax.jit(lambda v, z, t: gen.apply(v, z, truncation_psi=0.7, transform=t))
        transform = np.linalg.inv(ops.make_transform(translate, 0.0)).astype(np.float32)
        return np.asarray(compiled[canvas](ckpt.variables, z, transform))

    square = image((4, 4))
    if name == "sg3t_micro":  # the default canvas is the square (one compile more: T only)
        np.testing.assert_array_equal(image(), square)
    spread, m = float(square.std()), res // 4

    def error(a, b):
        return float(np.abs(a[m:res - m, m:res - m] - b[m:res - m, m:res - m]).max()) / spread

    for canvas in canvases:  # R (radial down filters) on one canvas, to keep the compiles few
        wide = image(canvas)
        rows, cols = res * canvas[0] // 4, res * canvas[1] // 4
        assert wide.shape == (rows, cols, ckpt.config.img_channels)
        y0, x0 = (rows - res) // 2, (cols - res) // 2
        assert error(wide[y0:y0 + res, x0:x0 + res], square) < 1e-3, canvas
        assert error(wide[y0:y0 + res, x0 + 1:x0 + 1 + res], square) > 5e-3, canvas  # one column off
        for axis, extra in ((1, x0), (0, y0)):
            if extra == 0:
                continue
            for d in (extra, -extra):  # to either edge of the wide image
                moved = image((4, 4), translate=(d / res, 0.0) if axis == 1 else (0.0, d / res))
                at = wide[y0:y0 + res, x0 - d:x0 - d + res] if axis == 1 else wide[y0 - d:y0 - d + res, x0:x0 + res]
                beyond = wide[y0:y0 + res, x0 + d:x0 + d + res] if axis == 1 else wide[y0 + d:y0 + d + res, x0:x0 + res]
                assert error(at, moved) < 1e-3, (canvas, axis, d)
                assert error(beyond, moved) > 5e-3, (canvas, axis, d)  # the other side is another picture


def test_a_stylegan3_canvas_layout_chains_at_nvidias_sizes():
    """`synthesis_layout` with a canvas, on NVIDIA's StyleGAN3-T 1024 and R 256 configs (no weights):
    each layer's input is the previous one's output, the `filtered_lrelu` size formula gives each
    layer's output shape on both axes, the image is `res * cells / 4`, and the padding is the square's."""
    configs = (sg3.StyleGAN3Config(img_resolution=1024, channel_base=32768, channel_max=512),
               sg3.StyleGAN3Config(img_resolution=256, conv_kernel=1, use_radial_filters=True, channel_base=65536, channel_max=1024))
    for cfg in configs:
        _, square = sg3.synthesis_layout(cfg)
        for canvas in ((4, 5), (5, 7), (9, 4), (4, 28)):
            spec, layers = sg3.synthesis_layout(cfg, canvas)
            shape = spec.shape
            for layer, sq in zip(layers, square):
                assert layer.in_shape == shape and layer.padding == sq.padding and layer.name == sq.name
                x0, x1, y0, y1 = layer.padding
                taps = (layer.up_taps - 1) + (layer.down_taps - 1)
                conv = (shape[0] + layer.conv_kernel - 1, shape[1] + layer.conv_kernel - 1)  # the modulated conv's padding k - 1
                shape = ((conv[0] * layer.up_factor + y0 + y1 - taps + layer.down_factor - 1) // layer.down_factor,
                         (conv[1] * layer.up_factor + x0 + x1 - taps + layer.down_factor - 1) // layer.down_factor)
                assert layer.out_shape == shape, (layer.name, canvas)
            assert shape == (cfg.img_resolution * canvas[0] // 4, cfg.img_resolution * canvas[1] // 4)
    with pytest.raises(GvjaxError, match="narrower than the square"):
        sg3.synthesis_layout(configs[0], (4, 3))


@pytest.mark.slow
def test_a_stylegan3_render_widens_to_the_frame(tmp_path):
    song = write_wav(tmp_path / "s.wav", synth_demo_track()[: 2 * DEMO_SR], DEMO_SR)
    result = gvjax.render_song(song, tmp_path / "w.mp4", model=str(SG3T), duration=1, fps=FPS, size=(96, 48), progress=False)
    import json

    config = json.loads(result.record.read_text())["config"]
    # auto: widen; at scale 1 the 32-px micro model draws exactly 48 x 96 (canvas 6 x 12), at 2 it would draw 64 x 96
    assert config["fill"] == "widen" and config["scale"] == 1
    frames = decode_frames(result.video)
    assert frames.shape == (8, 48, 96, 3)
    # The micro model's images are near 0 (mid-grey): no black bars anywhere, as a padded frame has.
    brightness = frames.astype(np.float32).mean(axis=3)
    assert brightness.mean(axis=1).min() > 60 and brightness.mean(axis=2).min() > 60
    padded = decode_frames(gvjax.render_song(song, tmp_path / "p.mp4", model=str(SG3T), duration=1, fps=FPS, size=(96, 48),
                                             fill="pad", scale=2, progress=False).video)
    assert padded.astype(np.float32).mean(axis=3).mean(axis=1).min() < 10  # the check above can fail


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
