"""The training step: losses, lazy regularisation, Adam, G EMA, w_avg, magnitude EMAs and ADA, in one jitted function.

One loop for every model family: the generator comes from the family registry
(`gvjax.models.generator`), so StyleGAN2 and StyleGAN3 (T and R) train with the same step. One call
does what one iteration of NVIDIA's training loop does (training/training_loop.py,
training/loss.py), in the same order:

1. Gmain: non-saturating loss `softplus(-D(aug(G(z))))`, Adam step on G;
2. Greg (every `g_reg_interval` steps, if `pl_weight`): path-length penalty on half a batch,
   times the interval, Adam step on G;
3. Dmain: `softplus(D(aug(G(z)))) + softplus(-D(aug(x)))`, Adam step on D;
4. Dreg (every `d_reg_interval` steps): R1 `gamma / 2 * |dD(aug(x))/dx|^2`, times the interval, Adam step on D;
5. G_ema: `lerp(G, G_ema, 0.5 ** (batch / ema_nimg))`, buffers copied; ADA's p update.

Whether a step regularises, and whether it blurs what D sees, is static (the compiled step comes
in a few variants, see `train_step`).

Each phase draws its own z. G's moving averages are updated by the G passes of `EMA_PHASES`:
StyleGAN2 (stylegan2-ada-pytorch, where G in train mode tracks on every call) in Gmain, Greg and
Dmain, `w_avg = lerp(mean w, w_avg, w_avg_beta)`; StyleGAN3 (the stylegan3 repo's loss, which
passes `update_emas=True` only when D's fakes are made) in Dmain alone, `w_avg` and every layer's
`magnitude_ema = lerp(mean x², magnitude_ema, magnitude_ema_beta)` over the batch
(`gvjax.models.stylegan3.synthesize_tracking_magnitudes`). Style mixing swaps the ws after a
random layer for those of a second z. With `blur_init_sigma` (StyleGAN3-R), every image D sees
(fakes and reals, in every phase, R1 included) is blurred before augmentation by a Gaussian whose
sigma fades to 0 over `blur_fade_kimg`. Lazy regularisation uses one Adam per network, whose lr
and betas are corrected by `interval / (interval + 1)` (not for G when `g_reg_interval` is 0).

The state is a plain dict of arrays (checkpointed as is); randomness comes from
`fold_in(state['key'], step)`, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gvjax import models
from gvjax.discriminator import Discriminator, DiscriminatorConfig
from gvjax.model import modconv_for_batch
from gvjax.train.augment import ada_adjust, augment_batch, blur
from gvjax.train.config import TrainConfig, model_kind

#: PRNG of the training step: XLA's RngBitGenerator. It compiles in about half the time of
#: threefry here (27 s vs 53 s for the 32^2 test step on 2 CPU cores); its streams are
#: deterministic for a given program, which is what exact resume needs.
RNG_IMPL = "unsafe_rbg"

METRICS = ("loss_G", "loss_D", "loss_r1", "pl_penalty", "score_real", "score_fake", "augment_p", "r_t", "ema_beta")

#: family -> the phases whose G pass updates G's moving averages (see the module docstring)
EMA_PHASES = {"stylegan2": ("Gmain", "Greg", "Dmain"), "stylegan3": ("Dmain",)}


def lazy_adam(lr: float, betas: tuple[float, float], eps: float, interval: int) -> optax.GradientTransformation:
    """Adam with NVIDIA's lazy-regularisation correction: lr and betas raised by `interval / (interval + 1)`.

    `interval` 0: no lazy regularisation, plain Adam (NVIDIA's `reg_interval=None`).
    """
    ratio = interval / (interval + 1) if interval else 1.0
    return optax.adam(lr * ratio, b1=betas[0] ** ratio, b2=betas[1] ** ratio, eps=eps)


def adam_step(opt: optax.GradientTransformation, grads, opt_state, params):
    """`(params, opt_state)` after one optimiser step on `grads` (NaN/inf cleaned as NVIDIA does).

    optax raises its float betas to the int32 step count; that mixed promotion is allowed here
    even where a caller (the tests) runs JAX with strict dtype promotion.
    """
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = opt.update(nan_to_num(grads), opt_state, params)
        return optax.apply_updates(params, updates), opt_state


def nan_to_num(tree):
    """Gradients with NaN -> 0 and +-inf -> +-1e5 (as NVIDIA's training loop)."""
    return jax.tree.map(lambda g: jnp.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5), tree)


@dataclasses.dataclass(frozen=True)
class Networks:
    """The modules and options a step closes over (static)."""

    g_config: Any  # a model family's config (gvjax.models)
    d_config: DiscriminatorConfig
    train: TrainConfig  # resolved (see TrainConfig.resolve)
    modconv: str

    @property
    def family(self) -> str:
        return models.family_of(self.g_config)

    @property
    def gen(self):
        return models.generator(self.g_config, modconv=self.modconv)

    def updates_emas(self, phase: str) -> bool:
        """Whether the G pass of `phase` ('Gmain', 'Greg', 'Dmain') updates G's moving averages."""
        return phase in EMA_PHASES[self.family]

    @property
    def disc(self) -> Discriminator:
        return Discriminator(self.d_config)

    @property
    def g_opt(self) -> optax.GradientTransformation:
        t = self.train
        return lazy_adam(t.g_lr, t.betas, t.eps, t.g_reg_interval)

    @property
    def d_opt(self) -> optax.GradientTransformation:
        t = self.train
        return lazy_adam(t.d_lr, t.betas, t.eps, t.d_reg_interval)


def make_networks(g_config: Any, d_config: DiscriminatorConfig, train: TrainConfig) -> Networks:
    """The Networks of a run; `train` is resolved for the generator's kind (a GvjaxError for what it cannot train)."""
    if g_config.c_dim:
        from gvjax.errors import GvjaxError

        raise GvjaxError("training conditional (c_dim > 0) models is not supported yet")
    if d_config.img_resolution != g_config.img_resolution or d_config.c_dim != g_config.c_dim:
        from gvjax.errors import GvjaxError

        raise GvjaxError("the discriminator's resolution or labels differ from the generator's")
    resolved = train.resolve(g_config.img_resolution, model_kind(g_config))
    return Networks(g_config, d_config, resolved, modconv_for_batch(train.batch))


def init_state(nets: Networks, g: dict, g_ema: dict, d: dict, seed: int) -> dict:
    """The step-0 training state from initial variables (copied as float32 arrays); the key comes from `seed`."""
    key = jax.random.key(seed, impl=RNG_IMPL)
    t = nets.train
    as_array = lambda tree: jax.tree.map(lambda x: jnp.array(x, jnp.float32, copy=True), tree)
    g, g_ema, d = as_array(g), as_array(g_ema), as_array({"params": d["params"]})
    return {
        "step": jnp.zeros((), jnp.int32),
        "G": g,
        "G_ema": g_ema,
        "D": d,
        "G_opt": nets.g_opt.init(g["params"]),
        "D_opt": nets.d_opt.init(d["params"]),
        "augment_p": jnp.asarray(t.augment_p, jnp.float32),
        "ada_acc": jnp.zeros((2,), jnp.float32),  # sum of sign(real logits), count
        "pl_mean": jnp.zeros((), jnp.float32),
        "key": jax.random.key_data(key),
    }


# --- G and D with the training-time options ---------------------------------------------------------


def run_mapping(nets: Networks, variables: dict, z: jnp.ndarray) -> jnp.ndarray:
    """`z [N, z_dim]` -> `ws [N, num_ws, w_dim]` (no truncation)."""
    return jax.vmap(lambda z: nets.gen.apply(variables, z, method="map"))(z)


def run_mapping_mixed(nets: Networks, variables: dict, z: jnp.ndarray, key: jax.Array):
    """Mapping with style mixing: `(ws [N, num_ws, w_dim], w_mean [w_dim])`.

    With probability `style_mixing_prob` the ws from a random layer `cutoff` in [1, num_ws) on
    come from a second z (one cutoff per batch, as NVIDIA). `w_mean` is the batch mean of the
    first z's w (what updates w_avg; the second mapping does not).
    """
    t, num_ws = nets.train, nets.g_config.num_ws
    k_cut, k_prob, k_z2 = jax.random.split(key, 3)
    ws = run_mapping(nets, variables, z)
    w_mean = jnp.mean(ws[:, 0], axis=0)
    if t.style_mixing_prob > 0:
        cutoff = jax.random.randint(k_cut, (), 1, num_ws)
        cutoff = jnp.where(jax.random.uniform(k_prob, ()) < t.style_mixing_prob, cutoff, num_ws)
        ws2 = run_mapping(nets, variables, jax.random.normal(k_z2, z.shape, jnp.float32))
        ws = jnp.where(jnp.arange(num_ws)[None, :, None] < cutoff, ws, ws2)
    return ws, w_mean


def run_generator(nets: Networks, variables: dict, z: jnp.ndarray, key: jax.Array, phase: str):
    """G in train mode for `phase`: `(img [N, R, R, C], ws, buffers)` from mixed mapping and random-noise synthesis.

    `buffers`: G's buffers after the pass, with its moving averages updated if `phase` updates them
    (`Networks.updates_emas`): `w_avg`, and for StyleGAN3 every layer's `magnitude_ema`.
    """
    k_map, k_noise = jax.random.split(key)
    ws, w_mean = run_mapping_mixed(nets, variables, z, k_map)
    buffers = variables["buffers"]
    if not nets.updates_emas(phase):
        return synthesize(nets, variables, ws, k_noise), ws, buffers
    if nets.family == "stylegan3":
        from gvjax.models.stylegan3 import synthesize_tracking_magnitudes

        img, buffers = synthesize_tracking_magnitudes(nets.gen, variables, ws, nets.train.magnitude_ema_beta)
        buffers = jax.lax.stop_gradient(buffers)
    else:
        img = synthesize(nets, variables, ws, k_noise)
    return img, ws, update_w_avg(buffers, w_mean, nets.g_config.w_avg_beta)


def synthesize(nets: Networks, variables: dict, ws: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """`ws [N, num_ws, w_dim]` -> images `[N, R, R, C]` with per-example random noise."""
    keys = jax.random.split(key, ws.shape[0])
    fn = lambda w, k: nets.gen.apply(variables, w, noise_mode="random", noise_key=k, method="synthesize")
    return jax.vmap(fn)(ws, keys)


def blur_sigma(nets: Networks, step) -> jnp.ndarray:
    """Sigma of the blur D's inputs get at `step`: `blur_init_sigma * max(1 - images seen / (blur_fade_kimg * 1000), 0)`."""
    t = nets.train
    if not t.blur_steps:
        return jnp.float32(0.0)
    seen = step.astype(jnp.float32) * t.batch
    return jnp.maximum(1.0 - seen / (t.blur_fade_kimg * 1000), 0.0) * t.blur_init_sigma


def run_discriminator(nets: Networks, d_params: dict, img: jnp.ndarray, p, key: jax.Array, sigma=None) -> jnp.ndarray:
    """Blur (sigma; None: none), augment (probability p) and score `img [N, R, R, C]` -> logits `[N]`."""
    if sigma is not None:
        img = jax.vmap(lambda x: blur(x, sigma, nets.train.blur_init_sigma))(img)
    img = augment_batch(img, key, p, nets.train.augment)
    return nets.disc.apply({"params": d_params}, img)[:, 0]


def update_w_avg(buffers: dict, w_mean: jnp.ndarray, beta: float | None) -> dict:
    """`w_avg = lerp(w_mean, w_avg, beta)` (beta None: not tracked)."""
    if beta is None:
        return buffers
    w_avg = buffers["mapping"]["w_avg"]
    new = w_mean + beta * (w_avg - w_mean)
    return {**buffers, "mapping": {**buffers["mapping"], "w_avg": jax.lax.stop_gradient(new)}}


# --- phases -----------------------------------------------------------------------------------------


def g_main(nets: Networks, state: dict, key: jax.Array, sigma=None):
    """Gmain: (state, metrics) after one Adam step on G's non-saturating loss (`sigma`: D's input blur)."""
    t = nets.train
    k_z, k_g, k_d = jax.random.split(key, 3)
    z = jax.random.normal(k_z, (t.batch, nets.g_config.z_dim), jnp.float32)
    g = state["G"]

    def loss_fn(params):
        img, _, buffers = run_generator(nets, {**g, "params": params}, z, k_g, "Gmain")
        logits = run_discriminator(nets, state["D"]["params"], img, state["augment_p"], k_d, sigma)
        return jnp.mean(jax.nn.softplus(-logits)), (buffers, logits)

    (loss, (buffers, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g["params"])
    params, opt = adam_step(nets.g_opt, grads, state["G_opt"], g["params"])
    state = {**state, "G": {"params": params, "buffers": jax.lax.stop_gradient(buffers)}, "G_opt": opt}
    return state, {"loss_G": loss, "score_fake": jnp.mean(logits)}


def g_reg(nets: Networks, state: dict, key: jax.Array):
    """Greg: path-length penalty on batch / pl_batch_shrink examples, weighted by the interval."""
    t = nets.train
    k_z, k_g, k_noise = jax.random.split(key, 3)
    n = t.batch // t.pl_batch_shrink
    z = jax.random.normal(k_z, (n, nets.g_config.z_dim), jnp.float32)
    g = state["G"]
    res = nets.g_config.img_resolution
    pl_noise = jax.random.normal(k_noise, (n, res, res, nets.g_config.img_channels), jnp.float32) / math.sqrt(res * res)

    def loss_fn(params):
        variables = {**g, "params": params}
        k_map, k_synth = jax.random.split(k_g)
        ws, w_mean = run_mapping_mixed(nets, variables, z, k_map)  # (path length: StyleGAN2 only)
        pl_grads = jax.grad(lambda ws: jnp.sum(synthesize(nets, variables, ws, k_synth) * pl_noise))(ws)
        pl_lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(pl_grads), axis=2), axis=1))
        pl_mean = state["pl_mean"] + t.pl_decay * (jnp.mean(pl_lengths) - state["pl_mean"])
        penalty = jnp.square(pl_lengths - pl_mean)
        return jnp.mean(penalty * t.pl_weight) * t.g_reg_interval, (jnp.mean(penalty), pl_mean, w_mean)

    (_, (penalty, pl_mean, w_mean)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g["params"])
    params, opt = adam_step(nets.g_opt, grads, state["G_opt"], g["params"])
    buffers = update_w_avg(g["buffers"], w_mean, nets.g_config.w_avg_beta) if nets.updates_emas("Greg") else g["buffers"]
    state = {**state, "G": {"params": params, "buffers": buffers}, "G_opt": opt, "pl_mean": jax.lax.stop_gradient(pl_mean)}
    return state, penalty


