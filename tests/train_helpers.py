"""Shared pieces of the training tests: a tiny NNX model with BatchNorm and dropout (compiles in
seconds, so the trainer's mechanics can be tested many times) and a digits config for it."""
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

REPO = Path(__file__).resolve().parent.parent
DIGITS_CONFIG = str(REPO / "experiments" / "configs" / "digits_convfirst.py")


class Tiny(nnx.Module):
    """conv -> BatchNorm -> relu -> dropout -> pool -> dense, NHWC."""

    def __init__(self, in_chans=2, num_classes=5, dtype=jnp.float32, rngs=None):
        rngs = rngs or nnx.Rngs(0)
        self.conv = nnx.Conv(in_chans, 8, (3, 3), use_bias=False, dtype=dtype, rngs=rngs)  # BN cancels a bias
        self.bn = nnx.BatchNorm(8, dtype=dtype, rngs=rngs)
        self.drop = nnx.Dropout(0.25, rngs=rngs)
        self.head = nnx.Linear(8, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = self.drop(nnx.relu(self.bn(self.conv(x.astype(self.conv.dtype)))))
        return self.head(x.mean((1, 2)))


def build_tiny(config, num_classes, dtype):
    """Drop-in for train.trainer.build_model."""
    return Tiny(in_chans=1, num_classes=num_classes, dtype=dtype, rngs=nnx.Rngs(config.seed))


def tiny_config(data_dir, steps=8, **changes):
    """A short digits run: `steps` steps of 32, logged every 2, checkpointed and evaluated every 4."""
    from train.config_utils import load_config

    values = dict(log_every=2, ckpt_every=4, eval_every=4, progress=False,
                  **{"data.data_dir": data_dir, "data.num_threads": 1})
    values.update(changes)
    return load_config(f"{DIGITS_CONFIG}:steps={steps},batch=32", [f"--config.{k}={v}" for k, v in values.items()])
