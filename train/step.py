"""The pure train and eval steps (no data, config or checkpoint libraries: the GPU benchmark imports
this module directly).

Batches arrive as uint8 NHWC images and int labels; normalization, label smoothing and mixup/cutmix
run on the device inside the step, so the host ships 1 byte per pixel and the augmentation RNG is a
function of (seed, step) only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from train.mixed_precision import Policy, all_finite
from train.optim import ema_update
from train.state import ModelDef, TrainState, split_state


@dataclass(frozen=True)
class StepSettings:
    num_classes: int
    mean: Sequence[float]  # per-channel, on the 0..255 pixel scale
    std: Sequence[float]
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # probability that a batch is mixed at all
    switch_prob: float = 0.5  # probability of cutmix instead of mixup when both are enabled
    ema_decay: float = 0.0  # 0 disables the EMA


def normalize(images: jax.Array, mean, std, dtype) -> jax.Array:
    x = images.astype(jnp.float32)
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def sample_beta(key: jax.Array, alpha: jax.Array, candidates: int = 16) -> jax.Array:
    """One Beta(alpha, alpha) sample without a while loop (jax.random.beta rejection-samples in one).

    A while loop in the step makes the GPU runtime copy its predicate to the host every iteration, so
    the host waits for all queued work before it can launch the rest of the step and cannot run ahead.
    Here each Gamma is Marsaglia-Tsang over a fixed number of candidates (first accepted wins; each is
    accepted with probability > 0.95, so all 16 are rejected with probability < 1e-20) for shape
    alpha + 1, boosted to alpha by U**(1/alpha); Beta = Ga / (Ga + Gb), in log space for tiny alpha.
    """
    def log_gamma(k):
        k_norm, k_unif, k_boost = jax.random.split(k, 3)
        d = alpha + 1.0 - 1.0 / 3.0
        c = 1.0 / jnp.sqrt(9.0 * d)
        x = jax.random.normal(k_norm, (candidates,))
        v = (1.0 + c * x) ** 3
        log_v = jnp.log(jnp.where(v > 0, v, 1.0))
        u = jax.random.uniform(k_unif, (candidates,), minval=jnp.finfo(jnp.float32).tiny)
        accepted = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        boost = jax.random.uniform(k_boost, minval=jnp.finfo(jnp.float32).tiny)
        return jnp.log(d) + log_v[jnp.argmax(accepted)] + jnp.log(boost) / alpha

    k_a, k_b = jax.random.split(key)
    return jax.nn.sigmoid(log_gamma(k_a) - log_gamma(k_b))


def mix(rng: jax.Array, images: jax.Array, targets: jax.Array, s: StepSettings) -> tuple[jax.Array, jax.Array]:
    """timm-style batch mixing: each batch is paired with its reverse; one lambda per batch."""
    k_apply, k_switch, k_lam, k_box = jax.random.split(rng, 4)
    use_cutmix = (s.cutmix_alpha > 0) & ((s.mixup_alpha <= 0) | (jax.random.uniform(k_switch) < s.switch_prob))
    alpha = jnp.where(use_cutmix, max(s.cutmix_alpha, 1e-6), max(s.mixup_alpha, 1e-6))
    lam = sample_beta(k_lam, alpha)
    lam = jnp.where(jax.random.uniform(k_apply) < s.mix_prob, lam, 1.0)
    flipped = images[::-1]
    # cutmix: a box covering (1 - lam) of the image, clipped at the border; lam becomes the kept area.
    _, h, w, _ = images.shape
    cy, cx = jax.random.uniform(k_box, (2,)) * jnp.array([h, w])
    ch, cw = jnp.sqrt(1.0 - lam) * h, jnp.sqrt(1.0 - lam) * w
    y0, y1 = jnp.clip(jnp.round(cy - ch / 2), 0, h), jnp.clip(jnp.round(cy + ch / 2), 0, h)
    x0, x1 = jnp.clip(jnp.round(cx - cw / 2), 0, w), jnp.clip(jnp.round(cx + cw / 2), 0, w)
    ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
    cut_lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    mixed = jnp.where(use_cutmix, jnp.where(box[None, :, :, None], flipped, images),
                      (lam * images + (1 - lam) * flipped).astype(images.dtype))
    lam = jnp.where(use_cutmix, cut_lam, lam)
    return mixed, lam * targets + (1 - lam) * targets[::-1]


def make_train_step(model_def: ModelDef, tx: optax.GradientTransformation, schedule: Callable,
                    policy: Policy, settings: StepSettings) -> Callable:
    """step(state, batch) -> (state, metrics); pure, to be wrapped in `jax.jit` by the caller."""
    s = settings
    mixing = s.mixup_alpha > 0 or s.cutmix_alpha > 0

    def loss_fn(params, batch_stats, rest, images, targets, loss_scale):
        # copy=True: fresh Variables in this trace; batch_stats/rest come from the enclosing jit trace and
        # BatchNorm/RNG updates must not mutate them across trace levels.
        model = nnx.merge(model_def.train, params, batch_stats, rest, copy=True)
        logits = model(images).astype(jnp.float32)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        _, _, batch_stats, rest = split_state(model)
        scaled = loss_scale.scale_loss(loss) if loss_scale is not None else loss
        return scaled, (loss, logits, batch_stats, rest)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        images = normalize(batch["image"], s.mean, s.std, policy.compute_dtype)
        labels = batch["label"]
        targets = optax.smooth_labels(jax.nn.one_hot(labels, s.num_classes), s.label_smoothing)
        if mixing:
            rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
            images, targets = mix(rng, images, targets, s)
        grads, (loss, logits, batch_stats, rest) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, state.rest, images, targets, state.loss_scale)
        layout = model_def.layout  # the optimizer, gradient norm and EMA run on a few flat vectors
        grads, old = layout.flatten(grads), layout.flatten(state.params)
        metrics = {}
        loss_scale = state.loss_scale
        if loss_scale is not None:
            grads = loss_scale.unscale(grads)
            finite = all_finite(grads)
            loss_scale = loss_scale.update(finite)
            metrics.update(loss_scale=loss_scale.scale, skipped=(~finite).astype(jnp.float32))
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, old)
        new = optax.apply_updates(old, updates)
        if loss_scale is not None:  # skip the whole step when fp16 gradients overflowed
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
            new, opt_state, batch_stats = (keep(new, old), keep(opt_state, state.opt_state),
                                           keep(batch_stats, state.batch_stats))
        ema = ema_update(state.ema_params, new, s.ema_decay) if state.ema_params is not None else None
        params = layout.unflatten(new)
        metrics.update(loss=loss, accuracy=jnp.mean(jnp.argmax(logits, -1) == labels),
                       grad_norm=grad_norm, learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, rest=rest,
                                  opt_state=opt_state, ema_params=ema, loss_scale=loss_scale)
        return new_state, metrics

    return step


def make_eval_step(model_def: ModelDef, policy: Policy, settings: StepSettings) -> Callable:
    """eval_step(params, batch_stats, rest, batch) -> sums of loss/correct/count over `batch['mask']`."""
    s = settings

    def eval_step(params, batch_stats, rest, batch):
        model = nnx.merge(model_def.eval, params, batch_stats, rest)
        logits = model(normalize(batch["image"], s.mean, s.std, policy.compute_dtype)).astype(jnp.float32)
        mask = batch["mask"].astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        return {"loss": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask), "count": jnp.sum(mask)}

    return eval_step
