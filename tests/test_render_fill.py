"""Frames of any shape: --fill widen (synthesis draws the wider frame), crop and pad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_render import decode_frames

import gvjax
from gvjax import ops
from gvjax.bundled import bundled_model
from gvjax.model import Generator
from gvjax.render.step import fill_scale, resolve_fill, widen_canvas

FPS = 8.0


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
    cfg = bundled_model().config
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
