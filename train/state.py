"""The train state as one explicit pytree (functional NNX).

We split the NNX model once into a static graph definition and state (`nnx.split`) and train with a
pure `jax.jit` step over that state, instead of `nnx.Optimizer` + `nnx.jit`: every array the run
owns (parameters, BatchNorm statistics, the model's RNG streams, optimizer state, EMA, loss scale,
step, RNG) sits in one pytree, so sharding it (`jax.jit` in/out shardings), donating it and
checkpointing it (orbax) are single explicit operations, and there is no per-step Python graph
traversal. The model is rebuilt inside the step with `nnx.merge`.

The model's parts are held as pure dicts of arrays (`nnx.to_pure_dict`), not as `nnx.State`s
of Variable objects: a jitted call rebuilds every output leaf's pytree node in Python, and a Variable
costs ~25 us to build where a dict entry costs nothing; with the ~1,450 leaves of a ConvFirst-T
state (parameters, Adam moments, EMA) that was most of a training step's host time (a host trace,
`bench_train_step.py --host_trace`; run ZD, benchmarks/results/train_step_h200). `nnx.merge` takes the pure dicts as they are.
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
    params: dict  # nnx.Param values (pure dict, see the module docstring), f32
    batch_stats: dict  # nnx.BatchStat running statistics, f32
    rest: dict  # everything else the model holds, e.g. its dropout/drop-path RNG streams
    opt_state: optax.OptState
    ema_params: dict | None
    loss_scale: DynamicLossScale | None
    rng: jax.Array  # raw key data for data mixing; folded with `step` each step


def split_state(model: nnx.Module) -> tuple[Any, dict, dict, dict]:
    """(graph definition, params, batch_stats, rest), the three parts as pure dicts of arrays."""
    graphdef, *parts = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return graphdef, *(nnx.to_pure_dict(part) for part in parts)


def split_model(model: nnx.Module) -> tuple[ModelDef, dict, dict, dict]:
    """Graph definitions for both modes plus (params, batch_stats, rest); leaves the model in train mode."""
    model.eval()
    eval_def, *_ = split_state(model)
    model.train()
    train_def, params, batch_stats, rest = split_state(model)
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


def param_count(params: dict) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
