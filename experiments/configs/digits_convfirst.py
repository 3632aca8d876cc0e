"""Embedded demo: ConvFirst-pico on scikit-learn's real 8x8 handwritten digits, on a CPU.

Run (offline; the dataset ships inside scikit-learn):

    convfirst data prepare digits
    convfirst train --config experiments/configs/digits_convfirst.py --workdir runs/digits

Expected: val_accuracy >= 0.95 on the 360 held-out digits after 150 steps of batch 64 (6.7 epochs;
measured 0.983-0.989 in 2-3 minutes on a shared 2-core CPU, jax 0.11.2). Restarting the same command
resumes from the last checkpoint; `convfirst eval --workdir runs/digits` re-evaluates it.

Arguments (`:a=1,b=2`): steps (150), batch (64), precision (f32; bf16 is slow on CPUs),
model (convfirst_pico), quick (100 steps of batch 32, as in the CPU test: expect > 0.9,
measured 0.972).
"""
from __future__ import annotations

from experiments.configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, steps=150, batch=64, precision="f32", model="convfirst_pico", quick=False)
    c = common.base_config()
    c.precision = arg.precision
    c.model.name = arg.model
    c.model.drop_path_rate = 0.05
    c.data.name = "digits"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.num_threads = 2
    c.aug.resolution = 8
    c.aug.crop_scale = (0.6, 1.0)  # mild crops: an 8x8 digit has little to spare
    c.aug.crop_ratio = (0.8, 1.25)
    c.aug.flip = False  # mirrored digits are other symbols
    c.aug.eval_crop_pct = 1.0
    c.aug.mean, c.aug.std = (78.0,), (96.0,)  # pixel statistics of the digits
    c.batch_size = 32 if arg.quick else arg.batch
    c.total_steps = 100 if arg.quick else arg.steps
    c.optim.name = "adamw"
    c.optim.lr = 4e-3
    c.optim.weight_decay = 0.05
    c.schedule.warmup_steps = c.total_steps // 10
    c.label_smoothing = 0.1
    c.log_every = 25
    c.eval_every = 0 if arg.quick else 50
    c.ckpt_every = 50
    c.keep_ckpts = 2
    return c
