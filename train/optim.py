"""Optimizers, learning-rate schedules and the weight EMA, built from optax primitives.

Weight decay skips biases and norm scales (every parameter with ndim <= 1), as in the ConvNeXt and
timm recipes. `mu_dtype='bfloat16'` stores the first moment (momentum) in bf16 to halve its memory;
everything else in the optimizer state stays f32. The elementwise optimizers run on FlatParams (two
flat vectors, train.state), LAMB on one leaf per parameter (its trust ratio is per parameter).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from train.state import FlatParams, weight_decayed

OPTIMIZERS = ("adamw", "lamb", "sgd", "rmsprop")
SCHEDULES = ("cosine", "exponential", "constant")
MU_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def make_schedule(name: str, *, lr: float, total_steps: int, warmup_steps: int = 0, warmup_init_lr: float = 0.0,
                  end_lr: float = 0.0, decay_every: int = 0, decay_rate: float = 1.0) -> optax.Schedule:
    """Linear warm-up from `warmup_init_lr` to `lr`, then:
    'cosine' to `end_lr` at `total_steps`; 'exponential': x`decay_rate` every `decay_every` steps
    (staircase, floored at `end_lr`; EfficientNet's 0.97 every 2.4 epochs); 'constant'."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    if not 0 <= warmup_steps < max(total_steps, 1):
        raise ValueError(f"warmup_steps={warmup_steps} must be in [0, total_steps={total_steps})")
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(warmup_init_lr, lr, warmup_steps, total_steps, end_lr)
    if name == "exponential":
        if decay_every <= 0:
            raise ValueError("the exponential schedule needs decay_every > 0 steps")
        after = optax.exponential_decay(lr, decay_every, decay_rate, staircase=True, end_value=end_lr or None)
    else:
        after = optax.constant_schedule(lr)
    warmup = optax.linear_schedule(warmup_init_lr, lr, warmup_steps)
    return optax.join_schedules([warmup, after], [warmup_steps])


ELEMENTWISE = ("adamw", "sgd", "rmsprop")  # the update of an element depends on that element only


def decay_mask(params):
    """True where weight decay applies (train.state.weight_decayed; FlatParams: its decayed vector)."""
    if isinstance(params, FlatParams):
        return FlatParams(decay=True, no_decay=False)
    return jax.tree.map(weight_decayed, params)


def per_parameter_only(name: str, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx`, refusing FlatParams at init: its update needs one leaf per parameter (same state as tx)."""
    def init(params):
        if isinstance(params, FlatParams):
            raise ValueError(f"optimizer {name!r} is not elementwise (valid with flat parameters: "
                             f"{', '.join(ELEMENTWISE)}): create the state with "
                             "create_train_state(..., flat_params=False)")
        return tx.init(params)
    return optax.GradientTransformation(init, tx.update)


def make_optimizer(name: str, learning_rate: optax.ScalarOrSchedule, *, weight_decay: float = 0.0,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, momentum: float = 0.9,
                   nesterov: bool = False, rms_decay: float = 0.9, mu_dtype: str = "float32",
                   grad_clip: float = 0.0) -> optax.GradientTransformation:
    """'adamw' (decoupled decay), 'lamb' (layer-wise trust ratio), 'sgd' (momentum, coupled L2 as in
    PyTorch), 'rmsprop' (TensorFlow style: accumulator starts at 1, eps inside the sqrt, momentum
    after the learning rate, coupled L2; the EfficientNet recipe). `grad_clip` > 0 clips the global norm."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if mu_dtype not in MU_DTYPES:
        raise ValueError(f"unknown mu_dtype {mu_dtype!r}; valid: {', '.join(MU_DTYPES)}")
    mu = MU_DTYPES[mu_dtype]
    if name == "adamw":
        tx = optax.adamw(learning_rate, b1, b2, eps, weight_decay=weight_decay, mask=decay_mask, mu_dtype=mu)
    elif name == "lamb":
        tx = per_parameter_only(name, optax.chain(optax.scale_by_adam(b1, b2, eps, mu_dtype=mu),
                                                  optax.add_decayed_weights(weight_decay, decay_mask),
                                                  optax.scale_by_trust_ratio(),
                                                  optax.scale_by_learning_rate(learning_rate)))
    elif name == "sgd":
        tx = optax.chain(optax.add_decayed_weights(weight_decay, decay_mask),
                         optax.sgd(learning_rate, momentum or None, nesterov, accumulator_dtype=mu))
    else:
        tx = optax.chain(optax.add_decayed_weights(weight_decay, decay_mask),
                         optax.scale_by_rms(rms_decay, eps, initial_scale=1.0, eps_in_sqrt=True),
                         optax.scale_by_learning_rate(learning_rate),
                         optax.trace(momentum, nesterov, accumulator_dtype=mu))
    if grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return tx


def ema_update(ema, params, decay: float):
    """Exponential moving average of the weights (evaluated alongside the raw weights)."""
    return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p - e), ema, params)
