"""Model efficiency at small scale: the three block families trained briefly on scikit-learn's 8x8
digits on a CPU, test accuracy against MACs. Small scale (8x8 digits), not ImageNet: it shows the
pipeline end to end and how the families order at this size, nothing about ImageNet accuracy.

Models (tiny variants by spec overrides, two input resolutions each; digits are upsampled):
- ConvFirst: convfirst_pico (gconv 3x3 gw8 -> expand 4 -> SiLU -> project, BatchNorm), 8 and 16 px;
- ConvNeXt-style: convfirst_pico's layout with ConvNeXt's block (dw 7x7, LayerNorm, GELU, layer scale);
- EfficientNet: efficientnet_b0 at width 0.25, depth 0.25 (MBConv + squeeze-excite), 16 and 32 px
  (its five stride-2 stages leave nothing of an 8-px image).

Run (CPU: 30 min on a shared 2-core CPU, most of it the 16-px runs; training resumes inside a cell):

    convfirst reproduce small-scale --out benchmarks/results/small_scale

EfficientNet keeps TensorFlow's BatchNorm momentum 0.99, whose running statistics lag the weights in
runs this short: on the committed 16-px run the test accuracy is 86.1 % with the test batch's own
statistics and 25.6 % with the running statistics the report uses (eval mode), against 80.5 % train
accuracy. The report shows train and test accuracy side by side for that reason.

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
NOTE = ("EfficientNet keeps TensorFlow's BatchNorm momentum 0.99: in runs this short its running statistics "
        "lag the weights, so its test accuracy (eval mode) can fall far below its train accuracy.")


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
    label = "small scale (8x8 digits), not ImageNet" if a.dataset == "digits" else \
        f"small scale ({a.dataset}), not ImageNet"
    return experiment("small-scale", f"Model efficiency at {label}: accuracy against MACs", groups=groups,
                      cell_timeout_s=1800, label=label, note=NOTE)
