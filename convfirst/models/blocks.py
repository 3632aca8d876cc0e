"""The two residual blocks. Each one calls one block op (`pallas_kernels.convfirst_block` /
`mbconv_block`) with `impl=...`, so kernels can be swapped without touching model code.

Execution (the contract with the kernels):
- inference form (`deterministic=True`, set by `model.eval()` or `nnx.view(model, deterministic=True)`):
  BatchNorm and layer scale are folded into the conv/dense weights (folding.py), a per-pixel LayerNorm
  is passed to the op, and the op runs the whole block, residual included.
- training without BatchNorm (norm 'layer'/'none': ConvNeXt, ConvFirst-LN): the op runs on the raw
  parameters (the layer-scale multiply is differentiable); gradients flow through the op's custom_vjp.
  With drop-path the op returns the branch and the block adds `x + drop_path(branch)`.
- training with BatchNorm needs batch statistics inside the block, so the block runs its own unfused
  Flax layers (the XLA path, `unfused`); a non-XLA impl is then logged once.
Parameters stay float32; the op casts weights to the compute dtype of x (inference copies,
`ConvNet.for_inference`, hold the 1x1 weights cast once).
"""
from __future__ import annotations

import functools
import logging

import jax.numpy as jnp
from flax import nnx

from convfirst.models import specs
from convfirst.models.folding import fold_batchnorm, fold_scale
from convfirst.models.layers import SqueezeExcite, activation, conv_init, drop_path, norm_layer
from pallas_kernels import AUTO, ConvFirstParams, MBConvParams, convfirst_block, mbconv_block
from pallas_kernels.convfirst_block.reference import compute_conv_weight

log = logging.getLogger(__name__)


@functools.cache
def _note_batchnorm_fallback(op: str, impl) -> None:
    """Once per (op, impl): training with BatchNorm cannot use a fused kernel."""
    if impl not in ("xla", AUTO, ("xla",)):
        log.warning("%s: training with BatchNorm runs the unfused XLA layers (batch statistics are needed "
                    "inside the block); impl=%r is used in eval mode only", op, impl)


class _ResidualBlock(nnx.Module):
    """Mode handling shared by both blocks: `deterministic` selects the inference form; `freeze`
    stores that form's parameters once (ConvNet.for_inference)."""

    frozen_params = None  # an nnx.Cache of the op parameters once frozen

    def freeze(self, dtype) -> None:
        """Store the op parameters in their final inference form once, and drop the raw layers, so that
        loading or editing weights in the frozen copy cannot leave the blocks stale (their attributes
        are gone, not ignored). Final form: BatchNorm and layer scale folded (float32, as `op_params`
        does in every inference forward), the 1x1 weights cast to the compute `dtype` (as every
        implementation casts them per call) and the block type's own preparation (`inference_params`).
        What this saves is small kernels: on the H200 each block's forward launched about six for
        folding and casting, each with a launch gap larger than its run time."""
        self.frozen_params = nnx.Cache(self.inference_params(dtype))
        for name, value in list(vars(self).items()):
            if name != "frozen_params" and isinstance(value, (nnx.Module, nnx.Variable)):
                setattr(self, name, None)

    def inference_params(self, dtype):
        p = self.folded_params()  # every fold in float32, before the cast
        cast = lambda w: None if w is None else w.astype(dtype)  # noqa: E731
        return p._replace(w_expand=cast(p.w_expand), w_project=cast(p.w_project))

    def folded_params(self):
        return self.op_params()

    def refuse_training_if_frozen(self) -> None:
        if self.frozen_params is not None and not self.deterministic:
            raise RuntimeError(f"{type(self).__name__} was frozen for inference (ConvNet.for_inference): "
                               "train the original model, then freeze a new copy")

    def block_params(self):
        """The op parameters of this call: frozen ones (inference copies), else folded now."""
        self.refuse_training_if_frozen()
        return self.op_params() if self.frozen_params is None else self.frozen_params.get_value()

    def set_view(self, deterministic: bool | None = None):
        """Class method used by ``nnx.view``.

        Args:
          deterministic: if True, the block runs its inference form (folded weights, one op call).
        """
        if deterministic is not None:
            self.deterministic = deterministic


