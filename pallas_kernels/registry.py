"""Implementation registry for block ops (the tokamax pattern, without the dependency).

Each block op (`convfirst_block`, `mbconv_block`) owns a `BlockOp` holding its plain-JAX reference
and a dict of named implementations. Callers pass `impl=`:

- a name ('xla', 'xla_native', 'pallas_fused', 'mosaic_mlp', 'pallas_layerwise'): forced. If that implementation cannot run the
  shape/device, `UnsupportedError` says why; nothing falls back silently.
- 'auto': the fastest supported implementation for this shape and device according to the tuning
  cache (measured by `pallas_kernels.autotune`), else the op's heuristic; if the choice cannot run,
  the next candidate is taken and the fallback is logged once per shape.
- a tuple of names: tried in order, like tokamax's implementation sequence.

Forward and backward are chosen separately (`bwd_impl=`, same rules as `impl`, its own
registered implementations; 'auto' after a forward named 'xla' or 'xla_native' is that forward's
autodiff, so an XLA baseline stays plain XLA; after impl='auto' it is the backward's own choice):
'xla' differentiates the reference by recomputation inside a `jax.custom_vjp`, so every Pallas
forward is trainable; a registered backward kernel (the ConvFirst block's 'pallas_fused' and
'mosaic_mlp') replaces it. Any forward pairs with any backward for ablations; xla with xla is
plain autodiff.

Two plain-XLA implementations exist in every op: 'xla' is the reference itself (f32 intermediates
between XLA's kernels) and 'xla_native' the reference with `precise=False` (intermediates in the
compute dtype, as a mixed-precision Flax model runs): the strongest plain-XLA baseline.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import jax

log = logging.getLogger("pallas_kernels")

AUTO = "auto"

# Implementations that keep a block's expanded (hidden) activation on chip: the whole block in one
# kernel (pallas_fused) or the MLP in one kernel after an XLA conv (mosaic_mlp). Reports count these
# blocks as fused; the fake timing backend prices them with the cost model's fused execution.
HIDDEN_ON_CHIP = ("pallas_fused", "mosaic_mlp")


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


def _reference_bwd(reference):
    """The 'xla' backward: autodiff of the reference, recomputing its forward from (x, params)."""
    def bwd(x, params, dy, *, config=None, **static):
        _, vjp = jax.vjp(lambda a, b: reference(a, b, **static), x, params)
        return vjp(dy)

    return bwd


@dataclass
class BlockOp:
    name: str
    reference: Callable[..., jax.Array]
    implementations: dict[str, Implementation] = field(default_factory=dict)
    # heuristic preference order for 'auto' when the tuning cache has no entry: f(x, params, static) -> names
    auto_order: Callable[..., tuple[str, ...]] = lambda x, p, static: ("xla",)
    # backward implementations: fn(x, params, dy, *, config, **static) -> (dx, d params)
    backwards: dict[str, Implementation] = field(default_factory=dict)
    bwd_auto_order: Callable[..., tuple[str, ...]] = lambda x, p, static: ("xla",)
    _warned: set = field(default_factory=set)
    plain: dict[str, Callable[..., jax.Array]] = field(default_factory=dict)  # name -> plain-JAX forward

    def __post_init__(self):
        for name, precise in (("xla", True), ("xla_native", False)):
            fn = functools.partial(self.reference, precise=precise)
            self.plain[name] = fn
            self.register(Implementation(name, lambda x, p, *, config=None, fn=fn, **s: fn(x, p, **s)))
            self.register_bwd(Implementation(name, _reference_bwd(fn)))

    def register(self, implementation: Implementation) -> None:
        self.implementations[implementation.name] = implementation

    def register_bwd(self, implementation: Implementation) -> None:
        self.backwards[implementation.name] = implementation

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.implementations)

    @property
    def bwd_names(self) -> tuple[str, ...]:
        return tuple(self.backwards)

    def _table(self, bwd: bool) -> dict[str, Implementation]:
        return self.backwards if bwd else self.implementations

    def why_unsupported(self, name: str, x, params, platform: str, *, bwd: bool = False, **static) -> str | None:
        impl = self._get(name, bwd)
        if platform != "gpu" and name not in self.plain and not impl.interpretable:
            return f"{name} needs an NVIDIA GPU (platform is {platform})"
        return impl.check(x, params, platform=platform, **static)

    def _get(self, name: str, bwd: bool = False) -> Implementation:
        try:
            return self._table(bwd)[name]
        except KeyError:
            kind = "backward implementation" if bwd else "implementation"
            valid = ", ".join(tuple(self._table(bwd)) + (AUTO,))
            raise ValueError(f"unknown {kind} {name!r} for {self.name}; valid: {valid}") from None

    def candidates(self, impl, x, params, platform: str, static: dict,
                   bwd: bool = False) -> tuple[tuple[str, ...], bool]:
        """Names to try in order, and whether falling back along them is allowed."""
        if isinstance(impl, (tuple, list)):
            return tuple(impl), True
        if impl != AUTO:
            self._get(impl, bwd)
            return (impl,), False
        if platform != "gpu":
            return ("xla",), True
        if bwd:
            return tuple(dict.fromkeys(tuple(self.bwd_auto_order(x, params, static)) + ("xla",))), True
        from pallas_kernels import autotune  # local: autotune imports timing, which imports jax devices

        best = autotune.cached_best(self.name, x, params, static)
        order = ((best,) if best else ()) + tuple(self.auto_order(x, params, static)) + ("xla",)
        return tuple(dict.fromkeys(order)), True

    def select(self, impl, x, params, *, bwd: bool = False, **static) -> Implementation:
        """Resolve `impl` (or, with bwd=True, a `bwd_impl`) for this call, at trace time on shapes."""
        platform = jax.default_backend()
        names, may_fall_back = self.candidates(impl, x, params, platform, static, bwd)
        what, arg = (f"{self.name} backward", "bwd_impl") if bwd else (self.name, "impl")
        reasons = []
        for name in names:
            reason = self.why_unsupported(name, x, params, platform, bwd=bwd, **static)
            if reason is None:
                if reasons and (impl == AUTO or isinstance(impl, (tuple, list))):
                    self._note(f"{what}: using {name} for x{tuple(x.shape)} {x.dtype}; skipped: "
                               + "; ".join(reasons))
                return self._get(name, bwd)
            if not may_fall_back:
                raise UnsupportedError(f"{what} {arg}={name!r} cannot run x{tuple(x.shape)} {x.dtype}: "
                                       f"{reason}. Use {arg}='auto' or one of "
                                       f"{', '.join(self._table(bwd))}.")
            reasons.append(f"{name}: {reason}")
        raise UnsupportedError(f"{what}: no implementation of {names} can run x{tuple(x.shape)}: "
                               + "; ".join(reasons))

    def _note(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def __call__(self, x, params, *, impl=AUTO, bwd_impl=AUTO, config=None, bwd_config=None, **static):
        """Run the op. `static` holds hashable options (group_width, act, residual, ...)."""
        chosen = self.select(impl, x, params, **static)
        if bwd_impl == AUTO and impl != AUTO and chosen.name in self.plain:  # a named XLA forward: its autodiff
            bwd_impl = chosen.name
        backward = self.select(bwd_impl, x, params, bwd=True, **static)
        if chosen.name == backward.name and chosen.name in self.plain:
            return self.plain[chosen.name](x, params, **static)  # plain autodiff
        if config is None and chosen.config_cls is not None:
            from pallas_kernels import autotune

            tuned = autotune.cached_config(self.name, chosen.name, x, params, static)
            config = chosen.config_cls.from_dict(tuned) if tuned else None
        return _with_vjp(chosen.fn, backward.fn, config, bwd_config, tuple(sorted(static.items())), x, params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _with_vjp(fwd_fn, bwd_fn, config, bwd_config, static_items, x, params):
    return fwd_fn(x, params, config=config, **dict(static_items))


def _fwd(fwd_fn, bwd_fn, config, bwd_config, static_items, x, params):
    return fwd_fn(x, params, config=config, **dict(static_items)), (x, params)


def _bwd(fwd_fn, bwd_fn, config, bwd_config, static_items, residuals, dy):
    x, params = residuals
    return bwd_fn(x, params, dy, config=bwd_config, **dict(static_items))


_with_vjp.defvjp(_fwd, _bwd)
