"""`ConvNet`: the one Flax NNX network class, built layer by layer from a `ModelSpec`.

Every family (ConvNeXt, EfficientNet, MBConvNet, ConvFirstNet) is a spec builder; this class turns
any spec into modules, so the network we run and the cost model read the same description.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from convfirst.models import blocks, layers, specs
from pallas_kernels import AUTO, OPS

_MODULES = {specs.Conv: layers.ConvNormAct, specs.ConvFirstBlock: blocks.ConvFirstBlock,
            specs.MBConvBlock: blocks.MBConvBlock}
_BLOCK_OPS = {specs.ConvFirstBlock: "convfirst_block", specs.MBConvBlock: "mbconv_block"}


def parse_impl(text: str):
    """The impl syntax of configs and command lines -> `resolve_impl`'s input: 'auto', a name,
    'a+b' (a where it can run the block, else b) or per op 'convfirst_block=a+b,mbconv_block=xla'."""
    def names(value: str):
        parts = tuple(v.strip() for v in value.split("+"))
        return parts if len(parts) > 1 else parts[0]

    if "=" not in text:
        return names(text)
    chosen = {}
    for item in text.split(","):
        op, sep, value = item.partition("=")
        if not sep or op.strip() in chosen:
            raise ValueError(f"bad impl {text!r}: {'duplicate' if sep else 'no op= in'} {item!r}; "
                             "write 'convfirst_block=mosaic_mlp+xla,mbconv_block=xla' (one op=names per op)")
        chosen[op.strip()] = names(value)
    return chosen


def resolve_impl(impl, ops=tuple(OPS), *, bwd: bool = False) -> dict:
    """{op name: impl} from one impl for all blocks or a dict per op (missing ops get 'auto').

    An impl is a name, 'auto' or a sequence of names tried in order (see pallas_kernels.registry);
    with bwd=True the names are the ops' backward implementations. Only the ops in `ops` (those the
    model uses) are checked against their registered implementations.
    """
    arg, what = ("bwd_impl", "backward implementation") if bwd else ("impl", "implementation")
    if isinstance(impl, dict):
        unknown = sorted(set(impl) - set(OPS))
        if unknown:
            raise ValueError(f"unknown block op(s) {unknown} in {arg}; valid keys: {', '.join(OPS)}")
        chosen = {op: impl.get(op, AUTO) for op in OPS}
    else:
        chosen = dict.fromkeys(OPS, impl)
    for op in ops:
        value = chosen[op]
        names = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        valid = (OPS[op].bwd_names if bwd else OPS[op].names) + (AUTO,)
        if not names or any(not isinstance(n, str) or n not in valid for n in names):
            raise ValueError(f"unknown {what} {value!r} for {op}; valid: {', '.join(valid)}")
        if len(names) > 1 and AUTO in names:
            raise ValueError(f"{arg} {value!r} for {op}: 'auto' stands alone, not in a sequence of names")
        chosen[op] = value if isinstance(value, str) else names  # hashable: a static attribute
    return chosen


class ConvNet(nnx.Module):
    """A network from a `ModelSpec`: NHWC images (any float dtype) -> float32 logits.

    `dtype` is the compute dtype (parameters stay float32). `impl` picks the block-op implementation,
    one for all blocks ('auto', 'xla', 'pallas_fused', ...) or a dict per op, e.g.
    {'convfirst_block': 'pallas_fused', 'mbconv_block': 'xla'}; `bwd_impl` likewise picks the backward
    (training), independently of the forward. `model.eval()` switches BatchNorm to running statistics,
    disables dropout/drop-path and makes every block run its folded inference form.
    """

    def __init__(self, spec: specs.ModelSpec, *, rngs: nnx.Rngs, dtype=jnp.float32, impl=AUTO, bwd_impl=AUTO):
        self.spec = spec
        self.dtype = dtype
        ops = self._ops_used(spec)
        impls = {op: (value, bwd) for (op, value), bwd in zip(resolve_impl(impl, ops).items(),
                                                             resolve_impl(bwd_impl, ops, bwd=True).values())}
        self.layers = nnx.List([self._build(layer, spec, dtype, impls, rngs) for layer in spec.layers])

    @staticmethod
    def _ops_used(spec: specs.ModelSpec) -> tuple[str, ...]:
        ops = (_BLOCK_OPS.get(type(layer)) for layer in spec.layers)
        return tuple(dict.fromkeys(op for op in ops if op))

    @staticmethod
    def _build(layer, spec, dtype, impls, rngs) -> nnx.Module:
        if isinstance(layer, specs.Head):
            return layers.ClassifierHead(layer, model=spec, rngs=rngs)
        if type(layer) not in _MODULES:
            raise TypeError(f"no module for layer spec {type(layer).__name__}")
        op = _BLOCK_OPS.get(type(layer))
        kwargs = {} if op is None else dict(zip(("impl", "bwd_impl"), impls[op]))
        return _MODULES[type(layer)](layer, model=spec, dtype=dtype, rngs=rngs, **kwargs)

    def set_impl(self, impl=None, bwd_impl=None) -> None:
        """Switch the forward and/or backward block-op implementations in place (same parameters),
        e.g. for an ablation; None keeps the current choice."""
        ops = self._ops_used(self.spec)
        for attr, value, bwd in (("impl", impl, False), ("bwd_impl", bwd_impl, True)):
            if value is None:
                continue
            chosen = resolve_impl(value, ops, bwd=bwd)
            for layer in self.layers:
                if type(layer.spec) in _BLOCK_OPS:
                    setattr(layer, attr, chosen[_BLOCK_OPS[type(layer.spec)]])

    def for_inference(self) -> "ConvNet":
        """A copy in eval mode whose layers hold their inference parameters in final form, computed
        once here, so a forward no longer spends small kernels on preparing them: the residual blocks'
        BatchNorm and layer scale folded, 1x1 weights in the compute dtype, ConvFirst's conv bias
        folded into the expand bias (`_ResidualBlock.freeze`); the stem's, downsampling and head
        convs' BatchNorm folded into their kernel and bias (`ConvNormAct.freeze`). Outputs equal the
        eval-mode model's within the rounding of the folded weights. The blocks' raw layers are
        dropped from the copy (no stale duplicate, about half the state); the copy refuses training
        and the original is unchanged."""
        frozen = nnx.clone(self)
        frozen.eval()
        for layer in frozen.layers:
            if hasattr(layer, "freeze"):
                layer.freeze(self.dtype)
        return frozen

    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != self.spec.in_chans:
            raise ValueError(f"{self.spec.name} expects NHWC images with {self.spec.in_chans} channels, "
                             f"got shape {tuple(x.shape)}")
        x = x.astype(self.dtype)
        for layer in self.layers:
            x = layer(x)
        return x