class ConvFirstBlock(_ResidualBlock):
    """A `specs.ConvFirstBlock` (ConvFirst and ConvNeXt): x + project(act(expand(norm(gconv(x)))))."""

    def __init__(self, spec: specs.ConvFirstBlock, *, model: specs.ModelSpec, dtype, impl=AUTO,
                 bwd_impl=AUTO, rngs: nnx.Rngs):
        self.spec, self.impl, self.bwd_impl, self.deterministic = spec, impl, bwd_impl, False
        bias = spec.norm != "batch"
        init = model.weight_init
        self.conv = nnx.Conv(spec.dim, spec.dim, (spec.kernel_size,) * 2, padding="SAME",
                             feature_group_count=spec.groups, use_bias=bias, dtype=dtype,
                             kernel_init=conv_init(init, spec.groups), rngs=rngs)
        self.expand = nnx.Linear(spec.dim, spec.hidden, use_bias=bias, dtype=dtype,
                                 kernel_init=conv_init(init), rngs=rngs)
        self.project = nnx.Linear(spec.hidden, spec.dim, use_bias=bias, dtype=dtype,
                                  kernel_init=conv_init(init), rngs=rngs)
        norm = functools.partial(norm_layer, spec.norm, eps=spec.norm_eps, momentum=model.bn_momentum,
                                 dtype=dtype, rngs=rngs)
        self.norm_conv = norm(spec.dim)
        # BatchNorm also after expand and project; a LayerNorm only after the conv (see specs.ConvFirstBlock).
        self.norm_expand = norm(spec.hidden) if spec.norm == "batch" else None
        self.norm_project = norm(spec.dim) if spec.norm == "batch" else None
        self.layer_scale = (None if spec.layer_scale is None
                            else nnx.Param(jnp.full((spec.dim,), spec.layer_scale, jnp.float32)))
        self.drop_path = drop_path(spec.drop_path, rngs)

    def op_params(self) -> ConvFirstParams:
        """Parameters of the block op: BatchNorm (running statistics) and layer scale folded in."""
        def weights(layer, bn):
            w, b = layer.kernel[...], None if layer.bias is None else layer.bias[...]
            if bn is not None:
                return fold_batchnorm(w, b, bn)
            return w, b

        w_conv, b_conv = weights(self.conv, self.norm_conv if self.spec.norm == "batch" else None)
        w_expand, b_expand = weights(self.expand, self.norm_expand)
        w_project, b_project = weights(self.project, self.norm_project)
        if self.layer_scale is not None:
            w_project, b_project = fold_scale(w_project, b_project, self.layer_scale[...])
        ln = self.norm_conv if self.spec.norm == "layer" else None
        return ConvFirstParams(w_conv, b_conv, w_expand, b_expand, w_project, b_project,
                               ln_scale=None if ln is None else ln.scale[...],
                               ln_bias=None if ln is None else ln.bias[...])

    def folded_params(self):
        """Also the conv bias folded into the expand bias where no LayerNorm sits between them (in
        float32 with the float32 expand weights, as `mosaic_mlp` folds it per call)."""
        return self.op_params().with_conv_bias_folded()

    def inference_params(self, dtype):
        """Grouped conv weights also in the form the compute-dtype conv takes them (cast and, on a
        Hopper GPU, widened for cuDNN: `compute_conv_weight`), so the XLA-run conv does not cast or
        widen them per call (the Triton implementations narrow them back per call). Depthwise weights
        stay float32 (the Triton kernels compute depthwise taps in float32)."""
        p = super().inference_params(dtype)
        if self.spec.group_width == 1:
            return p
        return p._replace(w_conv=compute_conv_weight(p.w_conv, self.spec.group_width, dtype))

    def unfused(self, x):
        """The residual branch layer by layer with Flax modules (BatchNorm in its own mode)."""
        t = self.conv(x)
        if self.norm_conv is not None:
            t = self.norm_conv(t)
        h = self.expand(t)
        if self.norm_expand is not None:
            h = self.norm_expand(h)
        y = self.project(activation(self.spec.act)(h))
        if self.norm_project is not None:
            y = self.norm_project(y)
        if self.layer_scale is not None:
            y = y * self.layer_scale[...].astype(y.dtype)
        return y

    def __call__(self, x):
        spec = self.spec
        if spec.norm == "batch" and not self.deterministic:
            self.refuse_training_if_frozen()
            _note_batchnorm_fallback("convfirst_block", self.impl)
            return x + self.drop_path(self.unfused(x))
        dropping = not self.deterministic and spec.drop_path > 0
        y = convfirst_block(x, self.block_params(), group_width=spec.group_width, act=spec.act,
                            residual=not dropping, ln_eps=spec.norm_eps, impl=self.impl,
                            bwd_impl=self.bwd_impl)
        return x + self.drop_path(y) if dropping else y


