"""StyleGAN3 renders: a layer warp and the audio-driven camera over the Fourier input.

The micro StyleGAN3-T fixture (NVIDIA's pickle, tests/data/stylegan3) renders through the same
pipeline and step as StyleGAN2: determinism, a camera that follows its feature, continuity under
steady audio, and the camera's identity at strength 0 are checked on the step's own frames.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import DATA
from test_render import decode_frames

import gvjax
from gvjax.audio import compute_features
from gvjax.convert import load_any
from gvjax.demo_audio import DEMO_SR, synth_demo_track, write_wav
from gvjax.render.config import RenderConfig
from gvjax.render.pipeline import prepare_render, variables_digest
from gvjax.render.timeline import load_timeline, parse_timeline_text
from gvjax.ops import make_transform
from gvjax.warps import WarpSpec, camera_transforms

SG3T = DATA / "stylegan3" / "sg3t_micro.pkl"
FPS = 10.0

WARPED = """
[[section]]
start = 0.0
seeds = [0, 2, 3]                 # seed 1 of this random micro model hardly reacts to its input's transform
base_speed = 0.3

  [[section.warp]]
  type = "strips"
  layer = "L5"
  feature = "onset"
  smoothing = [0.01, 0.2]

  [[section.warp]]
  type = "camera"
  feature = "rms"
  smoothing = [0.05, 0.3]
  degrees = 30.0
  dx = 0.1
"""


def job_frames(job) -> np.ndarray:
    return np.concatenate([np.asarray(frames)[:n] for _, frames, n in job.batches()])


def camera_degrees(transforms: np.ndarray) -> np.ndarray:
    """The camera's rotation per frame, from the `[n, 3, 3]` input transforms the step receives."""
    m = np.linalg.inv(transforms.astype(np.float64))
    return np.degrees(np.arctan2(m[:, 0, 1], m[:, 0, 0]))


@pytest.fixture(scope="module")
def sg3():
    return load_any(str(SG3T))[0]


@pytest.fixture(scope="module")
def demo_song(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("sg3song") / "demo.wav", synth_demo_track()[: 4 * DEMO_SR], DEMO_SR)


def prepared(sg3, song, timeline_text, **cfg):
    timeline = parse_timeline_text("t.toml", timeline_text)
    config = RenderConfig(fps=FPS, timeline="t.toml", **cfg)
    return prepare_render(config, sg3, song, timeline, cache_dir=None, model_digest=variables_digest(sg3.variables))


@pytest.mark.slow
def test_a_stylegan3_render_is_deterministic_and_holds_its_frames(tmp_path, demo_song):
    (tmp_path / "t.toml").write_text(WARPED)
    runs = []
    for name in ("a.mp4", "b.mp4"):
        result = gvjax.render_song(demo_song, tmp_path / name, model=str(SG3T), timeline=str(tmp_path / "t.toml"), fps=FPS, progress=False)
        assert result.frames == 40
        runs.append(decode_frames(result.video))
    assert runs[0].shape == (40, 32, 32, 3)
    assert np.array_equal(runs[0], runs[1])  # the same config and seed: the same frames
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


@pytest.mark.slow
def test_the_camera_follows_its_feature_and_the_warps_act(sg3, demo_song):
    job = prepared(sg3, demo_song, WARPED)
    transforms = job.frame_inputs(job.plan.strengths)["transform"]
    assert transforms.shape == (40, 3, 3)
    rms = compute_features(demo_song, FPS).rms
    motion = camera_degrees(transforms)
    assert np.corrcoef(motion, rms)[0, 1] > 0.5
    assert motion.max() > 5.0  # it really turns (30 degrees at full strength)

    warped = job_frames(job)
    plain = dataclasses.replace(job, plan=dataclasses.replace(job.plan, strengths=np.zeros_like(job.plan.strengths)))
    unwarped = job_frames(plain)
    change = np.abs(warped.astype(np.float32) - unwarped.astype(np.float32)).mean(axis=(1, 2, 3))
    active = job.plan.strengths.max(axis=1) > 0.05
    assert active.sum() > 10 and (change[active] > 0.2).mean() > 0.9, change
    assert (change[job.plan.strengths.max(axis=1) == 0] == 0).all()


