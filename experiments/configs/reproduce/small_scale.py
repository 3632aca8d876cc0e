"""Model efficiency at small scale: the three block families trained briefly on scikit-learn's 8x8
digits on a CPU, test accuracy against MACs. Small scale (8x8 digits), not ImageNet: it shows the
pipeline end to end and how the families order at this size, nothing about ImageNet accuracy.

Models (tiny variants by spec overrides, two input resolutions each; digits are upsampled):
- ConvFirst: convfirst_pico (gconv 3x3 gw8 -> expand 4 -> SiLU -> project, BatchNorm), 8 and 16 px;
- ConvNeXt-style: convfirst_pico's layout with ConvNeXt's block (dw 7x7, LayerNorm, GELU, layer scale);
- EfficientNet: efficientnet_b0 at width 0.25, depth 0.25 (MBConv + squeeze-excite), 16 and 32 px
  (its five stride-2 stages leave nothing of an 8-px image).

Run (CPU, about 10 min on 2 cores; training resumes inside a cell as well):

    convfirst reproduce small-scale --out benchmarks/results/small_scale

Arguments: steps (300), batch (64), seed (0), quick (100 steps, one resolution per family), test
(convfirst_pico at 8 px for 4 steps of 16: the CPU test), dataset (digits, prepared on the fly;
any other prepared TFDS image dataset works with in_chans set), data_dir ("" = $TFDS_DATA_DIR or
~/tensorflow_datasets), in_chans (1).
"""
from __future__ import annotations

from experiments.configs.reproduce import experiment, group
from train.config_utils import parse_arg

CONVNEXT_BLOCK = "kernel_size=7,group_width=1,norm=layer,act=gelu,layer_scale=1e-06"
FAMILIES = (  # family, model reference, resolutions
    ("convfirst", "convfirst_pico", (8, 16)),
    ("convnext", f"convfirst_pico:{CONVNEXT_BLOCK}", (8, 16)),
    ("efficientnet", "efficientnet_b0:width_mult=0.25,depth_mult=0.25", (16, 32)),
)
LABEL = "small scale (8x8 digits), not ImageNet"


def get_config(arg=None):
    a = parse_arg(arg, steps=300, batch=64, seed=0, quick=False, test=False, dataset="digits", data_dir="",
                  in_chans=1)
    families = FAMILIES[:1] if a.test else FAMILIES
    steps, batch = (4, 16) if a.test else (100 if a.quick else a.steps, a.batch)
    groups = []
    for family, ref, resolutions in families:
        model = f"{ref}{',' if ':' in ref else ':'}in_chans={a.in_chans}"
        res = resolutions[:1] if (a.quick or a.test) else resolutions
        groups.append(group(family, "train_small", {"model": (model,), "resolution": res}, family=family,
                            steps=steps, batch=batch, seed=a.seed, dataset=a.dataset, data_dir=a.data_dir))
    return experiment("small-scale", f"Model efficiency at {LABEL}: accuracy against MACs", groups=groups,
                      cell_timeout_s=900, label=LABEL)
