"""Timelines: sections of travel and feature warps, read from TOML, turned into per-frame plans.

    crossfade = 2.0                 # seconds, between consecutive sections (default 0)

    [[section]]
    start = 0.0                     # seconds in the song; `end` defaults to the next start / the end
    seeds = [1, 2, 3, 4]            # keyframes (or: keyframes = 6 with seed = 0)
    laps = 1.0                      # or laps_per_minute = 4
    drive = "rms"
    base_speed = 0.3
    speed_gain = 1.0

    [[section.warp]]
    type = "slitscan"               # slitscan strips rotate zoom translate flip mirror wave channels;
                                    # camera (StyleGAN3: moves the Fourier input; no resolution/layer)
    resolution = 32                 # StyleGAN2 block resolution after which synthesis is cut
                                    # (or layer = "L5": a StyleGAN3 layer, or a StyleGAN2 block "b32")
    feature = "onset"               # the audio feature driving its strength
    gain = 1.0                      # strength = clip(offset + gain * feature, 0, 1) (smoothed)
    offset = 0.0
    smoothing = [0.01, 0.3]         # attack, release in seconds
    boundary = "reflect"            # reflect, wrap or zero
    delay = 12                      # warp parameters (see gvjax.warps.WARP_PARAMS)

Warps that are identical across sections share one slot; the render step carries the
union of all slots, so it compiles once per keyframe layout, not per section or batch.
Cross-fades blend the ws of the two sections and fade warp strengths out and in.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tomllib
from typing import Any

import numpy as np

from gvjax.audio import FEATURES, AudioFeatures, smooth_envelope
from gvjax.config import SEED_LIMIT
from gvjax.errors import GvjaxError
from gvjax.spline import advance_times
from gvjax.warps import ALL_WARP_PARAMS, INPUT_WARP_PARAMS, WarpSpec

PRESETS = pathlib.Path(__file__).parent / "presets"
SECTION_KEYS = {"start", "end", "seeds", "keyframes", "seed", "laps", "laps_per_minute", "drive", "base_speed", "speed_gain", "warp", "truncation_psi", "class"}
WARP_KEYS = {"type", "resolution", "layer", "feature", "gain", "offset", "smoothing", "boundary"}
DRIVES = tuple(f for f in FEATURES if f != "chroma")


@dataclasses.dataclass(frozen=True)
class WarpUse:
    """A warp in a section: its spec and how audio drives its strength."""

    spec: WarpSpec
    feature: str = "rms"
    gain: float = 1.0
    offset: float = 0.0
    smoothing: tuple[float, float] = (0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Section:
    """A stretch of the song with its own travel and warps (times in seconds of the song)."""

    start: float
    end: float | None = None  # warps stop here; travel continues until the next section
    seeds: tuple[int, ...] | None = None
    keyframes: int = 6
    seed: int = 0
    truncation_psi: float = 0.7
    laps: float | None = 1.0
    laps_per_minute: float | None = None
    drive: str = "rms"
    base_speed: float = 0.3
    speed_gain: float = 1.0
    warps: tuple[WarpUse, ...] = ()
    class_idx: int | None = None  # the class of a conditional model (TOML key `class`)

    def keyframe_seeds(self) -> tuple[int, ...]:
        if self.seeds is not None:
            return self.seeds
        return tuple(int(s) for s in np.random.RandomState(self.seed).randint(0, 2**31 - 1, self.keyframes))


@dataclasses.dataclass(frozen=True)
class Timeline:
    sections: tuple[Section, ...]
    crossfade: float = 0.0

    @property
    def slots(self) -> tuple[WarpSpec, ...]:
        """The union of all warps (identical specs share a slot), in first-use order."""
        seen: list[WarpSpec] = []
        for section in self.sections:
            for use in section.warps:
                if use.spec not in seen:
                    seen.append(use.spec)
        return tuple(seen)


def _check_keys(table: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise GvjaxError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _number(value, where, key, *, positive=False, nonneg=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GvjaxError(f"{where}: {key} must be a number, got {value!r}")
    if positive and value <= 0:
        raise GvjaxError(f"{where}: {key} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise GvjaxError(f"{where}: {key} must be >= 0, got {value!r}")
    return float(value)


def _integer(value, where, key, *, low=None, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) or (high is not None and value >= high):
        rng = f" in [{low}, {high})" if high is not None else (f" >= {low}" if low is not None else "")
        raise GvjaxError(f"{where}: {key} must be a whole number{rng}, got {value!r}")
    return value


def _seed(value, where, key="seed") -> int:
    return _integer(value, where, key, low=0, high=SEED_LIMIT)


def _feature(value, where, key="feature") -> str:
    if value not in DRIVES:
        raise GvjaxError(f"{where}: unknown {key} {value!r}; expected one of {', '.join(DRIVES)}")
    return value


def _warp(table: dict, where: str) -> WarpUse:
    if "type" not in table:
        raise GvjaxError(f"{where}: a warp needs a type ({', '.join(ALL_WARP_PARAMS)})")
    kind = table["type"]
    if kind not in ALL_WARP_PARAMS:
        raise GvjaxError(f"{where}: unknown warp type {kind!r}; expected one of {', '.join(ALL_WARP_PARAMS)}")
    if kind in INPUT_WARP_PARAMS:
        _check_keys(table, WARP_KEYS - {"resolution", "layer", "boundary"} | set(ALL_WARP_PARAMS[kind]), where)
    else:
        _check_keys(table, WARP_KEYS | set(ALL_WARP_PARAMS[kind]), where)
        if ("resolution" in table) == ("layer" in table):
            raise GvjaxError(f"{where}: a warp needs a layer (e.g. \"L5\" on StyleGAN3, \"b32\" on StyleGAN2) or a resolution (e.g. 16 or 32), one of them")
    layer = table.get("layer")
    if layer is not None and not (isinstance(layer, str) or (isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0)):
        raise GvjaxError(f"{where}: layer must be a layer name such as \"L5\" or a stage index >= 0, got {layer!r}")
    params = {k: v for k, v in table.items() if k in ALL_WARP_PARAMS[kind]}
    default_boundary = "wrap" if kind == "strips" else "reflect"
    try:
        resolution = _integer(table["resolution"], where, "resolution", low=1) if "resolution" in table else None
        spec = WarpSpec.make(kind, resolution, table.get("boundary", default_boundary), layer=layer, **params)
    except GvjaxError as e:
        raise GvjaxError(f"{where}: {e}") from None
    smoothing = table.get("smoothing", [0.0, 0.0])
    if not isinstance(smoothing, list) or len(smoothing) != 2:
        raise GvjaxError(f"{where}: smoothing must be [attack, release] in seconds")
    return WarpUse(
        spec,
        _feature(table.get("feature", "rms"), where),
        _number(table.get("gain", 1.0), where, "gain"),
        _number(table.get("offset", 0.0), where, "offset"),
        tuple(_number(v, where, "smoothing", nonneg=True) for v in smoothing),
    )


def parse_timeline(data: dict[str, Any]) -> Timeline:
    """Timeline from parsed TOML; every problem names the section/warp and key."""
    _check_keys(data, {"crossfade", "section"}, "timeline")
    raw_sections = data.get("section")
    if not isinstance(raw_sections, list) or not raw_sections:
        raise GvjaxError("timeline: needs at least one [[section]]")
    sections = []
    for i, t in enumerate(raw_sections):
        where = f"section {i + 1}"
        _check_keys(t, SECTION_KEYS, where)
        warps = tuple(_warp(w, f"{where}, warp {j + 1}") for j, w in enumerate(t.get("warp", [])))
        laps, lpm = t.get("laps"), t.get("laps_per_minute")
        if laps is None and lpm is None:
            laps = 1.0
        seeds = t.get("seeds")
        if seeds is not None:
            if not isinstance(seeds, list) or not seeds:
                raise GvjaxError(f"{where}: seeds must be a non-empty list of integers")
            seeds = [_seed(s, where, "each of seeds") for s in seeds]
        sections.append(Section(
            start=_number(t.get("start", 0.0 if i == 0 else None), where, "start", nonneg=True) if "start" in t or i == 0 else _missing(where, "start"),
            end=None if t.get("end") is None else _number(t["end"], where, "end", positive=True),
            seeds=None if seeds is None else tuple(seeds),
            keyframes=_integer(t.get("keyframes", 6), where, "keyframes", low=1, high=10_000),
            seed=_seed(t.get("seed", i), where),
            truncation_psi=_number(t.get("truncation_psi", 0.7), where, "truncation_psi"),
            laps=None if laps is None else _number(laps, where, "laps", positive=True),
            laps_per_minute=None if lpm is None else _number(lpm, where, "laps_per_minute", positive=True),
            drive=_feature(t.get("drive", "rms"), where, "drive"),
            base_speed=_number(t.get("base_speed", 0.3), where, "base_speed", nonneg=True),
            speed_gain=_number(t.get("speed_gain", 1.0), where, "speed_gain", nonneg=True),
            warps=warps,
            class_idx=None if t.get("class") is None else _integer(t["class"], where, "class", low=0),
        ))
        if sections[-1].laps is not None and sections[-1].laps_per_minute is not None:
            raise GvjaxError(f"{where}: give laps or laps_per_minute, not both")
    for i, sec in enumerate(sections):
        if sec.end is not None and sec.end <= sec.start:
            raise GvjaxError(f"section {i + 1}: end ({sec.end}) must be after start ({sec.start})")
    for a, b in zip(sections, sections[1:]):
        if b.start <= a.start:
            raise GvjaxError(f"timeline: sections must start in increasing order ({a.start} then {b.start})")
    return Timeline(tuple(sections), _number(data.get("crossfade", 0.0), "timeline", "crossfade", nonneg=True))


def _missing(where, key):
    raise GvjaxError(f"{where}: {key} is required")


def read_timeline_source(spec: str | pathlib.Path) -> tuple[str, str]:
    """(name, TOML text) of a timeline file, or of a preset from render/presets/ by name."""
    path = pathlib.Path(spec)
    if not path.exists() and (PRESETS / f"{path.name}.toml").exists():
        path = PRESETS / f"{path.name}.toml"
    try:
        return str(spec), path.read_text()
    except FileNotFoundError:
        raise GvjaxError(f"no such timeline: {path} (presets: {', '.join(sorted(p.stem for p in PRESETS.glob('*.toml')))})") from None
    except IsADirectoryError:
        raise GvjaxError(f"timeline {path} is a directory") from None
    except UnicodeDecodeError:
        raise GvjaxError(f"{path}: not a text (TOML) file") from None


def parse_timeline_text(name: str, text: str) -> Timeline:
    """Timeline from TOML text; errors name `name` and the section/warp and key."""
    try:
        return parse_timeline(tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise GvjaxError(f"{name}: {e}") from None
    except GvjaxError as e:
        raise GvjaxError(f"{name}: {e}") from None


def load_timeline(path: str | pathlib.Path) -> Timeline:
    """Read a timeline TOML file (or a preset name from render/presets/)."""
    return parse_timeline_text(*read_timeline_source(path))


@dataclasses.dataclass(frozen=True)
class FramePlan:
    """Per-frame inputs of the render step, for the whole rendered range.

    `section_a/section_b [F]`: the sections blended at each frame (equal outside cross-fades);
    `t_a/t_b [F]` their spline positions in [0, 1); `fade [F]` the weight of section b;
    `strengths [F, K]` one per warp slot.
    """

    section_a: np.ndarray
    t_a: np.ndarray
    section_b: np.ndarray
    t_b: np.ndarray
    fade: np.ndarray
    strengths: np.ndarray

    def segments(self) -> list[tuple[int, int]]:
        """Runs of frames with the same (section_a, section_b): batches never straddle them."""
        pair = self.section_a * 100003 + self.section_b
        cuts = [0] + [int(i) + 1 for i in np.flatnonzero(pair[1:] != pair[:-1])] + [len(pair)]
        return list(zip(cuts[:-1], cuts[1:]))


def plan_frames(timeline: Timeline, features: AudioFeatures, *, fps: float, start: float) -> FramePlan:
    """Assign frames (frame f at song time `start + f / fps`) to sections, travel and warp strengths."""
    n = features.n_frames
    times = start + np.arange(n) / fps
    sections = timeline.sections
    starts = np.array([s.start for s in sections])
    ends = np.array([s.end if s.end is not None else np.inf for s in sections])
    current = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(sections) - 1)
    xf = timeline.crossfade
    section_a, section_b = current.copy(), current.copy()
    fade = np.zeros(n)
    if xf > 0:
        since = times - starts[current]
        in_fade = (current > 0) & (since < xf)
        section_a[in_fade] = current[in_fade] - 1
        fade[in_fade] = since[in_fade] / xf
        fade[~in_fade] = 1.0
        fade = np.where(in_fade, fade, 0.0)
    t_a, t_b = np.zeros(n), np.zeros(n)
    for i, sec in enumerate(sections):
        frames = np.flatnonzero((section_a == i) | (section_b == i))
        if frames.size == 0:
            continue
        t = advance_times(features[sec.drive][frames], base_speed=sec.base_speed, gain=sec.speed_gain,
                          laps=sec.laps, laps_per_minute=sec.laps_per_minute, fps=fps)
        t_a[frames] = np.where(section_a[frames] == i, t, t_a[frames])
        t_b[frames] = np.where(section_b[frames] == i, t, t_b[frames])
    # plain frames use b == a with fade 0: keep t_b == t_a there
    plain = section_a == section_b
    t_b[plain] = t_a[plain]
    # strengths: each section's envelope (1 inside, fading out/in over cross-fades) x audio drive
    slots = timeline.slots
    strengths = np.zeros((n, len(slots)))
    for i, sec in enumerate(sections):
        env = np.where(section_b == i, np.where(section_a == i, 1.0, fade), 0.0)
        env = env + np.where((section_a == i) & (section_b != i), 1.0 - fade, 0.0)
        env = np.where(times < ends[i], env, 0.0)  # past its `end`, a section keeps travelling, unwarped
        for use in sec.warps:
            drive = smooth_envelope(features[use.feature], fps, *use.smoothing) if any(use.smoothing) else features[use.feature]
            strengths[:, slots.index(use.spec)] += env * np.clip(use.offset + use.gain * drive, 0.0, 1.0)
    return FramePlan(section_a, t_a, section_b, t_b, fade, strengths.astype(np.float32))
