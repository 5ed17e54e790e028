"""TrainConfig: every option of a training run, frozen and JSON-serialisable (RUN/config.json).

An option left None takes the default of the model being trained; `resolve` fills them in from
the model kind (`model_kind`: NVIDIA's `--cfg` names), the resolution and the batch. RUN/config.json
records both the options as given (`train`) and as resolved (`resolved`).

| option | stylegan2 (stylegan2-ada-pytorch, 'auto') | stylegan3-t / stylegan3-r (stylegan3's train.py) |
|---|---|---|
| g_lr, d_lr | 0.0025 both (0.002 at 1024^2 and above) | G 0.0025, D 0.002 |
| pl_weight | 2 (path-length regularisation) | 0 (not supported: NVIDIA never uses it on StyleGAN3) |
| style_mixing_prob | 0.9 | 0 |
| g_reg_interval | 4 (lazy; G's Adam corrected by 4/5) | 0: G is not regularised, its Adam uncorrected |
| blur_init_sigma, blur_fade_kimg | 0 (no blur) | R: 10 and batch * 200 / 32 (D's inputs blurred, fading out); T: 0 |
| magnitude_ema_beta | - | 0.5 ** (batch / 20000) (each layer's tracked input magnitude) |
| r1_gamma | 0.0002 * res^2 / batch | the same heuristic (stylegan3's train.py makes --gamma required) |
| ema_kimg, ema_rampup | batch * 10 / 32, 0.05 | the same |

StyleGAN3's G also updates its moving averages (w_avg and every `magnitude_ema`) only in the G
pass of the D phase, as the stylegan3 repo's loss does; StyleGAN2's in every G pass (see
`gvjax.train.step`). NVIDIA's train.py, when resuming from a pickle, also turns off the blur and
the EMA ramp-up and sets ada_kimg 100; gvjax keeps the from-scratch defaults, since `--from`
may be a freshly initialised model (set the fields to choose otherwise).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from gvjax.config import check_finite_fields, check_seed, known_fields
from gvjax.errors import GvjaxError

#: model kinds, by NVIDIA's `--cfg` names (see `model_kind`)
KINDS = ("stylegan2", "stylegan3-t", "stylegan3-r")


def model_kind(g_config: Any) -> str:
    """'stylegan2', 'stylegan3-t' or 'stylegan3-r' (R: radially symmetric filters or 1x1 convs) of a generator config."""
    from gvjax.models import family_of

    if family_of(g_config) == "stylegan2":
        return "stylegan2"
    return "stylegan3-r" if g_config.use_radial_filters or g_config.conv_kernel == 1 else "stylegan3-t"


def default_blur_fade_kimg(batch: int) -> float:
    """kimg over which stylegan3's train.py fades StyleGAN3-R's blur of D's inputs: `batch * 200 / 32`."""
    return batch * 200 / 32


