"""TrainConfig: every option of a training run, frozen and JSON-serialisable (RUN/config.json).

Defaults follow NVIDIA's stylegan2-ada-pytorch ('auto' config) where it has one; `resolve`
fills the ones it derives from the resolution and batch (learning rate, R1 gamma, EMA).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from gvjax.config import check_finite_fields, check_seed, known_fields
from gvjax.errors import GvjaxError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of one training run (the data, the starting model and the run directory are given separately).

    Attributes:
      batch: images per step (global, over all devices).
      kimg: length of the run in thousands of real images shown to D.
      seed: seeds the data order, z, noise, augmentation and a fresh D.
      g_lr, d_lr: Adam learning rates (None: NVIDIA's 0.0025, 0.002 at 1024^2 and above).
      betas, eps: Adam's (beta1, beta2) and epsilon.
      g_reg_interval, d_reg_interval: lazy regularisation intervals (the optimiser's lr and betas
        are corrected by `interval / (interval + 1)`).
      r1_gamma: R1 weight (None: NVIDIA's heuristic 0.0002 * res^2 / batch).
      pl_weight: path-length regularisation weight (0 disables), with `pl_batch_shrink`, `pl_decay`.
      style_mixing_prob: probability of mixing two z's at a random layer.
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
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    r1_gamma: float | None = None
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing_prob: float = 0.9
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
        for name, option in (("g_lr", "--lr"), ("d_lr", "--lr"), ("ema_kimg", "--ema-kimg"), ("ema_rampup", "ema_rampup")):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise GvjaxError(f"{option} must be > 0, got {getattr(self, name)}")
        for name, option in (("r1_gamma", "--gamma"), ("pl_weight", "--pl-weight")):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise GvjaxError(f"{option} must be >= 0, got {getattr(self, name)}")
        if not (all(0 <= b < 1 for b in self.betas) and len(self.betas) == 2 and self.eps > 0):
            raise GvjaxError(f"Adam needs betas in [0, 1) and eps > 0, got {self.betas}, {self.eps}")
        if self.ada_target is not None and not 0 < self.ada_target <= 1:
            raise GvjaxError(f"--ada-target must be in (0, 1], got {self.ada_target}")
        if not self.ada_kimg > 0 or self.ada_interval < 1:
            raise GvjaxError(f"--ada-kimg must be > 0 and ada_interval >= 1, got {self.ada_kimg}, {self.ada_interval}")
        if not (0 < self.pl_decay <= 1 and 0 <= self.style_mixing_prob <= 1 and self.pl_batch_shrink >= 1):
            raise GvjaxError("pl_decay must be in (0, 1], style_mixing_prob in [0, 1] and pl_batch_shrink >= 1")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise GvjaxError(f"grid must be two whole numbers >= 1, got {self.grid}")
        if not self.kimg > 0:
            raise GvjaxError(f"--kimg must be > 0, got {self.kimg}")
        if self.g_reg_interval < 1 or self.d_reg_interval < 1:
            raise GvjaxError("regularisation intervals must be >= 1")
        if self.pl_weight and self.batch % self.pl_batch_shrink:
            raise GvjaxError(f"--batch {self.batch} must be a multiple of pl_batch_shrink {self.pl_batch_shrink}")
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

    def resolve(self, resolution: int) -> "TrainConfig":
        """The config with NVIDIA's resolution- and batch-dependent defaults filled in."""
        lr = 0.002 if resolution >= 1024 else 0.0025
        return dataclasses.replace(
            self,
            g_lr=lr if self.g_lr is None else self.g_lr,
            d_lr=lr if self.d_lr is None else self.d_lr,
            r1_gamma=0.0002 * resolution**2 / self.batch if self.r1_gamma is None else self.r1_gamma,
            ema_kimg=self.batch * 10 / 32 if self.ema_kimg is None else self.ema_kimg,
        )

    # ----- serialisation -----
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"], d["augment"], d["grid"] = list(self.betas), list(self.augment), list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls(**known_fields(cls, d, "train config"))
