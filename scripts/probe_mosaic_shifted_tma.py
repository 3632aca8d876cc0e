"""CPU probe for the tensor-core grouped conv (docs/kernels.md, "What would close it"): can one TMA
load bring a tap's shifted pixel rows (start p0 + dy*W + dx, not a multiple of 8) into shared memory
in the layout a wgmma operand needs? Lowers small Mosaic GPU kernels for an abstract H100 and runs
the copy in Mosaic GPU's simulator; prints one line per case.

    python scripts/probe_mosaic_shifted_tma.py

Result with jax 0.11.2 (2026-12-01): a shifted start lowers only into shared memory tiled (1, 64)
or untiled; the (8, 64)-tiled, 128-byte-swizzled layout that wgmma takes needs a start provably a
multiple of 8 ("prove the divisibility of index 0"), and wgmma refuses a (1, 64)-tiled operand. The
simulator zero-fills the rows past the end, as TMA does, but a box that starts before row 0 comes
back all zero (TMA fills only the rows outside): kernels relying on negative starts cannot be
checked in the simulator.
"""
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pallas_kernels.common import lower_for_h100  # noqa: E402


def tiles(rows: int):
    return (plgpu.TilingTransform((rows, 64)), plgpu.SwizzleTransform(128))


def shifted_copy(x, *, shift: int, tile_rows: int, interpret: bool):
    """y[p*64:(p+1)*64] = x[p*64+shift : p*64+shift+64] through shared memory, one TMA load each."""
    m, c = x.shape

    def body(x_gmem, y_gmem):
        def scoped(s, bar):
            p = jax.lax.axis_index("m")
            plgpu.copy_gmem_to_smem(x_gmem.at[pl.ds(p * 64 + shift, 64)], s, bar)
            plgpu.barrier_wait(bar)
            plgpu.copy_smem_to_gmem(s, y_gmem.at[pl.ds(p * 64, 64)])
            plgpu.wait_smem_to_gmem(0)
        pl.run_scoped(scoped, plgpu.SMEM((64, c), x.dtype, transforms=tiles(tile_rows)), plgpu.Barrier(num_barriers=1))

    return plgpu.kernel(body, out_type=jax.ShapeDtypeStruct((m, c), x.dtype), grid=(m // 64,), grid_names=("m",),
                        interpret=plgpu.InterpretGPUParams() if interpret else None)(x)


def tap_wgmma(x, w, *, tile_rows: int):
    """One tap: a (64, 64) wgmma of an operand in shared memory tiled (tile_rows, 64)."""
    m, c = x.shape

    def body(x_gmem, w_gmem, y_gmem):
        def scoped(a_s, b_s, o_s, bar):
            p = jax.lax.axis_index("m")
            plgpu.copy_gmem_to_smem(x_gmem.at[pl.ds(pl.multiple_of(p * 64, 64), 64)], a_s, bar.at[0])
            plgpu.copy_gmem_to_smem(w_gmem, b_s, bar.at[1])
            plgpu.barrier_wait(bar.at[0])
            plgpu.barrier_wait(bar.at[1])

            def acc_fn(acc):
                plgpu.wgmma(acc, a_s, b_s)
                return acc
            acc = pl.run_state(acc_fn)(plgpu.ACC.init(jnp.zeros((64, 64), jnp.float32)))
            o_s[...] = acc[...].astype(o_s.dtype)
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(o_s, y_gmem.at[pl.ds(p * 64, 64)])
            plgpu.wait_smem_to_gmem(0)
        pl.run_scoped(scoped, plgpu.SMEM((64, c), x.dtype, transforms=tiles(tile_rows)),
                      plgpu.SMEM((c, 64), x.dtype, transforms=tiles(8)), plgpu.SMEM((64, 64), x.dtype, transforms=tiles(8)),
                      plgpu.Barrier(num_barriers=2))

    return plgpu.kernel(body, out_type=jax.ShapeDtypeStruct((m, 64), x.dtype), grid=(m // 64,), grid_names=("m",))(x, w)


def lowers(fn, *args) -> str:
    try:
        lower_for_h100(fn, *(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args))
        return "lowers"
    except Exception as e:  # the probe's answer is the message
        return f"refused: {type(e).__name__}: {str(e).splitlines()[0][:120]}"


def main():
    x = (jnp.arange(256 * 64, dtype=jnp.float32).reshape(256, 64) % 251).astype(jnp.bfloat16)
    w = jnp.ones((64, 64), jnp.bfloat16)
    padded = np.zeros((64 + 256 + 64, 64), np.float32)
    padded[64:320] = np.asarray(x, np.float32)
    for tile_rows in (8, 1):
        for shift in (0, -3, 3):
            fn = functools.partial(shifted_copy, shift=shift, tile_rows=tile_rows, interpret=False)
            y = np.asarray(shifted_copy(x, shift=shift, tile_rows=tile_rows, interpret=True), np.float32)
            exact = np.array_equal(y, padded[64 + shift:320 + shift])
            print(f"TMA copy, tiling ({tile_rows}, 64), start shifted by {shift:+d}: H100 {lowers(fn, x)}; "
                  f"simulator {'as TMA: rows outside zero-filled' if exact else 'differs from TMA (rows inside zeroed too)'}")
        print(f"wgmma operand tiled ({tile_rows}, 64): H100 {lowers(functools.partial(tap_wgmma, tile_rows=tile_rows), x, w)}")


if __name__ == "__main__":
    main()