def kind_defaults(kind: str, resolution: int, batch: int) -> dict[str, Any]:
    """The options a model kind sets where a TrainConfig leaves None (see the table above)."""
    if kind not in KINDS:
        raise GvjaxError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "stylegan2":
        lr = 0.002 if resolution >= 1024 else 0.0025
        return dict(g_lr=lr, d_lr=lr, pl_weight=2.0, style_mixing_prob=0.9, g_reg_interval=4,
                    blur_init_sigma=0.0, blur_fade_kimg=0.0, magnitude_ema_beta=None)
    r = kind == "stylegan3-r"
    return dict(g_lr=0.0025, d_lr=0.002, pl_weight=0.0, style_mixing_prob=0.0, g_reg_interval=0,
                blur_init_sigma=10.0 if r else 0.0, blur_fade_kimg=default_blur_fade_kimg(batch) if r else 0.0,
                magnitude_ema_beta=0.5 ** (batch / 20000))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of one training run (the data, the starting model and the run directory are given separately).

    Options that may be None take the model kind's default there (`kind_defaults`, the table above),
    unless said otherwise below.

    Attributes:
      batch: images per step (global, over all devices).
      kimg: length of the run in thousands of real images shown to D.
      seed: seeds the data order, z, noise, augmentation and a fresh D.
      g_lr, d_lr: Adam learning rates.
      betas, eps: Adam's (beta1, beta2) and epsilon.
      g_reg_interval, d_reg_interval: lazy regularisation intervals (the optimiser's lr and betas
        are corrected by `interval / (interval + 1)`); g_reg_interval 0: G is not regularised and
        its optimiser not corrected (needs pl_weight 0).
      r1_gamma: R1 weight (None: NVIDIA's heuristic 0.0002 * res^2 / batch).
      pl_weight: path-length regularisation weight (0 disables), with `pl_batch_shrink`, `pl_decay`.
      style_mixing_prob: probability of mixing two z's at a random layer.
      blur_init_sigma, blur_fade_kimg: every image D sees is blurred (before augmentation) by a
        Gaussian of sigma `blur_init_sigma * max(1 - kimg / blur_fade_kimg, 0)`, kimg the images
        shown so far (0: no blur). A blur set for a kind whose default is none fades over
        `batch * 200 / 32` kimg unless `blur_fade_kimg` is given, as StyleGAN3-R's.
      magnitude_ema_beta: decay of each StyleGAN3 layer's `magnitude_ema` in training (unused for
        StyleGAN2); the generator config's own `magnitude_ema_beta` (the source model's) is kept, not used.
      ema_kimg: half-life of G_ema in kimg (None: batch * 10 / 32); `ema_rampup` limits it to
        `rampup * images seen` early on (None: no ramp-up).
      augment: augmentations applied (each with probability p) to everything D sees:
        any of 'xflip', 'translate', 'color', 'cutout'.
      augment_p: initial augmentation probability.
      ada_target: target of r_t = E[sign(D(real))] (None: keep p fixed).
      ada_interval, ada_kimg: p is adjusted every `ada_interval` steps by
        `sign(r_t - target) * batch * ada_interval / (ada_kimg * 1000)`.
      snapshot_kimg: checkpoint interval; `keep` checkpoints are kept.
      sample_kimg: interval of the sample grids (RUN/fakes<kimg>.png).
      grid: (columns, rows) of the sample grids.
    """

    batch: int = 16
    kimg: float = 100.0
    seed: int = 0
    g_lr: float | None = None
    d_lr: float | None = None
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    g_reg_interval: int | None = None
    d_reg_interval: int = 16
    r1_gamma: float | None = None
    pl_weight: float | None = None
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing_prob: float | None = None
    blur_init_sigma: float | None = None
    blur_fade_kimg: float | None = None
    magnitude_ema_beta: float | None = None
    ema_kimg: float | None = None
    ema_rampup: float | None = 0.05
    augment: tuple[str, ...] = ("xflip", "translate", "color", "cutout")
    augment_p: float = 0.0
    ada_target: float | None = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0
    snapshot_kimg: float = 4.0
    keep: int = 3
    sample_kimg: float = 4.0
    grid: tuple[int, int] = (4, 4)

    def __post_init__(self):
        from gvjax.train.augment import AUGMENTS

        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "augment", tuple(self.augment))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        check_finite_fields(self, "train config")
        object.__setattr__(self, "seed", check_seed(self.seed, "--seed"))
        if self.batch < 1:
            raise GvjaxError(f"--batch must be >= 1, got {self.batch}")
        for name, option in (("g_lr", "--lr"), ("d_lr", "--lr"), ("ema_kimg", "--ema-kimg"), ("ema_rampup", "--ema-rampup")):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise GvjaxError(f"{option} must be > 0, got {getattr(self, name)}")
        for name, option in (("r1_gamma", "--gamma"), ("pl_weight", "--pl-weight"), ("blur_init_sigma", "blur_init_sigma"),
                             ("blur_fade_kimg", "blur_fade_kimg")):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise GvjaxError(f"{option} must be >= 0, got {getattr(self, name)}")
        if self.magnitude_ema_beta is not None and not 0 <= self.magnitude_ema_beta < 1:
            raise GvjaxError(f"magnitude_ema_beta must be in [0, 1), got {self.magnitude_ema_beta}")
        if not (all(0 <= b < 1 for b in self.betas) and len(self.betas) == 2 and self.eps > 0):
            raise GvjaxError(f"Adam needs betas in [0, 1) and eps > 0, got {self.betas}, {self.eps}")
        if self.ada_target is not None and not 0 < self.ada_target <= 1:
            raise GvjaxError(f"--ada-target must be in (0, 1], got {self.ada_target}")
        if not self.ada_kimg > 0 or self.ada_interval < 1:
            raise GvjaxError(f"--ada-kimg must be > 0 and ada_interval >= 1, got {self.ada_kimg}, {self.ada_interval}")
        mixing_ok = self.style_mixing_prob is None or 0 <= self.style_mixing_prob <= 1
        if not (0 < self.pl_decay <= 1 and mixing_ok and self.pl_batch_shrink >= 1):
            raise GvjaxError("pl_decay must be in (0, 1], style_mixing_prob in [0, 1] and pl_batch_shrink >= 1")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise GvjaxError(f"grid must be two whole numbers >= 1, got {self.grid}")
        if not self.kimg > 0:
            raise GvjaxError(f"--kimg must be > 0, got {self.kimg}")
        if self.g_reg_interval is not None and self.g_reg_interval < 0 or self.d_reg_interval < 1:
            raise GvjaxError("regularisation intervals must be >= 1 (g_reg_interval 0: G not regularised)")
        unknown = [a for a in self.augment if a not in AUGMENTS]
        if unknown:
            raise GvjaxError(f"unknown augmentation {unknown[0]!r}; expected some of {', '.join(AUGMENTS)}")
        if not 0 <= self.augment_p <= 1:
            raise GvjaxError(f"augment_p must be in [0, 1], got {self.augment_p}")
        for name in ("snapshot_kimg", "sample_kimg"):
            if not getattr(self, name) > 0:
                raise GvjaxError(f"{name} must be > 0")
        if self.keep < 1:
            raise GvjaxError(f"keep must be >= 1, got {self.keep}")

    # ----- derived -----
    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.kimg * 1000 / self.batch))

    def steps_per(self, kimg: float) -> int:
        """An interval in kimg as a whole number of steps (at least 1)."""
        return max(1, round(kimg * 1000 / self.batch))

    @property
    def blur_steps(self) -> int:
        """Steps whose D inputs are blurred (resolved config): those that start before `blur_fade_kimg`."""
        if not (self.blur_init_sigma and self.blur_fade_kimg):
            return 0
        return math.ceil(self.blur_fade_kimg * 1000 / self.batch)

    def resolve(self, resolution: int, kind: str = "stylegan2") -> "TrainConfig":
        """The config with the defaults of model kind `kind` (see `model_kind`) at `resolution` filled in.

        A GvjaxError (one line) for options the kind cannot train with.
        """
        defaults = kind_defaults(kind, resolution, self.batch)
        filled = {name: value if getattr(self, name) is None else getattr(self, name) for name, value in defaults.items()}
        if filled["blur_init_sigma"] and self.blur_fade_kimg is None:
            filled["blur_fade_kimg"] = default_blur_fade_kimg(self.batch)  # a blur asked of any kind fades as StyleGAN3-R's
        resolved = dataclasses.replace(
            self,
            **filled,
            r1_gamma=0.0002 * resolution**2 / self.batch if self.r1_gamma is None else self.r1_gamma,
            ema_kimg=self.batch * 10 / 32 if self.ema_kimg is None else self.ema_kimg,
        )
        if resolved.pl_weight and kind != "stylegan2":
            raise GvjaxError(
                f"--pl-weight {resolved.pl_weight:g}: path-length regularisation is not supported for StyleGAN3 models "
                "(NVIDIA trains them without it); use --pl-weight 0"
            )
        if resolved.pl_weight and resolved.g_reg_interval == 0:
            raise GvjaxError("path-length regularisation (--pl-weight > 0) needs g_reg_interval >= 1")
        if resolved.pl_weight and self.batch % self.pl_batch_shrink:
            raise GvjaxError(f"--batch {self.batch} must be a multiple of pl_batch_shrink {self.pl_batch_shrink}")
        return resolved

    # ----- serialisation -----
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"], d["augment"], d["grid"] = list(self.betas), list(self.augment), list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls(**known_fields(cls, d, "train config"))
