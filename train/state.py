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

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from train.mixed_precision import DynamicLossScale


def weight_decayed(p) -> bool:
    """Weight decay applies to kernels (ndim > 1), not to biases or norm scales/offsets (the ConvNeXt
    and timm recipes): the optimizer's mask and FlatParams' grouping."""
    return p.ndim > 1


@jax.tree_util.register_dataclass
@dataclass
class FlatParams:
    """All parameters as two f32 vectors, the ones weight decay applies to (kernels) and the others
    (biases, norm scales). The optimizer state, its update, the gradient norm and the EMA work on
    these: per-parameter leaves made XLA launch a few small kernels per parameter and operation
    (ConvFirst-T: ~470 kernels, 5.6 of a 21 ms step for optimizer and EMA, run ZN)."""

    decay: jax.Array
    no_decay: jax.Array


@dataclass(frozen=True)
class ParamLayout:
    """Where each parameter lives in FlatParams (static): flatten/unflatten between the model's
    parameter dict and the flat vectors; `flat=False` keeps the dict (optimizers that are not
    elementwise, e.g. LAMB's per-parameter trust ratio)."""

    treedef: Any
    shapes: tuple
    decayed: tuple  # per leaf: weight_decayed
    flat: bool = True

    @classmethod
    def of(cls, params: dict, flat: bool = True) -> "ParamLayout":
        leaves, treedef = jax.tree.flatten(params)
        if flat and any(x.dtype != jnp.float32 for x in leaves):
            raise ValueError("flat parameters need float32 master weights; got "
                             f"{sorted({str(x.dtype) for x in leaves})}")
        return cls(treedef, tuple(x.shape for x in leaves), tuple(map(weight_decayed, leaves)), flat)

    def flatten(self, tree: dict):
        if not self.flat:
            return tree
        leaves = self.treedef.flatten_up_to(tree)
        group = lambda decayed: jnp.concatenate(
            [x.reshape(-1) for x, d in zip(leaves, self.decayed) if d == decayed] or [jnp.zeros((0,), jnp.float32)])
        return FlatParams(decay=group(True), no_decay=group(False))

    def unflatten(self, flat) -> dict:
        if not self.flat:
            return flat
        offsets, leaves = {True: 0, False: 0}, []
        for shape, d in zip(self.shapes, self.decayed):
            size, vector = math.prod(shape), flat.decay if d else flat.no_decay
            leaves.append(vector[offsets[d]:offsets[d] + size].reshape(shape))
            offsets[d] += size
        return self.treedef.unflatten(leaves)


@dataclass(frozen=True)
class ModelDef:
    """Static graph definitions of one model in training and in evaluation mode (BatchNorm batch vs
    running statistics, dropout and drop-path on vs off), and the parameters' layout for the optimizer."""

    train: Any
    eval: Any
    layout: ParamLayout


@struct.dataclass
class TrainState:
    step: jax.Array
    params: dict  # nnx.Param values (pure dict, see the module docstring), f32
    batch_stats: dict  # nnx.BatchStat running statistics, f32
    rest: dict  # everything else the model holds, e.g. its dropout/drop-path RNG streams
    opt_state: optax.OptState  # over model_def.layout.flatten(params)
    ema_params: Any  # FlatParams (or the dict when the layout is not flat) or None; layout.unflatten: a dict
    loss_scale: DynamicLossScale | None
    rng: jax.Array  # raw key data for data mixing; folded with `step` each step


def split_state(model: nnx.Module) -> tuple[Any, dict, dict, dict]:
    """(graph definition, params, batch_stats, rest), the three parts as pure dicts of arrays."""
    graphdef, *parts = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return graphdef, *(nnx.to_pure_dict(part) for part in parts)


def split_model(model: nnx.Module) -> tuple[Any, Any, dict, dict, dict]:
    """(train graph definition, eval graph definition, params, batch_stats, rest); leaves the model in
    train mode."""
    model.eval()
    eval_def, *_ = split_state(model)
    model.train()
    train_def, params, batch_stats, rest = split_state(model)
    return train_def, eval_def, params, batch_stats, rest


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, *, seed: int = 0,
                       ema: bool = False, loss_scale: DynamicLossScale | None = None, flat_params: bool = True
                       ) -> tuple[ModelDef, TrainState]:
    """`flat_params`: the optimizer and EMA see FlatParams (elementwise optimizers only, see
    train.optim.ELEMENTWISE)."""
    train_def, eval_def, params, batch_stats, rest = split_model(model)
    layout = ParamLayout.of(params, flat_params)
    model_def = ModelDef(train_def, eval_def, layout)
    opt_params = layout.flatten(params)
    state = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, rest=rest,
        opt_state=tx.init(opt_params), ema_params=jax.tree.map(jnp.copy, opt_params) if ema else None,
        loss_scale=loss_scale, rng=jax.random.key_data(jax.random.key(seed)))
    return model_def, state


def param_count(params: dict) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
