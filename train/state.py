"""The train state as one explicit pytree (functional NNX).

We split the NNX model once into a static graph definition and state (`nnx.split`) and train with a
pure `jax.jit` step over that state, instead of `nnx.Optimizer` + `nnx.jit`: every array the run
owns (parameters, BatchNorm statistics, the model's RNG streams, optimizer state, EMA, loss scale,
step, RNG) sits in one pytree, so sharding it (`jax.jit` in/out shardings), donating it and
checkpointing it (orbax) are single explicit operations, and there is no per-step Python graph
traversal. The model is rebuilt inside the step with `nnx.merge`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from train.mixed_precision import DynamicLossScale


@dataclass(frozen=True)
class ModelDef:
    """Static graph definitions of one model in training and in evaluation mode (BatchNorm batch vs
    running statistics, dropout and drop-path on vs off)."""

    train: Any
    eval: Any


@struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State  # nnx.Param variables, f32
    batch_stats: nnx.State  # nnx.BatchStat running statistics, f32
    rest: nnx.State  # everything else the model holds, e.g. its dropout/drop-path RNG streams
    opt_state: optax.OptState
    ema_params: nnx.State | None
    loss_scale: DynamicLossScale | None
    rng: jax.Array  # raw key data for data mixing; folded with `step` each step


def split_model(model: nnx.Module) -> tuple[ModelDef, nnx.State, nnx.State, nnx.State]:
    """Graph definitions for both modes plus (params, batch_stats, rest); leaves the model in train mode."""
    model.eval()
    eval_def, *_ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    model.train()
    train_def, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return ModelDef(train_def, eval_def), params, batch_stats, rest


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, *, seed: int = 0,
                       ema: bool = False, loss_scale: DynamicLossScale | None = None
                       ) -> tuple[ModelDef, TrainState]:
    model_def, params, batch_stats, rest = split_model(model)
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, rest=rest,
        opt_state=tx.init(params), ema_params=jax.tree.map(jnp.copy, params) if ema else None,
        loss_scale=loss_scale, rng=jax.random.key_data(jax.random.key(seed)))
    return model_def, state


def param_count(params: nnx.State) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
