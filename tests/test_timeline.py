"""Timelines: TOML errors, slit-scan across batch boundaries, one compilation, audio drives the warps."""

import numpy as np
import pytest
from conftest import load_expected, load_state

from gvjax.audio import compute_features
from gvjax.convert.nvidia import config_from_init_kwargs, variables_from_state_dict
from gvjax.demo_audio import write_wav
from gvjax.errors import GvjaxError
from gvjax.render.config import RenderConfig
from gvjax.render.pipeline import render_video, section_keyframes
from gvjax.render.step import FrameSpec, RenderStep
from gvjax.render.timeline import PRESETS, load_timeline, plan_frames

SR = 22050
MICRO_TIMELINE = """
crossfade = 0.5
[[section]]
start = 0.0
seeds = [1, 2, 3]
[[section]]
start = 1.0
seeds = [4, 5, 6]
  [[section.warp]]
  type = "slitscan"
  resolution = 16
  feature = "rms"
  offset = 0.5
  delay = 5
  [[section.warp]]
  type = "strips"
  resolution = 8
  feature = "onset"
  offset = 0.3
  count = 4
"""


def beats(seconds, bpm=120.0, sr=SR, loud=lambda i: 1.0):
    """Noise bursts on the beat; `loud(i)` scales beat i."""
    y = np.zeros(int(seconds * sr), np.float32)
    period = 60.0 / bpm
    burst = np.random.RandomState(0).standard_normal(int(0.08 * sr)).astype(np.float32) * np.exp(-np.arange(int(0.08 * sr)) / (0.02 * sr))
    for i, t in enumerate(np.arange(0, seconds, period)):
        a = int(t * sr)
        n = min(burst.size, y.size - a)
        y[a : a + n] += 0.8 * loud(i) * burst[:n]
    return y


@pytest.fixture(scope="module")
def micro():
    from gvjax.checkpoint import Checkpoint

    meta, _ = load_expected("ada_micro_skip")
    config = config_from_init_kwargs(meta["G_init_kwargs"])
    return Checkpoint(config, {"G_ema": variables_from_state_dict(load_state("ada_micro_skip", "G_ema."), config)}, {}, {})


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[[section]]\nstart = 0\nseeds = [1\n", "line"),
        ("[[section]]\nstart = 0\n[[section.warp]]\ntype = 'melt'\nresolution = 16\n", "unknown warp type 'melt'"),
        ("[[section]]\nstart = 0\n[[section.warp]]\ntype = 'rotate'\nresolution = 16\nfeature = 'bass'\n", "section 1, warp 1: unknown feature 'bass'"),
        ("[[section]]\nstart = 0\n[[section.warp]]\ntype = 'rotate'\nresolution = 16\nangle = 3\n", "unknown key 'angle'"),
        ("[[section]]\nstart = 0\ndrive = 'loudness'\n", "section 1: unknown drive 'loudness'"),
        ("[[section]]\nstart = 0\nspeed = 2\n", "section 1: unknown key 'speed'"),
        ("crossfade = 1\n", "at least one [[section]]"),
    ],
)
def test_broken_timelines_name_the_problem(tmp_path, text, needle):
    with pytest.raises(GvjaxError) as info:
        load_timeline(write(tmp_path, "t.toml", text))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_presets_parse():
    original = load_timeline("original")
    assert [w.kind for w in original.slots] == ["slitscan", "strips"]
    everything = load_timeline(PRESETS / "all-warps.toml")
    from gvjax.warps import WARP_PARAMS

    assert {w.kind for w in everything.slots} == set(WARP_PARAMS)


def render_frames(micro, plan, keyframes, batch, slots):
    step = RenderStep(micro.config, micro.variables, FrameSpec(32, 32, 0.5, "const", None, 10.0, slots), batch=batch, seed=0)
    out = []
    for a, b in plan.segments():
        for first in range(a, b, step.batch):
            idx = np.arange(first, min(first + step.batch, b))
            sa, sb = int(plan.section_a[first]), int(plan.section_b[first])
            frames = step(keyframes[sa], plan.t_a[idx], keyframes[sb], plan.t_b[idx], plan.fade[idx], idx, plan.strengths[idx])
            out.append(np.asarray(frames)[: len(idx)])
    return np.concatenate(out), step.compilations


def test_slitscan_is_the_same_for_batch_4_and_7(tmp_path, micro):
    song = write_wav(tmp_path / "b.wav", beats(3.0), SR)
    timeline = load_timeline(write(tmp_path, "t.toml", MICRO_TIMELINE))
    features = compute_features(song, 10.0)
    plan = plan_frames(timeline, features, fps=10.0, start=0.0)
    assert plan.strengths[15:, 0].min() > 0.4  # the slit-scan is on in the second section
    keyframes = [section_keyframes(s, micro) for s in timeline.sections]
    a, compiles_a = render_frames(micro, plan, keyframes, 4, timeline.slots)
    b, compiles_b = render_frames(micro, plan, keyframes, 7, timeline.slots)
    assert a.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert compiles_a == 1 and compiles_b == 1  # three segments (plain, cross-fade, plain), one compile


def test_render_compiles_once_for_a_two_section_timeline(tmp_path, micro):
    song = write_wav(tmp_path / "b.wav", beats(3.0), SR)
    tl = write(tmp_path, "t.toml", MICRO_TIMELINE)
    result = render_video(RenderConfig(fps=10.0, batch=4, timeline=str(tl)), micro, song, tmp_path / "o.mp4", progress=False)
    import json

    record = json.loads(result.record.read_text())
    assert result.frames == 30 and record["compilations"] == 1


def test_audio_drives_the_warp(tmp_path):
    """The original-video preset on a test track: strips' effect on the 16x16 features per frame
    correlates with the percussive feature that drives it."""
    import jax
    import jax.numpy as jnp

    from gvjax.bundled import bundled_model
    from gvjax.model import Generator
    from gvjax.spline import sample_spline
    from gvjax.warps import apply_warp

    fps = 10.0
    # beats whose loudness rises and falls over the second section (which starts at 6 s)
    y = beats(12.0, loud=lambda i: 0.1 + 0.9 * abs(np.sin(i / 3.0)))
    song = write_wav(tmp_path / "song.wav", y, SR)
    ckpt = bundled_model()
    result = render_video(RenderConfig(fps=fps, batch=8, timeline="original"), ckpt, song, tmp_path / "o.mp4", progress=False)
    assert result.frames == 120
    timeline = load_timeline("original")
    features = compute_features(song, fps)
    plan = plan_frames(timeline, features, fps=fps, start=0.0)
    keyframes = [section_keyframes(s, ckpt) for s in timeline.sections]
    k = [w.kind for w in timeline.slots].index("strips")
    strips = timeline.slots[k]
    gen = Generator(ckpt.config)
    frames = np.arange(70, 120)  # inside the second section, after the cross-fade
    ws = jax.vmap(lambda t: sample_spline(jnp.asarray(keyframes[1]), t))(jnp.asarray(plan.t_a[frames], jnp.float32))
    x, _ = jax.vmap(lambda w: gen.apply(ckpt.variables, w, upto_res=16, method="run_blocks"))(ws)
    warped = jax.vmap(lambda x, s: apply_warp(strips, x, s, 0.0))(x, jnp.asarray(plan.strengths[frames, k]))
    effect = np.asarray(jnp.abs(warped - x).mean(axis=(1, 2, 3)))
    pearson = np.corrcoef(effect, features["percussive"][frames])[0, 1]
    assert pearson > 0.5, pearson