@pytest.mark.slow
def test_the_camera_at_strength_0_is_the_plain_render(sg3, demo_song):
    plain_text = WARPED.split("  [[section.warp]]\n  type = \"camera\"")[0]
    without = job_frames(prepared(sg3, demo_song, plain_text))
    silent_camera = WARPED.replace('feature = "rms"', 'feature = "rms"\n  gain = 0.0')
    job = prepared(sg3, demo_song, silent_camera)
    assert job.plan.strengths[:, 1].max() == 0.0
    assert np.array_equal(job_frames(job), without)


@pytest.mark.slow
def test_frames_stay_continuous_under_steady_audio(sg3, tmp_path):
    t = np.arange(4 * DEMO_SR) / DEMO_SR
    steady = write_wav(tmp_path / "steady.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), DEMO_SR)
    camera = 'seeds = [0, 2, 3]\nbase_speed = 0.3\n'
    travel = f"[[section]]\nstart = 0.0\n{camera}"
    with_camera = travel + '[[section.warp]]\ntype = "camera"\nfeature = "rms"\ndegrees = 30.0\ndx = 0.1\ndrift = 4.0\n'
    job = prepared(sg3, steady, with_camera)
    strengths = job.plan.strengths[:, 0]
    assert strengths.min() > 0.1 and np.ptp(strengths[5:]) < 0.05  # steady audio: a steady strength

    def mean_step(frames):
        return np.abs(np.diff(frames.astype(np.float32), axis=0)).mean()

    moving, still = mean_step(job_frames(job)), mean_step(job_frames(prepared(sg3, steady, travel)))
    assert moving <= still, (moving, still)


def test_camera_transforms_integrate_the_strength():
    spec = WarpSpec.make("camera", degrees=20.0, dx=0.1, dy=-0.2, drift=6.0, pan_x=0.5, pan_y=0.0)
    s = np.array([0.0, 0.5, 1.0, 1.0, 0.0])
    fps = 2.0
    got = camera_transforms(spec, s, fps)
    assert got.shape == (5, 3, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], np.eye(3, dtype=np.float32))  # identity before any sound
    # by hand: seconds at full strength before each frame, 0, 0, 0.25, 0.75, 1.25
    travelled = np.array([0.0, 0.0, 0.25, 0.75, 1.25])
    angle = 20.0 * s + 6.0 * travelled
    m = np.linalg.inv(got.astype(np.float64))
    np.testing.assert_allclose(np.degrees(np.arctan2(m[:, 0, 1], m[:, 0, 0])), angle, atol=1e-4)
    np.testing.assert_allclose(m[:, 0, 2], 0.1 * s + 0.5 * travelled, atol=1e-5)
    np.testing.assert_allclose(m[:, 1, 2], -0.2 * s, atol=1e-5)
    # gen_images.py's make_transform layout for a rotation by 10 degrees and a move of (0.2, 0.3), vectorised
    c, sn = np.cos(np.radians(10)), np.sin(np.radians(10))
    np.testing.assert_allclose(make_transform((0.2, 0.3), 10.0), [[c, sn, 0.2], [-sn, c, 0.3], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(make_transform((np.array([0.2, 0.0]), np.array([0.3, 0.0])), np.array([10.0, 0.0]))[1], np.eye(3))


def test_the_stylegan3_preset_parses_and_fits_a_stylegan3_model(sg3):
    from gvjax.render.step import check_warps

    timeline = load_timeline("stylegan3")
    kinds = [w.kind for w in timeline.slots]
    assert kinds == ["camera", "slitscan", "strips"]
    stages = check_warps(sg3.config, timeline.slots)
    assert stages[0] is None and stages[1:] == (5, 7)  # after L4 and L6 (stage 0 is the input)