def d_main(nets: Networks, state: dict, reals: jnp.ndarray, key: jax.Array, sigma=None):
    """Dmain: one Adam step on D's logistic loss (fakes from the current G, without gradient to G)."""
    t = nets.train
    k_z, k_g, k_fake, k_real = jax.random.split(key, 4)
    z = jax.random.normal(k_z, (t.batch, nets.g_config.z_dim), jnp.float32)
    fakes, _, buffers = run_generator(nets, state["G"], z, k_g, "Dmain")
    fakes = jax.lax.stop_gradient(fakes)
    p = state["augment_p"]

    def loss_fn(params):
        fake_logits = run_discriminator(nets, params, fakes, p, k_fake, sigma)
        real_logits = run_discriminator(nets, params, reals, p, k_real, sigma)
        loss = jnp.mean(jax.nn.softplus(fake_logits)) + jnp.mean(jax.nn.softplus(-real_logits))
        return loss, (fake_logits, real_logits)

    (loss, (fake_logits, real_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["D"]["params"])
    params, opt = adam_step(nets.d_opt, grads, state["D_opt"], state["D"]["params"])
    state = {**state, "D": {"params": params}, "D_opt": opt, "G": {**state["G"], "buffers": jax.lax.stop_gradient(buffers)}}
    signs = jnp.stack([jnp.sum(jnp.sign(real_logits)), jnp.float32(real_logits.shape[0])])
    return state, {"loss_D": loss, "score_real": jnp.mean(real_logits), "score_fake_D": jnp.mean(fake_logits)}, signs


def d_reg(nets: Networks, state: dict, reals: jnp.ndarray, key: jax.Array, sigma=None):
    """Dreg: R1 penalty `gamma / 2 * |grad_x D(aug(x))|^2` on the reals, weighted by the interval."""
    t = nets.train
    p = state["augment_p"]

    def loss_fn(params):
        def logits_sum(x):
            logits = run_discriminator(nets, params, x, p, key, sigma)
            return jnp.sum(logits), logits

        r1_grads, logits = jax.grad(logits_sum, has_aux=True)(reals)
        penalty = jnp.sum(jnp.square(r1_grads), axis=(1, 2, 3))
        return jnp.mean(penalty * (t.r1_gamma / 2)) * t.d_reg_interval, (jnp.mean(penalty), logits)

    (_, (penalty, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["D"]["params"])
    params, opt = adam_step(nets.d_opt, grads, state["D_opt"], state["D"]["params"])
    signs = jnp.stack([jnp.sum(jnp.sign(logits)), jnp.float32(logits.shape[0])])
    return {**state, "D": {"params": params}, "D_opt": opt}, penalty, signs


def ema_beta(nets: Networks, step) -> jnp.ndarray:
    """`0.5 ** (batch / ema_nimg)`, ema_nimg = ema_kimg * 1000, ramped up as min(., rampup * images seen)."""
    t = nets.train
    ema_nimg = jnp.float32(t.ema_kimg * 1000)
    if t.ema_rampup is not None:
        ema_nimg = jnp.minimum(ema_nimg, step.astype(jnp.float32) * t.batch * t.ema_rampup)
    return jnp.power(0.5, t.batch / jnp.maximum(ema_nimg, 1e-8))


# --- the step ---------------------------------------------------------------------------------------


def reg_flags(nets: Networks, step: int) -> tuple[bool, bool, bool]:
    """(path-length step?, R1 step?, blurred step?) of training step `step`: the static flags of `train_step`
    (lazy regularisation intervals; D's inputs are blurred during the first `blur_steps`)."""
    t = nets.train
    do_greg = t.pl_weight > 0 and step % t.g_reg_interval == 0
    return (do_greg, t.r1_gamma > 0 and step % t.d_reg_interval == 0, step < t.blur_steps)


def train_step(nets: Networks, state: dict, reals: jnp.ndarray, do_greg: bool, do_dreg: bool, do_blur: bool = False):
    """One training iteration. `reals [batch, R, R, C]` float32 in [-1, 1]. Returns `(state, metrics)`.

    `do_greg` / `do_dreg` / `do_blur` (static, from `reg_flags`) say whether this step regularises
    and blurs D's inputs. They specialise the compiled program rather than branching inside it:
    XLA:CPU runs convolutions inside a `lax.cond` branch about 10x slower (measured on R1: 0.55 s
    as its own program, 6.6 s as a cond branch), so the step compiles in a few variants (up to
    three without blur; the blurred ones only during the fade).

    metrics: scalars named in METRICS; `loss_r1` / `pl_penalty` are NaN on steps without that
    regularisation, `r_t` is NaN except on ADA update steps.
    """
    t = nets.train
    step = state["step"]
    key = jax.random.fold_in(jax.random.wrap_key_data(state["key"], impl=RNG_IMPL), step)
    k_gmain, k_greg, k_dmain, k_dreg = jax.random.split(key, 4)
    nan = jnp.float32(jnp.nan)

    sigma = blur_sigma(nets, step) if do_blur else None
    state, m_g = g_main(nets, state, k_gmain, sigma)
    pl_penalty = nan
    if do_greg:
        state, pl_penalty = g_reg(nets, state, k_greg)
    state, m_d, signs = d_main(nets, state, reals, k_dmain, sigma)
    r1 = nan
    if do_dreg:
        state, r1, reg_signs = d_reg(nets, state, reals, k_dreg, sigma)
        signs = signs + reg_signs

    beta = ema_beta(nets, step)
    g = state["G"]
    g_ema = {
        "params": jax.tree.map(lambda p, e: p + beta * (e - p), g["params"], state["G_ema"]["params"]),
        "buffers": g["buffers"],
    }

    acc = state["ada_acc"] + signs
    p, r_t = state["augment_p"], nan
    if t.ada_target is not None:
        update = (step + 1) % t.ada_interval == 0
        mean_sign = acc[0] / jnp.maximum(acc[1], 1.0)
        adjusted = ada_adjust(p, mean_sign, target=t.ada_target, batch=t.batch, interval=t.ada_interval, ada_kimg=t.ada_kimg)
        p = jnp.where(update, adjusted, p)
        r_t = jnp.where(update, mean_sign, nan)
        acc = jnp.where(update, jnp.zeros_like(acc), acc)

    state = {**state, "G_ema": g_ema, "ada_acc": acc, "augment_p": p, "step": step + 1}
    metrics = {
        "loss_G": m_g["loss_G"], "loss_D": m_d["loss_D"], "loss_r1": r1, "pl_penalty": pl_penalty,
        "score_real": m_d["score_real"], "score_fake": m_d["score_fake_D"], "augment_p": p, "r_t": r_t,
        "ema_beta": beta,
    }
    return state, metrics


class TrainStep:
    """`train_step` jitted, state donated: `step_fn(state, reals, step) -> (state, metrics)`.

    `step` (a host int, equal to `state['step']`) picks the variant (`reg_flags`). With
    `mesh`, the batch is split over its 'data' axis and the state replicated.
    """

    def __init__(self, nets: Networks, mesh: jax.sharding.Mesh | None = None):
        self.nets = nets
        fn = lambda state, reals, do_greg, do_dreg, do_blur: train_step(nets, state, reals, do_greg, do_dreg, do_blur)
        if mesh is None:
            self._jit = jax.jit(fn, static_argnums=(2, 3, 4), donate_argnums=0)
        else:
            from jax.sharding import NamedSharding, PartitionSpec

            rep, data = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
            self._jit = jax.jit(fn, static_argnums=(2, 3, 4), donate_argnums=0, in_shardings=(rep, data), out_shardings=(rep, rep))

    def __call__(self, state: dict, reals: jnp.ndarray, step: int):
        return self._jit(state, reals, *reg_flags(self.nets, step))

    def lower(self, state: dict, reals: jnp.ndarray, step: int):
        return self._jit.lower(state, reals, *reg_flags(self.nets, step))


def jit_train_step(nets: Networks, mesh: jax.sharding.Mesh | None = None) -> TrainStep:
    return TrainStep(nets, mesh)


def state_summary(state: dict) -> dict[str, Any]:
    """Host-side scalars of a state (step, augment p, pl_mean)."""
    return {"step": int(state["step"]), "augment_p": float(state["augment_p"]), "pl_mean": float(state["pl_mean"])}
