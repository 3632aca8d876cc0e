"""Implementation registry for block ops (the tokamax pattern, without the dependency).

Each block op (`convfirst_block`, `mbconv_block`) owns a `BlockOp` holding its plain-JAX reference
and a dict of named implementations. Callers pass `impl=`:

- a name ('xla', 'pallas_fused', 'pallas_layerwise'): forced. If that implementation cannot run the
  shape/device, `UnsupportedError` says why; nothing falls back silently.
- 'auto': the fastest supported implementation for this shape and device according to the tuning
  cache (measured by `pallas_kernels.autotune`), else the op's heuristic; if the choice cannot run,
  the next candidate is taken and the fallback is logged once per shape.
- a tuple of names: tried in order, like tokamax's implementation sequence.

Forward and backward are chosen separately: `bwd_impl='xla'` (the only one until a fused backward
exists) differentiates the reference by recomputation inside a `jax.custom_vjp`, so Pallas forwards
are trainable and an ablation can pair any forward with any backward.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import jax

log = logging.getLogger("pallas_kernels")

AUTO = "auto"


class UnsupportedError(NotImplementedError):
    """An implementation cannot run this shape, dtype, option or device; the message says why."""


@dataclass(frozen=True)
class Implementation:
    """One way to run an op.

    fn(x, params, *, config, **static) -> y, where config None means "tuned or heuristic".
    `check(x, params, platform, **static)` returns None when supported, else the reason.
    `interpretable`: runs on CPU in Pallas interpret mode (tests only; 'auto' never picks it on CPU).
    `config_cls` (with from_dict/to_dict) and `candidates(problem, params) -> [config]` give the
    autotuner its search space.
    """

    name: str
    fn: Callable[..., jax.Array]
    check: Callable[..., str | None] = lambda *a, **k: None
    interpretable: bool = False
    config_cls: Any = None
    candidates: Callable[..., list] | None = None


@dataclass
class BlockOp:
    name: str
    reference: Callable[..., jax.Array]
    implementations: dict[str, Implementation] = field(default_factory=dict)
    # heuristic preference order for 'auto' when the tuning cache has no entry: f(x, params, static) -> names
    auto_order: Callable[..., tuple[str, ...]] = lambda x, p, static: ("xla",)
    _warned: set = field(default_factory=set)

    def __post_init__(self):
        self.register(Implementation("xla", lambda x, p, *, config=None, **s: self.reference(x, p, **s)))

    def register(self, implementation: Implementation) -> None:
        self.implementations[implementation.name] = implementation

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.implementations)

    def why_unsupported(self, name: str, x, params, platform: str, **static) -> str | None:
        impl = self._get(name)
        if platform != "gpu" and name != "xla" and not impl.interpretable:
            return f"{name} needs an NVIDIA GPU (platform is {platform})"
        return impl.check(x, params, platform=platform, **static)

    def _get(self, name: str) -> Implementation:
        try:
            return self.implementations[name]
        except KeyError:
            valid = ", ".join(self.names + (AUTO,))
            raise ValueError(f"unknown implementation {name!r} for {self.name}; valid: {valid}") from None

    def candidates(self, impl, x, params, platform: str, static: dict) -> tuple[tuple[str, ...], bool]:
        """Names to try in order, and whether falling back along them is allowed."""
        if isinstance(impl, (tuple, list)):
            return tuple(impl), True
        if impl != AUTO:
            self._get(impl)
            return (impl,), False
        if platform != "gpu":
            return ("xla",), True
        from pallas_kernels import autotune  # local: autotune imports timing, which imports jax devices

        best = autotune.cached_best(self.name, x, params, static)
        order = ((best,) if best else ()) + tuple(self.auto_order(x, params, static)) + ("xla",)
        return tuple(dict.fromkeys(order)), True

    def select(self, impl, x, params, **static) -> Implementation:
        """Resolve `impl` for this call (at trace time, on shapes only)."""
        platform = jax.default_backend()
        names, may_fall_back = self.candidates(impl, x, params, platform, static)
        reasons = []
        for name in names:
            reason = self.why_unsupported(name, x, params, platform, **static)
            if reason is None:
                if reasons and (impl == AUTO or isinstance(impl, (tuple, list))):
                    self._note(f"{self.name}: using {name} for x{tuple(x.shape)} {x.dtype}; skipped: "
                               + "; ".join(reasons))
                return self._get(name)
            if not may_fall_back:
                raise UnsupportedError(f"{self.name} impl={name!r} cannot run x{tuple(x.shape)} {x.dtype}: "
                                       f"{reason}. Use impl='auto' or one of {', '.join(self.names)}.")
            reasons.append(f"{name}: {reason}")
        raise UnsupportedError(f"{self.name}: no implementation of {names} can run x{tuple(x.shape)}: "
                               + "; ".join(reasons))

    def _note(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def __call__(self, x, params, *, impl=AUTO, bwd_impl: str = "xla", config=None, **static):
        """Run the op. `static` holds hashable options (group_width, act, residual, ...)."""
        chosen = self.select(impl, x, params, **static)
        if chosen.name == "xla":
            return self.reference(x, params, **static)  # plain autodiff
        if config is None and chosen.config_cls is not None:
            from pallas_kernels import autotune

            tuned = autotune.cached_config(self.name, chosen.name, x, params, static)
            config = chosen.config_cls.from_dict(tuned) if tuned else None
        if bwd_impl != "xla":
            raise UnsupportedError(f"{self.name}: bwd_impl={bwd_impl!r} is not available; valid: xla")
        return _with_reference_vjp(self.reference, chosen.fn, config, tuple(sorted(static.items())), x, params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _with_reference_vjp(reference, fwd_fn, config, static_items, x, params):
    return fwd_fn(x, params, config=config, **dict(static_items))


def _fwd(reference, fwd_fn, config, static_items, x, params):
    return fwd_fn(x, params, config=config, **dict(static_items)), (x, params)


def _bwd(reference, fwd_fn, config, static_items, residuals, dy):
    x, params = residuals
    _, vjp = jax.vjp(lambda a, b: reference(a, b, **dict(static_items)), x, params)
    return vjp(dy)


_with_reference_vjp.defvjp(_fwd, _bwd)
