"""Model registry (the timm pattern): names -> spec builders, `create_model`, `list_models`.

Family modules register spec builders with `@register_model(...)`; `model_spec` builds the
`ModelSpec` only (no parameters: the cost model uses it), `create_model` builds the Flax network.
Names follow timm where models overlap (convnext_tiny, efficientnet_b0, ...).
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
from flax import nnx

from convfirst.models.net import ConvNet
from convfirst.models.specs import ModelSpec
from pallas_kernels import AUTO

TIMM_RESULTS = "timm results/results-imagenet.csv"


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., ModelSpec]
    top1: float | None
    top1_source: str | None


_MODELS: dict[str, _Entry] = {}


def register_model(name: str, *, top1: float | None = None, top1_source: str | None = None):
    """Decorator: register `builder(**overrides) -> ModelSpec` under `name`, with its published
    ImageNet-1k top-1 (percent) and where that number comes from, if one exists."""
    def decorator(builder):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = _Entry(builder, top1, top1_source)
        return builder
    return decorator


def _entry(name: str) -> _Entry:
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"unknown model {name!r}; {hint}list_models() shows all {len(_MODELS)}") from None


def override_names(name: str) -> tuple[str, ...]:
    """The keyword overrides `name`'s builder accepts (num_classes, resolution, ...)."""
    params = inspect.signature(_entry(name).builder).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def model_spec(name: str, **overrides) -> ModelSpec:
    """The `ModelSpec` of a registered model (no parameters are created)."""
    valid = override_names(name)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for {name}; valid: {', '.join(valid)}")
    return _entry(name).builder(**overrides).replace(name=name)


def create_model(name: str, *, rngs: nnx.Rngs | None = None, dtype=jnp.float32, impl=AUTO, bwd_impl=AUTO,
                 **overrides):
    """Build a registered model: `ConvNet` with float32 parameters and compute dtype `dtype`.

    `impl`: block-op implementation, one name for all blocks or {'convfirst_block': ..., 'mbconv_block':
    ...}; `bwd_impl` the same for the backward of training. `overrides` go to the family's spec
    builder (see `override_names(name)`).
    """
    spec = model_spec(name, **overrides)
    return ConvNet(spec, rngs=nnx.Rngs(0) if rngs is None else rngs, dtype=dtype, impl=impl, bwd_impl=bwd_impl)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, e.g. 'convnext_*', sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def model_info(name: str) -> dict:
    """Family, native resolution, classes, and the published ImageNet-1k top-1 with its source (or None)."""
    entry, spec = _entry(name), model_spec(name)
    return {"name": name, "family": spec.family, "resolution": spec.resolution,
            "num_classes": spec.num_classes, "in_chans": spec.in_chans,
            "top1": entry.top1, "top1_source": entry.top1_source}
