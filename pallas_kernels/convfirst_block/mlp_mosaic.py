"""'mosaic_mlp': the ConvFirst block with its MLP in one Mosaic GPU kernel (Hopper: TMA + wgmma).

    t = norm(gconv(x) + b)                  XLA, in the compute dtype (cuDNN's grouped conv)
    y = act(t @ W1 + b1) @ W2 + b2 + x      one Mosaic GPU kernel per block

Why: at 14x14x256 (27 of convfirst_tiny's 36 blocks) 96 % of the MACs are the two 1x1 layers,
the Triton kernels reach ~22 % of the tensor-core peak on them (benchmarks/results/fused_sweep,
k=1 rows) and XLA pays an HBM round trip of the 4C hidden activation. Here one warpgroup per
`block_m` pixels keeps t (block_m x C) in shared memory, streams W1/W2 in `block_h` hidden
chunks through a TMA pipeline, computes h = act(t @ W1_chunk + b1) with wgmma into registers and
accumulates acc += h @ W2_chunk, h fed from registers on the GPU (`h_regs`) or through shared
memory (Mosaic's GPU interpreter, used by the CPU tests, takes shared-memory wgmma operands only);
the hidden activation never leaves the SM. t makes one HBM round trip (2C per pixel, small next to
the 2 x C x 4C MACs of the MLP at C=256). With `warpgroups=2` or `cluster=2` a producer warpgroup
streams each weight chunk once for the compute warpgroups of one program or, multicast, of two
(warp-specialized pipeline).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from pallas_kernels.common import dtype_reason, hopper_reason, interpret_mode, kernel_activation, pixel_rows
from pallas_kernels.convfirst_block.reference import ConvFirstParams, compute_grouped_conv, conv_norm
from pallas_kernels.layers.configs import Serializable, ranked
from pallas_kernels.registry import UnsupportedError

try:
    from jax.experimental.pallas import mosaic_gpu as plgpu
except ImportError:  # pragma: no cover - a jax without Mosaic GPU
    plgpu = None

SMEM_BYTES = 232448  # H100/H200, as Mosaic GPU reports it
SMEM_ALIGNMENT = 1024  # Mosaic rounds every shared-memory allocation up to this
SWIZZLE = 128  # bytes: 64 bf16/fp16 elements per swizzled row


def INTERPRET_PARAMS():  # noqa: N802 - a constant built lazily (plgpu may be missing)
    """Off the GPU: Mosaic GPU's simulator, with race detection and NaN-filled fresh memory."""
    return plgpu.InterpretGPUParams(detect_races=True, uninitialized_memory="nan")


