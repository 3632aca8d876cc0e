"""Checkpoints with orbax's CheckpointManager: the whole train state plus the data iterator position.

Orbax writes each step into a temporary directory and renames it when complete, so a process killed
during a save leaves only an ignored `*.orbax-checkpoint-tmp-*` directory and the previous checkpoint
intact. Restoring walks back from the newest step until one restores, so a damaged newest checkpoint
costs one interval, not the run; when none restores (another model, optimizer or state layout) it
stops with the reason instead of starting over. Typed PRNG keys (the model's RNG streams) are stored as raw key data.
"""
from __future__ import annotations

import logging
from pathlib import Path

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("train")


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_saveable(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def from_saveable(tree, template):
    return jax.tree.map(lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
                        tree, template)


class Checkpointer:
    """`save(step, state, position)` every call it is given (the trainer decides when); keeps `keep`."""

    def __init__(self, directory: str | Path, keep: int = 3, asynchronous: bool = True):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=asynchronous)
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, position: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(to_saveable(state)),
                                                        data=ocp.args.JsonSave(position)))

    def restore(self, template, step: int | None = None):
        """(state, position, step) from `step`, or from the newest checkpoint that restores; None when
        there is none; RuntimeError when there are some and none restores into `template` (a train state
        with the target shapes, dtypes and shardings)."""
        self.manager.wait_until_finished()
        steps = [step] if step is not None else self.all_steps()[::-1]
        if step is not None and step not in self.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; "
                                    f"available: {self.all_steps() or 'none'}")
        saveable = to_saveable(template)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, saveable)
        error = None
        for s in steps:
            try:
                restored = self.manager.restore(s, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
            except Exception as e:  # a damaged checkpoint: fall back to the one before it
                if step is not None:
                    raise
                log.warning("checkpoint %d in %s cannot be restored (%s: %s); trying an older one",
                            s, self.directory, type(e).__name__, e)
                error = e
                continue
            return from_saveable(restored.state, template), dict(restored.data), s
        if error is not None:  # starting over would save over (and rotate out) finished work
            raise RuntimeError(
                f"none of the checkpoints {steps[::-1]} in {self.directory} restores into this run's train state "
                f"(last error: {type(error).__name__}: {str(error)[:300]}). Checkpoints of another model or "
                "optimizer, or of an older train-state layout (before the optimizer's flat parameters), do not "
                "restore: use a new workdir, or move these checkpoints away to start over.") from error
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
