"""The analytic cost model: MACs against independent jaxpr counts, traffic formulas of paper.md
section 4, the tensor machine's halo/recompute/workspace arithmetic, the waterline, the hardware table."""
from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import pytest

from convfirst.cost.analysis import analyze
from convfirst.cost.hardware import DEVICES, DTYPES, device_from_jax, get_device, get_dtype
from convfirst.cost.jaxpr_macs import traced_macs
from convfirst.cost.layers import layer_costs, model_macs
from convfirst.cost.tensor_machine import Tile, choose_tile, split_fused, tile_cost
from convfirst.cost.waterline import KernelLoad, efficiency, ideal_latency, waterline
from convfirst.models.specs import Conv, ConvFirstBlock, Head, MBConvBlock, ModelSpec
from pallas_kernels.convfirst_block.reference import ConvFirstParams, convfirst_block_reference
from pallas_kernels.mbconv_block.reference import MBConvParams, SqueezeExcite, mbconv_block_reference

BF16 = get_dtype("bf16")


def sds(*shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def single(block, size: int):
    """The LayerCost of `block` alone on a size x size input."""
    cin = block.dim if isinstance(block, ConvFirstBlock) else block.cin
    return layer_costs(ModelSpec("one", "test", size, (block,), in_chans=cin))[0]


# --- MACs and parameters against independent counts -------------------------------------------------

@pytest.mark.parametrize("block", [ConvFirstBlock(32, 3, 8, 4.0), ConvFirstBlock(24, 7, 1, 3.0, norm="layer"),
                                   ConvFirstBlock(16, 5, 16, 6.0, norm="none")])
def test_convfirst_block_macs_match_traced_reference_op(block):
    c, m, k, g = block.dim, block.hidden, block.kernel_size, block.group_width
    ln = (sds(c), sds(c)) if block.norm == "layer" else (None, None)
    params = ConvFirstParams(sds(k, k, g, c), sds(c), sds(c, m), sds(m), sds(m, c), sds(c), *ln)
    batch, size = 3, 10
    traced = traced_macs(lambda x, p: convfirst_block_reference(x, p, group_width=g), sds(batch, size, size, c), params)
    assert batch * single(block, size).macs == traced


@pytest.mark.parametrize("block,size", [(MBConvBlock(16, 24, 3, 2, 6.0), 14),  # stride 2, odd size, SE
                                        (MBConvBlock(16, 16, 5, 1, 4.0, se_ratio=0.0, group_width=8), 9),
                                        (MBConvBlock(32, 16, 3, 1, 1.0), 8)])  # no expansion
def test_mbconv_block_macs_match_traced_reference_op(block, size):
    c, m, co, k, g, s = block.cin, block.hidden, block.cout, block.kernel_size, block.group_width, block.stride
    se = SqueezeExcite(sds(m, block.se_channels), sds(block.se_channels), sds(block.se_channels, m), sds(m)) \
        if block.se_channels else None
    expand = (sds(c, m), sds(m)) if block.has_expand else (None, None)
    params = MBConvParams(*expand, sds(k, k, g, m), sds(m), sds(m, co), sds(co), se)
    batch = 2
    traced = traced_macs(lambda x, p: mbconv_block_reference(x, p, group_width=g, stride=s,
                                                             residual=block.has_residual),
                         sds(batch, size, size, c), params)
    assert batch * single(block, size).macs == traced


def test_conv_and_head_macs_and_params():
    spec = ModelSpec("t", "test", 32, (Conv(3, 16, 4, 4, bias=True, norm="layer", padding="VALID"),
                                       Conv(16, 32, 3, 2, groups=2, norm="batch", act="silu"),
                                       Conv(32, 64, 2, 2, norm="layer", norm_first=True, padding="VALID"),
                                       Head(64, 10, norm="layer")))
    costs = layer_costs(spec)
    assert [lc.out_shape for lc in costs] == [(8, 8, 16), (4, 4, 32), (2, 2, 64), (1, 1, 10)]
    assert [lc.macs for lc in costs] == [8 * 8 * 16 * 48, 4 * 4 * 32 * 9 * 8, 2 * 2 * 64 * 4 * 32, 64 * 10]
    assert [lc.params for lc in costs] == [48 * 16 + 16 + 32, 9 * 8 * 32 + 64, 4 * 32 * 64 + 64, 128 + 650]


def test_channel_mismatch_is_a_clear_error():
    spec = ModelSpec("bad", "test", 8, (Conv(3, 16, 3), ConvFirstBlock(32)))
    with pytest.raises(ValueError, match="expects 32 input channels, gets 16"):
        layer_costs(spec)


# --- layer-wise traffic (paper.md section 4) ------------------------------------------------------

@pytest.mark.parametrize("c,e", [(64, 4.0), (96, 6.0)])
def test_layerwise_traffic_per_pixel(c, e):
    size = 7
    cf = single(ConvFirstBlock(c, expand_ratio=e), size)
    assert sum(k.reads + k.writes for k in cf.kernels) == (5 + 2 * e) * c * size * size
    mb = single(MBConvBlock(c, c, expand_ratio=e, se_ratio=0.0), size)
    assert sum(k.reads + k.writes for k in mb.kernels) == (3 + 4 * e) * c * size * size
    ln = single(ConvFirstBlock(c, expand_ratio=e, norm="layer"), size)  # + the LayerNorm kernel's 2C
    assert sum(k.reads + k.writes for k in ln.kernels) == (7 + 2 * e) * c * size * size


def test_intensities_match_paper_table():
    """paper.md section 4: ConvFirst E=4, C=96: layer-wise folded 32.3 MAC/B; the block alone (no halo,
    no weights) 210 MAC/B."""
    lc = single(ConvFirstBlock(96), 56)
    px = 56 * 56
    layerwise = lc.macs / sum((k.reads + k.writes) * 2 for k in lc.kernels)
    assert layerwise == pytest.approx(32.3, abs=0.05)
    assert lc.macs / (2 * 96 * 2 * px) == pytest.approx(18 + 4 * 96 / 2)


# --- tensor machine -------------------------------------------------------------------------------

def test_tile_covering_the_image_reads_x_once_writes_y_once():
    lc = single(ConvFirstBlock(32), 8)
    tc = tile_cost(lc, Tile(8, 8, 64), BF16)
    assert tc.tiles_per_image == 1
    assert tc.read_bytes == tc.compulsory_read_bytes == tc.write_bytes == 8 * 8 * 32 * 2
    assert tc.halo_read_bytes == 0 and tc.recompute_macs == 0
    assert tc.macs == lc.macs
    assert tc.weight_bytes == sum(k.weights for k in lc.kernels) * 2


def test_halo_reads_and_workspace_by_hand():
    lc = single(ConvFirstBlock(32, expand_ratio=4.0), 16)  # k=3, 2x2 tiles of 8x8
    tc = tile_cost(lc, Tile(8, 8, 64), BF16)
    rows = 9 + 9  # each tile reads 8 rows + one halo row on its inner side (the outer one is padding)
    assert tc.tiles_per_image == 4
    assert tc.read_bytes == rows * rows * 32 * 2
    assert tc.halo_read_bytes == (rows * rows - 16 * 16) * 32 * 2
    assert tc.in_tile == (10, 10, 32)  # (TH+k-1) x (TW+k-1) for an interior tile
    assert tc.workspace == {"input_tile": 10 * 10 * 32 * 2, "conv_out": 64 * 32 * 2, "hidden_chunk": 64 * 64 * 2,
                            "accumulators": 64 * 32 * 4, "weight_chunk": 2 * 32 * 64 * 2}
    assert tc.l2_weight_bytes(batch=3) == 3 * 4 * tc.weight_bytes


def test_mbconv_recompute_of_expansion_on_halo():
    block = MBConvBlock(8, 8, 3, 1, 4.0, se_ratio=0.0)
    size, t = 32, 8
    tc = tile_cost(single(block, size), Tile(t, t, 32), BF16)
    rows = 9 + 10 + 10 + 9  # 4 tiles: inner tiles read a halo row on both sides
    assert tc.recompute_macs == (rows * rows - size * size) * 8 * 32
    # an interior tile expands (TH+k-1)(TW+k-1) pixels for TH*TW outputs (paper.md section 4)
    assert tc.in_tile[0] * tc.in_tile[1] / (t * t) == pytest.approx((t + 2) ** 2 / t ** 2)
    assert 1 < rows * rows / size ** 2 < (t + 2) ** 2 / t ** 2
    # no expansion conv: nothing to recompute
    assert tile_cost(single(MBConvBlock(8, 8, 3, 1, 1.0, se_ratio=0.0), size), Tile(t, t, 8), BF16).recompute_macs == 0


def test_strided_mbconv_tiles_follow_tf_same_padding():
    block = MBConvBlock(8, 16, 3, 2, 6.0, se_ratio=0.0)  # 16 -> 8, TF 'SAME' pads 0 before, 1 after
    tc = tile_cost(single(block, 16), Tile(4, 4, 48), BF16)
    rows = 9 + 8  # outputs 0-3 read input rows 0-8; outputs 4-7 read rows 8-15 (16 is padding)
    assert tc.read_bytes == rows * rows * 8 * 2
    assert tc.write_bytes == 8 * 8 * 16 * 2
    assert tc.recompute_macs == (rows * rows - 16 * 16) * 8 * 48


def test_squeeze_excite_splits_the_fused_block_at_the_global_pool():
    lc = single(MBConvBlock(16, 16, 3, 1, 4.0), 8)
    fused, rest = split_fused(lc)
    assert [k.name for k in rest] == ["se", "project"]
    assert rest[0].reads == 64  # the pooled vector, not the hidden map
    tc = tile_cost(lc, Tile(8, 8, 64), BF16)
    assert tc.write_bytes == 8 * 8 * 64 * 2  # the hidden map leaves the chip for SE and the projection
    assert tc.macs + sum(k.macs for k in rest) == lc.macs


def test_choose_tile():
    lc = single(ConvFirstBlock(64), 6)
    tile = choose_tile(lc, BF16, 10 ** 9)
    assert (tile.h, tile.w, tile.chunk) == (6, 6, 64)  # 8x8 clipped to the 6x6 output
    small = tile_cost(lc, Tile(2, 2, 32), BF16).workspace_bytes
    assert choose_tile(lc, BF16, small) == Tile(2, 2, 32)
    assert choose_tile(lc, BF16, 100) is None


# --- waterline ------------------------------------------------------------------------------------

def test_waterline_by_hand():
    kernels = [KernelLoad("a", 100.0, 10.0), KernelLoad("b", 10.0, 100.0), KernelLoad("c", 50.0, 5.0, 10.0)]
    w = waterline(kernels, peak_macs_per_s=10.0, dram_bytes_per_s=5.0)
    assert [k.bound_s for k in w.kernels] == [10.0, 20.0, 6.0]
    assert w.waterline_s == 36.0 and w.ideal_s == 16.0
    assert w.memory_bound_loss_s == 19.0 and w.recompute_loss_s == 1.0
    assert w.waterline_s == pytest.approx(w.ideal_s + w.memory_bound_loss_s + w.recompute_loss_s)
    assert w.roofline_s == max(17.0, 23.0) < w.waterline_s
    assert w.efficiency_bound == pytest.approx(16 / 36)
    with pytest.raises(ValueError, match="measured"):
        _ = w.kernel_loss_s
    m = waterline(kernels, 10.0, 5.0, measured_s=[12.0, 20.0, 8.0])
    assert m.kernel_loss_s == pytest.approx(4.0) and m.measured_efficiency == pytest.approx(16 / 40)
    assert m.to_dict()["measured_s"] == 40.0
    with pytest.raises(ValueError, match="2 measured times for 3 kernels"):
        waterline(kernels, 10.0, 5.0, measured_s=[1.0, 2.0])
    assert ideal_latency(4.5e9, 494.7e12) == pytest.approx(9.096e-6, rel=1e-3)
    assert efficiency(4.5e9 * 128, 2e-3, 494.7e12) == pytest.approx(4.5e9 * 128 / (2e-3 * 494.7e12))


# --- hardware -------------------------------------------------------------------------------------

def test_hardware_table():
    assert {"h100", "h100_pcie", "h200", "a100", "rtx3090", "rtx4090", "a5000"} <= set(DEVICES)
    h100 = get_device("h100")
    assert h100.peak_macs("bf16") == pytest.approx(494.7e12)
    assert h100.dram_bytes_per_s == 3.35e12
    assert h100.ridge("bf16") == pytest.approx(147.7, abs=0.1)
    assert get_device("rtx3090").ridge("fp16_acc16") == pytest.approx(75.9, abs=0.1)  # paper.md: ~76
    for d in DEVICES.values():
        assert set(d.dense_tflops) == set(DTYPES) and d.source
        assert d.dense_tflops["tf32"] < d.dense_tflops["bf16"] <= d.dense_tflops["fp16_acc16"]
    assert get_device("rtx4090").peak_macs("fp16_acc16") == pytest.approx(2 * get_device("rtx4090").peak_macs("fp16"), rel=1e-3)
    assert get_device("a5000").peak_macs("fp16_acc16") == get_device("a5000").peak_macs("fp16")


def test_device_from_jax_and_errors():
    assert device_from_jax("NVIDIA H100 80GB HBM3").key == "h100"
    assert device_from_jax("NVIDIA GeForce RTX 3090").key == "rtx3090"
    with pytest.raises(ValueError, match="known kinds: .*NVIDIA H200"):
        device_from_jax("cpu")
    with pytest.raises(ValueError, match="valid: h100, h100_pcie"):
        get_device("tpu")
    with pytest.raises(ValueError, match="valid: bf16, fp16"):
        get_dtype("int8")


# --- whole-model analysis -------------------------------------------------------------------------

def small_convfirst(resolution: int = 64) -> ModelSpec:
    return ModelSpec("small", "convfirst", resolution, (
        Conv(3, 32, 4, 4, norm="batch", padding="VALID"), ConvFirstBlock(32), ConvFirstBlock(32),
        Conv(32, 64, 2, 2, norm="batch", padding="VALID"), ConvFirstBlock(64), Head(64, 10, norm="layer")))


def test_analysis_fused_vs_layerwise():
    a = analyze(small_convfirst(), "h100", batch=8, dtype="bf16")
    assert a.macs == model_macs(a.spec)
    assert a.layerwise.macs == a.fused.macs == 8 * a.macs
    for b in a.blocks:
        if b.layer.fusable:
            assert b.fused.dram_bytes < b.layerwise.dram_bytes and len(b.fused.kernels) == 1
        else:  # stem, downsampling and head run layer-wise in both executions
            assert b.fused.kernels == b.layerwise.kernels
    assert a.fused.waterline_s < a.layerwise.waterline_s
    assert a.ideal_s == pytest.approx(8 * a.macs / 494.7e12)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["blocks"][1]["tile"]["tile"] == "8x8/m64" and d["blocks"][0]["fused_as"].startswith("layer-wise")
    # each full 8x8 tile re-reads the block's weights from L2 for 64 pixels: ~64 / 2 bytes MAC per byte
    assert d["blocks"][1]["tile"]["l2_weight_intensity"] == pytest.approx(32, rel=0.02)
    assert math.isclose(d["fused"]["efficiency_bound"], a.ideal_s / a.fused.waterline_s)


def test_analysis_forced_tile_and_errors():
    a = analyze(small_convfirst(), tile=(4, 2))
    assert a.blocks[1].tile.tile == Tile(4, 2, 64)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        analyze(small_convfirst(), batch=0)
    with pytest.raises(ValueError, match="unknown device 'v100'; valid: h100"):
        analyze(small_convfirst(), device="v100")


# --- every registered model: MACs and params against the Flax network ------------------------------

def _abstract_eval_model(name):
    from flax import nnx

    from convfirst.models import create_model

    model = nnx.eval_shape(lambda: create_model(name, impl="xla"))  # shapes only: no parameter is created
    model.eval()  # the inference form (BatchNorm folded) that the cost model describes
    return model


def _registered():
    from convfirst.models import list_models

    return list_models()


@pytest.mark.parametrize("name", _registered())
def test_registered_model_macs_and_params_match_the_flax_network(name):
    from flax import nnx

    model = _abstract_eval_model(name)
    graphdef, state = nnx.split(model)
    spec = model.spec
    x = jax.ShapeDtypeStruct((1, spec.resolution, spec.resolution, spec.in_chans), jnp.float32)
    assert model_macs(spec) == traced_macs(lambda s, im: nnx.merge(graphdef, s)(im), state, x)
    n_params = sum(v.size for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert sum(lc.params for lc in layer_costs(spec)) == n_params


def test_published_anchor_counts():
    """anchors.md: ConvNeXt-T 28,589,128 params / 4.456 GMACs, EfficientNet-B0 5,288,548 / 0.386."""
    from convfirst.models import model_spec

    assert model_macs(model_spec("convnext_tiny")) == 4_455_531_264
    assert sum(lc.params for lc in layer_costs(model_spec("convnext_tiny"))) == 28_589_128
    assert model_macs(model_spec("efficientnet_b0")) == 385_814_752
    assert sum(lc.params for lc in layer_costs(model_spec("efficientnet_b0"))) == 5_288_548


def test_kernel_breakdown_sorts_kernels_into_kinds(tmp_path, capsys):
    """Kernel names -> kinds (an XLA 'convert' fusion is not a conv; an implicit-GEMM conv is a conv),
    shares summing to 1, and the CLI over a bench JSONL."""
    import json

    from convfirst.cost import kernel_breakdown as kb

    per_kernel = [("body_mosaic_gpu_kernel", 1.0), ("gconv_k3_g8_s1__1", 0.5), ("gemm_256x1024_silu", 0.5),
                  ("sm80_xmma_fprop_implicit_gemm_bf16", 0.5), ("implicit_convolve_sgemm", 0.5),
                  ("loop_convert_fusion_12", 0.25), ("loop_convert_fusion_13", 0.25), ("nvjet_sm90_tst_128", 0.5),
                  ("_Z33convolve_common_engine_float_NHWC", 0.5), ("mystery_kernel", 0.5)]
    rows = {b["kind"]: b for b in kb.breakdown(per_kernel)}
    ours = rows["our kernels (Pallas)"]
    assert ours["ms"] == 2.0 and ("gconv_k3_g8_s1", 0.5) in ours["top"]  # instance suffix "__1" stripped
    assert rows["cuDNN conv"]["ms"] == 1.0 and rows["cuDNN conv, generic engine"]["kernels"] == 1
    fusion = rows["XLA fusion (elementwise/reduce/transpose)"]
    assert fusion["kernels"] == 2 and fusion["top"] == [("loop_convert_fusion", 0.5)]  # instances merged
    assert rows["GEMM (cuBLAS/XLA)"]["ms"] == 0.5 and rows["other"]["ms"] == 0.5
    assert abs(sum(b["share"] for b in rows.values()) - 1) < 1e-12
    assert list(rows)[0] == "our kernels (Pallas)"  # largest first
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(dict(model="m", impl="auto", kind="model", device="GPU", infer_batch_size=8,
                                    dtype="bf16", per_kernel=per_kernel, infer_wall_time=7.5,
                                    infer_pipelined_time=6.25)) + "\n")
    assert kb.main([str(path)]) == 0
    assert ("m impl=auto: 5.000 ms of kernels in 10 launches; wall 7.500 ms; pipelined 6.250 ms (GPU, batch 8, "
            "bf16)") in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no model row"):
        kb.main([str(path), "--impl", "xla"])