class MBConvBlock(_ResidualBlock):
    """A `specs.MBConvBlock`: [expand -> BN -> act] -> gconv -> BN -> act -> [SE] -> project -> BN [+ x]."""

    def __init__(self, spec: specs.MBConvBlock, *, model: specs.ModelSpec, dtype, impl=AUTO,
                 bwd_impl=AUTO, rngs: nnx.Rngs):
        self.spec, self.impl, self.bwd_impl, self.deterministic = spec, impl, bwd_impl, False
        init = model.weight_init
        bn = functools.partial(norm_layer, "batch", eps=spec.norm_eps, momentum=model.bn_momentum,
                               dtype=dtype, rngs=rngs)
        if spec.has_expand:
            self.expand = nnx.Linear(spec.cin, spec.hidden, use_bias=False, dtype=dtype,
                                     kernel_init=conv_init(init), rngs=rngs)
            self.norm_expand = bn(spec.hidden)
        else:
            self.expand = self.norm_expand = None
        self.conv = nnx.Conv(spec.hidden, spec.hidden, (spec.kernel_size,) * 2, (spec.stride,) * 2,
                             padding="SAME", feature_group_count=spec.groups, use_bias=False, dtype=dtype,
                             kernel_init=conv_init(init, spec.groups), rngs=rngs)
        self.norm_conv = bn(spec.hidden)
        self.se = (SqueezeExcite(spec.hidden, spec.se_channels, act=spec.act, weight_init=init, rngs=rngs)
                   if spec.se_channels else None)
        self.project = nnx.Linear(spec.hidden, spec.cout, use_bias=False, dtype=dtype,
                                  kernel_init=conv_init(init), rngs=rngs)
        self.norm_project = bn(spec.cout)
        self.drop_path = drop_path(spec.drop_path if spec.has_residual else 0.0, rngs)

    def op_params(self) -> MBConvParams:
        """Parameters of the block op with every BatchNorm folded (running statistics)."""
        w_expand = b_expand = None
        if self.expand is not None:
            w_expand, b_expand = fold_batchnorm(self.expand.kernel[...], None, self.norm_expand)
        w_conv, b_conv = fold_batchnorm(self.conv.kernel[...], None, self.norm_conv)
        w_project, b_project = fold_batchnorm(self.project.kernel[...], None, self.norm_project)
        return MBConvParams(w_expand, b_expand, w_conv, b_conv, w_project, b_project,
                            se=None if self.se is None else self.se.params())

    def unfused(self, x):
        """The residual branch (or the whole block without residual) layer by layer."""
        f = activation(self.spec.act)
        h = x if self.expand is None else f(self.norm_expand(self.expand(x)))
        h = f(self.norm_conv(self.conv(h)))
        if self.se is not None:
            h = self.se(h)
        return self.norm_project(self.project(h))

    def __call__(self, x):
        spec = self.spec
        if not self.deterministic:
            self.refuse_training_if_frozen()
            _note_batchnorm_fallback("mbconv_block", self.impl)
            y = self.unfused(x)
            return x + self.drop_path(y) if spec.has_residual else y
        return mbconv_block(x, self.block_params(), group_width=spec.group_width, stride=spec.stride,
                            act=spec.act, residual=spec.has_residual, impl=self.impl,
                            bwd_impl=self.bwd_impl)
