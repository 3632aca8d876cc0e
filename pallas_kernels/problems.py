"""A block-op call described by shapes only: what the autotuner, the block benchmark and the GPU
tests iterate over. Built from model specs by `convfirst.benchmark.block_problems`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.convfirst_block.reference import ConvFirstParams
from pallas_kernels.mbconv_block.reference import MBConvParams, SqueezeExcite


@dataclass(frozen=True)
class BlockProblem:
    op: str  # "convfirst_block" | "mbconv_block"
    batch: int
    h: int
    w: int
    c: int
    hidden: int
    kernel_size: int = 3
    group_width: int = 8
    act: str = "silu"
    layer_norm: bool = False  # convfirst_block only
    cout: int | None = None  # mbconv_block only (None: = c)
    stride: int = 1  # mbconv_block only
    expand: bool = True  # mbconv_block only: False when the expansion ratio is 1
    se_channels: int = 0  # mbconv_block only
    residual: bool = True

    @property
    def out_channels(self) -> int:
        return self.cout or self.c

    def label(self) -> str:
        extra = "_ln" if self.layer_norm else ""
        extra += f"_se{self.se_channels}" if self.se_channels else ""
        extra += f"_s{self.stride}" if self.stride != 1 else ""
        return (f"{self.op}_{self.h}x{self.w}x{self.c}-{self.hidden}-{self.out_channels}"
                f"_k{self.kernel_size}_g{self.group_width}_{self.act}{extra}")

    def static(self) -> dict:
        if self.op == "convfirst_block":
            return dict(group_width=self.group_width, act=self.act, residual=self.residual)
        return dict(group_width=self.group_width, stride=self.stride, act=self.act, residual=self.residual)

    def macs(self) -> int:
        """MACs of one call (batch included), the same count as the model cost model."""
        k2 = self.kernel_size ** 2
        if self.op == "convfirst_block":
            return self.batch * self.h * self.w * (k2 * self.group_width * self.c + 2 * self.c * self.hidden)
        ho, wo = -(-self.h // self.stride), -(-self.w // self.stride)
        expand = self.batch * self.h * self.w * self.c * self.hidden if self.expand else 0
        conv = self.batch * ho * wo * k2 * self.group_width * self.hidden
        se = self.batch * 2 * self.hidden * self.se_channels
        return expand + conv + se + self.batch * ho * wo * self.hidden * self.out_channels

    def accumulation_depth(self) -> int:
        """The longest f32 accumulation in the block: what its error tolerance scales with."""
        return max(self.hidden, self.c, self.kernel_size ** 2 * self.group_width)

    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.h, self.w, self.c)

    def make_x(self, key, dtype):
        return jax.random.normal(key, self.x_shape(), jnp.float32).astype(dtype)

    def make_params(self, key):
        """Random float32 inference-form params with fan-in scaling (unit-variance activations)."""
        ks = iter(jax.random.split(key, 12))
        k, c, m, g = self.kernel_size, self.c, self.hidden, self.group_width

        def w(shape, fan_in):
            return jax.random.normal(next(ks), shape, jnp.float32) / np.sqrt(fan_in)

        def b(n):
            return 0.1 * jax.random.normal(next(ks), (n,), jnp.float32)

        if self.op == "convfirst_block":
            ln = (1.0 + b(c), b(c)) if self.layer_norm else (None, None)
            return ConvFirstParams(w((k, k, g, c), k * k * g), b(c), w((c, m), c), b(m), w((m, c), m), b(c), *ln)
        se = None
        if self.se_channels:
            s = self.se_channels
            se = SqueezeExcite(w((m, s), m), b(s), w((s, m), s), b(m))
        expand = (w((c, m), c), b(m)) if self.expand else (None, None)
        return MBConvParams(*expand, w((k, k, g, m), k * k * g), b(m), w((m, self.out_channels), m),
                            b(self.out_channels), se)

    def replace(self, **changes) -> "BlockProblem":
        return dataclasses.replace(self, **changes)
