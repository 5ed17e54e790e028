"""RenderConfig: every option of a render, frozen and JSON-serialisable (written to OUT.json)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from gvjax.audio import FEATURES, FeatureConfig
from gvjax.config import check_finite_fields, check_seed, known_fields
from gvjax.errors import GvjaxError
from gvjax.model import NOISE_MODES
from gvjax.precision import DTYPES

SPLINE_ALPHAS = {"uniform": 0.0, "centripetal": 0.5}
MAX_SIDE = 8192  # pixels a side of the video (H.264 level 6.2 allows 8192x4320)
MAX_SCALE = 16  # the largest --scale (whole upscaling factor of the model's image)


FILLS = ("auto", "widen", "crop", "pad")


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Options of one render (the song and the model are given separately).

    Attributes:
      fps: video frames per second (> 0).
      seed: seeds the keyframes (when `keyframe_seeds` is None) and random noise.
      num_keyframes: N keyframes on the loop when they come from `seed`.
      keyframe_seeds: explicit seeds, one keyframe each (z as `gvjax generate`).
      keyframes_npy: a `.npy` of ws `[N, num_ws, w_dim]` instead of seeds.
      truncation_psi: truncation of the keyframes' ws.
      spline: 'uniform' or 'centripetal' Catmull-Rom parameterisation.
      start, duration: the range of the song to render, seconds (duration None: to the end).
      size: output (width, height); None: the (scaled) model's square resolution.
      fill: how a `size` of another shape is filled: 'widen' (synthesis itself draws a wider or
        taller frame: StyleGAN2's constant input and noise maps are widened, StyleGAN3's input
        samples more of its plane), 'crop' (the square
        scaled to cover, centre-cropped), 'pad' (the square centred, black around it, cropped where
        the frame is smaller), or 'auto' (widen where the model can, else pad; resolved before
        the render, so records hold the choice).
      scale: integer upscaling of the model's output (Lanczos-3) before `size` crops or pads.
      batch: frames per compiled step (the last batch is padded).
      crf: H.264 constant rate factor (0..51, lower is better).
      preview: stop synthesis at `preview_res` and upscale the skip branch's image.
      preview_res: resolution at which preview stops (None: a quarter of the model's).
      noise_mode: 'const', 'random' (key from seed and frame index) or 'none'.
      drive: the audio feature that drives the speed of travel.
      base_speed, speed_gain: t advances by base_speed + speed_gain * drive each frame (relative).
      laps: loops of the spline over the rendered range (integral laps loop seamlessly).
      laps_per_minute: instead of `laps`, a fixed average speed.
      stems: feature name -> separate audio file for that feature (the mix is muxed).
      dtype: 'float32' or 'bfloat16' synthesis compute.
      features: audio analysis options.
      timeline: a timeline TOML (sections of travel and warps; a preset name from
        render/presets/ works too). It replaces the travel options above.
      class_idx: the class of a conditional model (a timeline section's `class` overrides it).
    """

    fps: float = 30.0
    seed: int = 0
    num_keyframes: int = 6
    keyframe_seeds: tuple[int, ...] | None = None
    keyframes_npy: str | None = None
    truncation_psi: float = 0.7
    spline: str = "centripetal"
    start: float = 0.0
    duration: float | None = None
    size: tuple[int, int] | None = None
    fill: str = "auto"
    scale: int = 1
    batch: int = 8
    crf: int = 18
    preview: bool = False
    preview_res: int | None = None
    noise_mode: str = "const"
    drive: str = "rms"
    base_speed: float = 0.3
    speed_gain: float = 1.0
    laps: float | None = 1.0
    laps_per_minute: float | None = None
    stems: tuple[tuple[str, str], ...] = ()
    dtype: str = "float32"
    features: FeatureConfig = FeatureConfig()
    timeline: str | None = None
    class_idx: int | None = None

    def __post_init__(self):
        def bad(msg):
            raise GvjaxError(msg)

        check_finite_fields(self, "render config")
        object.__setattr__(self, "seed", check_seed(self.seed, "--seed"))
        if not (math.isfinite(self.fps) and self.fps > 0):
            bad(f"--fps must be > 0, got {self.fps}")
        if self.batch < 1:
            bad(f"--batch must be >= 1, got {self.batch}")
        if not (math.isfinite(self.start) and self.start >= 0):
            bad(f"--start must be >= 0 seconds, got {self.start}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            bad(f"--duration must be > 0 seconds, got {self.duration}")
        if self.num_keyframes < 1:
            bad(f"need at least one keyframe, got {self.num_keyframes}")
        if self.keyframe_seeds is not None:
            object.__setattr__(self, "keyframe_seeds", tuple(check_seed(s, "a keyframe seed") for s in self.keyframe_seeds))
            if not self.keyframe_seeds:
                bad("keyframe seeds are empty")
        if self.size is not None:
            w, h = (int(v) for v in self.size)
            if w < 2 or h < 2 or w % 2 or h % 2:
                bad(f"--size must be even and at least 2x2 (H.264 yuv420p), got {w}x{h}")
            if max(w, h) > MAX_SIDE:
                bad(f"--size {w}x{h} is too large: at most {MAX_SIDE} pixels a side")
            object.__setattr__(self, "size", (w, h))
        if self.fill not in FILLS:
            bad(f"--fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if not (isinstance(self.scale, int) and 1 <= self.scale <= MAX_SCALE):
            bad(f"--scale must be a whole number from 1 to {MAX_SCALE}, got {self.scale}")
        if not 0 <= self.crf <= 51:
            bad(f"--crf must be in 0..51, got {self.crf}")
        if self.noise_mode not in NOISE_MODES:
            bad(f"--noise-mode must be one of {', '.join(NOISE_MODES)}, got {self.noise_mode!r}")
        if self.drive not in FEATURES or self.drive == "chroma":
            bad(f"--drive must be one of {', '.join(f for f in FEATURES if f != 'chroma')}, got {self.drive!r}")
        if self.spline not in SPLINE_ALPHAS:
            bad(f"--spline must be one of {', '.join(SPLINE_ALPHAS)}, got {self.spline!r}")
        if self.dtype not in DTYPES:
            bad(f"--dtype must be one of {', '.join(DTYPES)} (or auto, resolved before), got {self.dtype!r}")
        if (self.laps is None) == (self.laps_per_minute is None):
            bad("give exactly one of --laps and --laps-per-minute")
        for name in ("laps", "laps_per_minute"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                bad(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("base_speed", "speed_gain"):
            if not getattr(self, name) >= 0:
                bad(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.class_idx is not None and self.class_idx < 0:
            bad(f"--class must be >= 0, got {self.class_idx}")
        if self.preview_res is not None and self.preview_res < 4:
            bad(f"preview_res must be >= 4, got {self.preview_res}")
        object.__setattr__(self, "stems", tuple((str(k), str(v)) for k, v in dict(self.stems).items()))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["features"] = self.features.to_dict()
        for key in ("keyframe_seeds", "size"):
            d[key] = None if d[key] is None else list(d[key])
        d["stems"] = dict(self.stems)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RenderConfig":
        d = known_fields(cls, d, "render config")
        if "features" in d:
            d["features"] = FeatureConfig.from_dict(d["features"])
        for key in ("keyframe_seeds", "size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if "stems" in d:
            d["stems"] = tuple(dict(d["stems"]).items())
        return cls(**d)