@dataclass(frozen=True)
class MosaicMLPConfig(Serializable):
    """block_m pixels per compute warpgroup (64: one wgmma row block), block_h hidden channels per
    pipeline step, max_concurrent_steps W1/W2 chunks in flight. x_buffer: the residual tile has its
    own shared-memory buffer, fetched at the start; False loads it into t's buffer after the last
    expand GEMM (not overlapped within the program, but less shared memory: more programs per SM).
    warpgroups: compute warpgroups per program; with 2, a third (producer) warpgroup streams each
    W1/W2 chunk once for both (half the weight traffic per pixel; warp-specialized pipeline).
    cluster: programs per cluster; with 2 the producer multicasts each chunk by TMA to both
    programs' shared memory (half the L2 traffic again). h_regs: the activated hidden chunk feeds
    the project GEMM from registers instead of a shared-memory round trip (GPU only: Mosaic's
    simulator takes shared-memory operands). delay_release: 1 leaves the project GEMM of a step in
    flight while the next step's expand GEMM is issued (its weight chunk released a step later).
    pingpong (two compute warpgroups): a schedule barrier makes them take turns on the tensor cores,
    one warpgroup's bias + activation running under the other's GEMMs (FlashAttention-3's schedule,
    as jax's attention_mgpu does it); without it both reach their activation in the same cycles.
    Warpgroup 1 then runs a step behind, so the pipeline needs max_concurrent_steps >= 2 +
    delay_release (fewer deadlock: the producer waits for a slot the lagging warpgroup holds)."""

    block_m: int = 64
    block_h: int = 64
    max_concurrent_steps: int = 2
    x_buffer: bool = True
    warpgroups: int = 1
    cluster: int = 1
    h_regs: bool = False
    delay_release: int = 0
    pingpong: bool = False

    @property
    def warp_specialized(self) -> bool:
        return self.warpgroups > 1 or self.cluster > 1

    @property
    def rows(self) -> int:
        """Rows (pixels) per program."""
        return self.block_m * self.warpgroups

    def smem_bytes(self, c: int, hidden: int, itemsize: int = 2) -> int:
        """Shared memory as Mosaic allocates it: every buffer rounded up to 1 KiB (barriers too, which
        over-counts by about 2 KiB: never under)."""
        buffers = [self.rows * c * itemsize] * (1 + self.x_buffer)
        buffers += [] if self.h_regs else [self.rows * self.block_h * itemsize]
        buffers += [self.max_concurrent_steps * c * self.block_h * itemsize] * 2  # W1, W2 chunks
        buffers += [4 * self.warpgroups * hidden, 4 * self.warpgroups * c]  # f32 biases
        buffers += [8 * 4 * self.warpgroups, 8 * 4 * self.max_concurrent_steps]  # ours, the pipeline's barriers
        buffers += [8] if self.pingpong else []  # the schedule barrier
        return sum(-(-n // SMEM_ALIGNMENT) * SMEM_ALIGNMENT for n in buffers)


def heuristic(c: int, hidden: int) -> MosaicMLPConfig:
    """The fastest configs measured on the H200 at convfirst_tiny's stage shapes: C=128 and C=256 two
    compute warpgroups taking turns (ping-pong; 8-15 % faster than without at both, run_u.log), C=64
    one warpgroup, two chunks in flight (run_m.log). h_regs wherever it runs (the GPU): it won every
    pairing of the probe. Where the measured choice would not fit in shared memory (wide hidden
    layers: two warpgroups hold two copies of the biases), one warpgroup with two programs per
    cluster (the C=256 choice before ping-pong), so that what this implementation supports does not
    shrink with the preference."""
    h_regs = not interpret_mode()
    if c >= 256:
        preferred = [MosaicMLPConfig(64, 64, 2, False, 2, 1, h_regs, 0, True),
                     MosaicMLPConfig(64, 64, 2, True, 1, 2, h_regs)]
    elif c >= 128:
        preferred = [MosaicMLPConfig(64, 64, 2, True, 2, 2, h_regs, 0, True),
                     MosaicMLPConfig(64, 64, 2, True, 1, 2, h_regs)]
    else:
        preferred = [MosaicMLPConfig(64, 64, 2, True, 1, 1, h_regs)]
    return next((cfg for cfg in preferred if cfg.smem_bytes(c, hidden) <= SMEM_BYTES), preferred[-1])


def candidates(c: int, hidden: int) -> list[MosaicMLPConfig]:
    """The autotuner's space: 64-wide hidden chunks (128 lost at every stage shape), 1-4 chunks in
    flight, residual buffer or not, 1-2 compute warpgroups, 1-2 programs per cluster, delayed
    release (it lost every single-warpgroup pairing) and the ping-pong schedule with two warpgroups
    only. Not here: a split tail for a partial last wave (runs ZX, ZZ: slower, docs/kernels.md)."""
    h_regs = not interpret_mode()
    out = [MosaicMLPConfig(64, 64, s, xb, wgs, cl, h_regs, dr, pp)
           for s in (1, 2, 3, 4) for xb in (True, False) for wgs in (1, 2) for cl in (1, 2) for dr in (0, 1)
           for pp in (False, True) if wgs == 2 or (dr == 0 and not pp)]
    return ranked(heuristic(c, hidden), [cfg for cfg in out if _config_reason(cfg, c, hidden) is None])


def check(x, params: ConvFirstParams, *, platform=None, act: str = "silu", **_) -> str | None:
    """None when this implementation supports the call, else why not."""
    if plgpu is None:
        return "this jax has no Mosaic GPU backend"
    if platform == "gpu" and not interpret_mode() and (reason := hopper_reason()) is not None:
        return reason
    if (reason := dtype_reason(x)) is not None:
        return reason
    if x.ndim != 4:
        return f"expects NHWC input, got shape {tuple(x.shape)}"
    c, hidden = params.w_expand.shape
    if c % 64 or c > 256:
        return f"C={c} must be a multiple of 64 and <= 256 (128-byte swizzled tiles, wgmma N <= 256)"
    if hidden % 64:
        return f"hidden width {hidden} must be a multiple of 64"
    if (need := heuristic(c, hidden).smem_bytes(c, hidden)) > SMEM_BYTES:
        return f"C={c}, hidden={hidden}: even the default tiles need {need} bytes of shared memory > {SMEM_BYTES}"
    if params.w_project.shape[1] != c:
        return "needs C_out == C_in"
    if act not in ("silu", "gelu_tanh", "relu", "none"):
        return f"activation {act!r} unsupported (silu, gelu_tanh, relu, none)"
    return None


def _config_reason(cfg: MosaicMLPConfig, c: int, hidden: int) -> str | None:
    if cfg.block_m != 64:
        return f"block_m={cfg.block_m}: one warpgroup computes 64 rows"
    if cfg.block_h % 64 or cfg.block_h > 256 or hidden % cfg.block_h:
        return f"block_h={cfg.block_h} must be a multiple of 64, <= 256 and divide hidden={hidden}"
    if cfg.warpgroups not in (1, 2):
        return f"warpgroups={cfg.warpgroups}: 1 or 2 compute warpgroups"
    if cfg.cluster not in (1, 2):
        return f"cluster={cfg.cluster}: 1 or 2 programs per cluster"
    if cfg.delay_release not in (0, 1):
        return f"delay_release={cfg.delay_release}: 0 or 1"
    if cfg.pingpong and cfg.warpgroups != 2:
        return f"pingpong alternates two compute warpgroups; warpgroups={cfg.warpgroups}"
    if cfg.max_concurrent_steps < max(2 if cfg.warp_specialized else 1, 1 + cfg.delay_release + cfg.pingpong):
        return (f"max_concurrent_steps={cfg.max_concurrent_steps} too small: >= 2 with a producer warpgroup "
                "(warpgroups=2 or cluster=2), > delay_release + pingpong (with ping-pong, warpgroup 1 runs a "
                "step behind: the producer's wait for a released slot and the schedule barrier would deadlock)")
    if cfg.h_regs and interpret_mode():
        return "h_regs (a register wgmma operand) runs on the GPU only: Mosaic's simulator takes shared-memory operands"
    if (need := cfg.smem_bytes(c, hidden)) > SMEM_BYTES:
        return f"needs {need} bytes of shared memory > {SMEM_BYTES}"
    return None


def mlp_mosaic(t, x, w1, b1, w2, b2, *, act: str, config: MosaicMLPConfig, interpret=None):
    """y = act(t @ w1 + b1) @ w2 + b2 (+ x when given) on (M, C) rows; M a multiple of the rows of
    one cluster (block_m x warpgroups x cluster)."""
    m, c = t.shape
    hidden = w1.shape[1]
    cfg = config
    wgs, bm, bh, ncl = cfg.warpgroups, cfg.block_m, cfg.block_h, cfg.cluster
    if m % (ncl * wgs * bm):
        raise ValueError(f"{m} rows: pad them to a multiple of {ncl * wgs * bm} (the rows of one cluster)")
    dt = t.dtype
    elems = SWIZZLE // jnp.dtype(dt).itemsize
    tiles = (plgpu.TilingTransform((8, elems)), plgpu.SwizzleTransform(SWIZZLE))
    shared = dict(transforms=tiles, delay_release=cfg.delay_release,
                  **({"collective_axes": ("cl",)} if ncl > 1 else {}))
    weight_specs = [plgpu.BlockSpec((c, bh), lambda e: (0, e), **shared),
                    plgpu.BlockSpec((bh, c), lambda e: (e, 0), **shared)]
    activation = kernel_activation(act)
    has_residual = x is not None

    def scoped(t_gmem, x_gmem, w1_gmem, b1_gmem, w2_gmem, b2_gmem, y_gmem,
               t_smem, x_smem, h_smem, b1_smem, b2_smem, barriers, schedule):
        wg = lax.axis_index("wg") if cfg.warp_specialized else 0  # each compute warpgroup owns bm rows
        t_s, b1_s, b2_s = t_smem.at[wg], b1_smem.at[wg], b2_smem.at[wg]
        io_s = x_smem.at[wg] if cfg.x_buffer else t_s  # holds x, then y
        bar = [barriers.at[4 * wg + i] for i in range(4)]
        program = lax.axis_index("m") * ncl + (lax.axis_index("cl") if ncl > 1 else 0)
        rows = pl.ds(program * (wgs * bm) + wg * bm, bm)

        def take_turns():  # both warpgroups arrive: alternates their GEMM and activation phases
            if cfg.pingpong:
                plgpu.barrier_arrive(schedule)
                plgpu.barrier_wait(schedule)

        def prologue():
            plgpu.copy_gmem_to_smem(t_gmem.at[rows], t_s, bar[0])
            plgpu.copy_gmem_to_smem(b1_gmem, b1_s, bar[1])
            plgpu.copy_gmem_to_smem(b2_gmem, b2_s, bar[2])
            if has_residual and cfg.x_buffer:
                plgpu.copy_gmem_to_smem(x_gmem.at[rows], io_s, bar[3])
            plgpu.barrier_wait(bar[0])
            plgpu.barrier_wait(bar[1])

        def step(idx, w1_smem, w2_smem, acc):
            (e,) = idx

            def expand(acc1):
                plgpu.wgmma(acc1, t_s, w1_smem)
                take_turns()  # lets the other warpgroup issue its project and next expand GEMMs
                return acc1[...]  # waits for every wgmma in flight, the previous project GEMM too

            hid = pl.run_scoped(expand, plgpu.ACC((bm, bh), jnp.float32))
            bias = plgpu.load(b1_s.at[e], layout=plgpu.Layout.WGMMA.reduce(0))
            h = activation(hid + lax.broadcast_in_dim(bias, (bm, bh), [1])).astype(dt)
            take_turns()  # activation done; waits until the other warpgroup has issued its expand GEMM
            if cfg.h_regs:
                plgpu.wgmma(acc, h, w2_smem)
            else:
                h_s = h_smem.at[wg]
                h_s[...] = h
                plgpu.commit_smem()  # the threads' stores become visible to the async wgmma
                plgpu.wgmma(acc, h_s, w2_smem)
            if not cfg.delay_release:
                plgpu.wgmma_wait(0)  # w2_smem is released and h_s reused when the step returns
            return acc

        def epilogue(y):  # after every wgmma has completed
            if has_residual and not cfg.x_buffer:
                plgpu.copy_gmem_to_smem(x_gmem.at[rows], t_s, bar[3])
            plgpu.barrier_wait(bar[2])
            bias = plgpu.load(b2_s, layout=plgpu.Layout.WGMMA.reduce(0))
            y = y + lax.broadcast_in_dim(bias, (bm, c), [1])
            if has_residual:
                plgpu.barrier_wait(bar[3])
                y = y + plgpu.load(io_s, layout=plgpu.Layout.WGMMA).astype(jnp.float32)
            io_s[...] = y.astype(dt)  # the residual tile's buffer becomes the output tile
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(io_s, y_gmem.at[rows])
            plgpu.wait_smem_to_gmem(0)

        def run(eval_pipeline):  # in each compute warpgroup
            prologue()
            if cfg.pingpong:  # warpgroup 1 starts a phase behind; 0 catches up at the end (2n+1 arrivals each)
                pl.when(wg == 1)(take_turns)
            y = pl.run_scoped(lambda acc: eval_pipeline(acc)[...], plgpu.ACC((bm, c), jnp.float32))
            if cfg.pingpong:
                pl.when(wg == 0)(take_turns)
            epilogue(y)

        steps = cfg.max_concurrent_steps
        if not cfg.warp_specialized:
            def eval_pipeline(acc):
                plgpu.emit_pipeline(lambda idx, a, b: step(idx, a, b, acc), grid=(hidden // bh,),
                                    in_specs=weight_specs, max_concurrent_steps=steps)(w1_gmem, w2_gmem)
                return acc

            run(eval_pipeline)
        else:  # a producer warpgroup streams the weight chunks, shared by the compute warpgroups
            plgpu.emit_pipeline_warp_specialized(
                step, grid=(hidden // bh,), memory_registers=40, in_specs=weight_specs,
                max_concurrent_steps=steps, wg_axis="wg", num_compute_wgs=wgs,
                compute_context=run)(w1_gmem, w2_gmem)

    scratch = [plgpu.SMEM((wgs, bm, c), dt, transforms=tiles),
               plgpu.SMEM((wgs, bm, c), dt, transforms=tiles) if cfg.x_buffer else None,
               None if cfg.h_regs else plgpu.SMEM((wgs, bm, bh), dt, transforms=tiles),
               plgpu.SMEM((wgs, hidden // bh, bh), jnp.float32), plgpu.SMEM((wgs, c), jnp.float32),
               plgpu.Barrier(num_barriers=4 * wgs),
               plgpu.Barrier(num_arrivals=wgs) if cfg.pingpong else None]

    def body(*gmem):
        pl.run_scoped(lambda *smem: scoped(*gmem, *smem), *scratch,
                      **({"collective_axes": "wg"} if cfg.warp_specialized else {}))

    kernel = plgpu.kernel(
        body, out_type=jax.ShapeDtypeStruct((m, c), dt), grid=(m // (ncl * wgs * bm),), grid_names=("m",),
        **({"num_threads": wgs + 1, "thread_name": "wg"} if cfg.warp_specialized else {}),
        **({"cluster": (ncl,), "cluster_names": ("cl",)} if ncl > 1 else {}), interpret=interpret,
        compiler_params=plgpu.CompilerParams(approx_math=True))
    return kernel(t, x if has_residual else t, w1.astype(dt), b1.astype(jnp.float32).reshape(-1, bh), w2.astype(dt),
                  b2.astype(jnp.float32))


def convfirst_mosaic_mlp(x, params: ConvFirstParams, *, config: MosaicMLPConfig | None = None,
                         group_width: int, act: str = "silu", residual: bool = True, ln_eps: float = 1e-6):
    """The 'mosaic_mlp' implementation of `convfirst_block` (see module docstring). Off the GPU
    the kernel runs in Mosaic GPU's simulator (plgpu.InterpretGPUParams: CPU tests)."""
    if (reason := check(x, params, platform=jax.default_backend(), act=act)) is not None:
        raise UnsupportedError(f"mosaic_mlp: {reason}")
    n, h, w, c = x.shape
    hidden = params.w_expand.shape[1]
    cfg = config or heuristic(c, hidden)
    if (reason := _config_reason(cfg, c, hidden)) is not None:
        raise UnsupportedError(f"mosaic_mlp config {cfg}: {reason}")
    dt = x.dtype
    if params.ln_scale is not None:  # the xla_native graph, which the autodiff backward shares
        t = conv_norm(x, params, group_width=group_width, ln_eps=ln_eps, precise=False)
    else:  # the conv bias folds into the expand bias (already done in inference copies)
        t = compute_grouped_conv(x, params.w_conv, group_width, out_dtype=dt)
        params = params.with_conv_bias_folded()
    b_expand = params.b_expand
    m = n * h * w
    # a partial last cluster tile is padded (one extra copy; batch 128 needs none)
    rows = lambda a: pixel_rows(a, cfg.rows * cfg.cluster)  # noqa: E731
    y = mlp_mosaic(rows(t), rows(x) if residual else None, params.w_expand, b_expand,
                   params.w_project, params.b_project, act=act, config=cfg,
                   interpret=INTERPRET_PARAMS() if interpret_mode() else None)
    return y[:m].reshape(n, h, w, c)

