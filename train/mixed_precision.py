"""One mixed-precision policy: f32 parameters and optimizer state, low-precision compute, f32 norm
statistics, logits and loss.

The model is built with `dtype=policy.compute_dtype` (Flax casts the f32 parameters at use and keeps
BatchNorm statistics in f32); the train step casts logits to f32 before the loss. bf16 needs no loss
scaling. fp16 adds dynamic loss scaling: the loss is multiplied by `scale` before differentiation;
a step whose gradients are not finite is skipped and the scale halves; after `period` good steps it
doubles.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

PRECISIONS = {"f32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}


@dataclass(frozen=True)
class Policy:
    name: str
    compute_dtype: jnp.dtype
    param_dtype: jnp.dtype = jnp.float32

    @property
    def loss_scaling(self) -> bool:
        return self.compute_dtype == jnp.float16


def get_policy(name: str) -> Policy:
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    return Policy(name, PRECISIONS[name])


@struct.dataclass
class DynamicLossScale:
    """Loss scale state carried in the train state (and checkpointed with it)."""

    scale: jax.Array
    good_steps: jax.Array
    period: int = struct.field(pytree_node=False, default=2000)
    factor: float = struct.field(pytree_node=False, default=2.0)
    min_scale: float = struct.field(pytree_node=False, default=1.0)

    @classmethod
    def create(cls, init_scale: float = 2.0 ** 15, period: int = 2000, factor: float = 2.0):
        return cls(jnp.asarray(init_scale, jnp.float32), jnp.zeros((), jnp.int32), period, factor)

    def scale_loss(self, loss):
        return loss * self.scale

    def unscale(self, grads):
        return jax.tree.map(lambda g: g / self.scale.astype(g.dtype), grads)

    def update(self, finite: jax.Array) -> "DynamicLossScale":
        grow = finite & (self.good_steps + 1 >= self.period)
        scale = jnp.where(finite, jnp.where(grow, self.scale * self.factor, self.scale),
                          jnp.maximum(self.scale / self.factor, self.min_scale))
        good_steps = jnp.where(finite & ~grow, self.good_steps + 1, 0)
        return self.replace(scale=scale, good_steps=good_steps)


def all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.bool_(True)
