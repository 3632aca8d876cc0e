"""The block problems the GPU kernel tests run (tests/test_kernels_gpu.py), importable on CPU so that
tests/test_gpu_problems.py can check the expected refusals and candidate counts before a GPU run."""
from pallas_kernels.convfirst_block.mlp_mosaic import MosaicMLPConfig
from pallas_kernels.problems import BlockProblem

BATCH = 16


def mb(h, c, hidden, k, gw=1, **kw) -> BlockProblem:
    return BlockProblem("mbconv_block", BATCH, h, h, c, hidden, kernel_size=k, group_width=gw, **kw)


def cf(h, c, **kw) -> BlockProblem:
    return BlockProblem("convfirst_block", BATCH, h, h, c, 4 * c, **kw)


EFFICIENTNET_B0 = [  # stage shapes, without squeeze-excite (fusable) ...
    mb(112, 32, 32, 3, expand=False, cout=16, residual=False),  # stage 1: E = 1
    mb(56, 24, 144, 3),
    mb(28, 40, 240, 5),
    mb(14, 80, 480, 3),
    mb(14, 112, 672, 5),
    mb(7, 192, 1152, 5),
]
EFFICIENTNET_B0_SE = [  # ... and the real blocks: squeeze-excite, stride 2 (layer-wise and xla only)
    mb(112, 16, 96, 3, stride=2, se_channels=4, cout=24, residual=False),
    mb(56, 24, 144, 5, stride=2, se_channels=6, cout=40, residual=False),
    mb(56, 24, 144, 3, se_channels=6),
]
GROUPED_MBCONV = [mb(16, 256, 1024, 3, 8), mb(28, 64, 256, 3, 16)]  # spio's MBConv, group width 16
CONVFIRST = [cf(56, 64), cf(28, 128), cf(14, 256), cf(7, 512),
             cf(56, 96, kernel_size=7, group_width=1, act="gelu", layer_norm=True)]  # ConvNeXt-like
PROBLEMS = EFFICIENTNET_B0 + EFFICIENTNET_B0_SE + GROUPED_MBCONV + CONVFIRST
# The only refusals expected here (checked on CPU: tests/test_gpu_problems.py): pallas_fused does not run
# squeeze-excite, C > 256 or a non-power-of-two C; mosaic_mlp not C > 256, C % 64 or exact GELU. Any
# other refusal fails, and so does one of these starting to run (update the list).
EXPECTED_UNSUPPORTED = ({(p.label(), "pallas_fused") for p in EFFICIENTNET_B0_SE + CONVFIRST[3:]}
                        | {(p.label(), "mosaic_mlp") for p in CONVFIRST[3:]})

# The autotuner candidates (after the heuristic) the GPU tests compile and check per implementation.
CANDIDATE_PROBLEMS = [EFFICIENTNET_B0[1], EFFICIENTNET_B0[4], GROUPED_MBCONV[0], CONVFIRST[1]]
N_CANDIDATES = 3

# mosaic_mlp's GPU-only mechanisms (the simulator runs wgmma synchronously and takes no register
# operands): the register-fed project GEMM, with clusters, with the project GEMM left in flight
# across steps and with the ping-pong schedule, on shapes whose last cluster is padded (batch 16:
# 1296, 3136 and 784 pixels)
MOSAIC_GPU_ONLY = [(cf(9, 64), MosaicMLPConfig(64, 64, 2, True, 1, 2, True, 0)),
                   (cf(9, 64, act="relu", residual=False), MosaicMLPConfig(64, 64, 3, True, 2, 2, True, 1)),
                   (cf(14, 128), MosaicMLPConfig(64, 64, 2, False, 2, 1, True, 1)),
                   (cf(7, 256, layer_norm=True, act="gelu_tanh"), MosaicMLPConfig(64, 64, 2, True, 1, 1, True, 0)),
                   (cf(14, 128), MosaicMLPConfig(64, 64, 2, True, 2, 2, True, 0, pingpong=True)),
                   (cf(9, 128, act="relu"), MosaicMLPConfig(64, 64, 3, False, 2, 1, True, 1, pingpong=True))]
