"""An independent MAC count from a traced graph (the check on the analytic cost model).

Paper/timm convention: 1 MAC = 1 multiply-add, padding taps counted, only convolutions and dot
products counted (norms, activations and adds are ignored). Tracing only: no execution, no backend.
XLA's own cost analysis is not used because it skips padding taps and, on GPU, reports -1 for
convolutions and Pallas calls.
"""
from __future__ import annotations

from math import prod

import jax
import jax.extend.core as jex


def jaxpr_macs(jaxpr) -> int:
    """MACs of conv_general_dilated and dot_general equations, recursing into sub-jaxprs."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            rhs, out = eqn.invars[1].aval, eqn.outvars[0].aval
            spec = eqn.params["dimension_numbers"].rhs_spec  # (O, I, *spatial)
            total += out.size * rhs.shape[spec[1]] * prod(rhs.shape[d] for d in spec[2:])
        elif name == "dot_general":
            lhs, out = eqn.invars[0].aval, eqn.outvars[0].aval
            (contracting, _), _ = eqn.params["dimension_numbers"]
            total += out.size * prod(lhs.shape[d] for d in contracting)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(sub, jex.ClosedJaxpr):
                    total += jaxpr_macs(sub.jaxpr)
                elif isinstance(sub, jex.Jaxpr):
                    total += jaxpr_macs(sub)
    return total


def traced_macs(fn, *args) -> int:
    """MACs of `fn(*args)` counted on its jaxpr (`args` may be jax.ShapeDtypeStruct)."""
    return jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)
