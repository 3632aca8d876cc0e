"""ConvNeXt on ImageNet-1k with the published recipe (Liu et al. 2022, facebookresearch/ConvNeXt
main.py + TRAINING.md). Documented here, not run in this repository.

Run (8 GPUs of one host; ImageNet prepared as array_record, see docs/datasets.md):

    convfirst train --config experiments/configs/convnext_imagenet.py:variant=tiny --workdir runs/convnext_tiny

Several hosts: the same command on every host with `--distributed` (jax.distributed.initialize).
Smaller global batch: `:variant=tiny,batch=1024` scales the learning rate linearly (4e-3 per 4096).
Quick check of the whole pipeline on Imagenette (10 classes, prepare it first):
`:variant=tiny,dataset=imagenette,epochs=20`.

Recipe: 300 epochs, AdamW (0.9, 0.999), lr 4e-3 at batch 4096, weight decay 0.05 (not on norms and
biases), 20 warm-up epochs then cosine to 1e-6, label smoothing 0.1, mixup 0.8, cutmix 1.0 (switch 0.5),
stochastic depth 0.1/0.4/0.5/0.5 (T/S/B/L), EMA 0.9999, bicubic random-resized crop + flip, centre
crop 0.875 at 224, bf16 compute.
Expected: published top-1 at 224: T 82.1, S 83.1, B 83.8, L 84.3 (EMA weights are reported for
T with EMA: compare val_ema_accuracy). Not implemented here, so expect a lower number: RandAugment
(rand-m9-mstd0.5-inc1), random erasing 0.25 and colour jitter 0.4.
"""
from __future__ import annotations

from experiments.configs import common

DROP_PATH = {"tiny": 0.1, "small": 0.4, "base": 0.5, "large": 0.5}
DATASETS = {  # name -> (TFDS name, train examples, eval split)
    "imagenet2012": ("imagenet2012", 1_281_167, "validation"),
    "imagenette": ("imagenette/full-size-v2", 9_469, "validation"),
}


def get_config(arg=None):
    arg = common.parse_arg(arg, variant="tiny", batch=4096, epochs=300.0, res=224, dataset="imagenet2012",
                           precision="bf16")
    if arg.variant not in DROP_PATH:
        raise ValueError(f"unknown variant {arg.variant!r}; valid: {', '.join(DROP_PATH)}")
    if arg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {arg.dataset!r}; valid: {', '.join(DATASETS)}")
    tfds_name, num_train, eval_split = DATASETS[arg.dataset]
    c = common.base_config()
    c.precision = arg.precision
    c.model.name = f"convnext_{arg.variant}"
    c.model.drop_path_rate = DROP_PATH[arg.variant]
    c.data.name = tfds_name
    c.data.train_split, c.data.eval_split = "train", eval_split
    c.data.num_threads = 32
    c.data.prefetch = 2 * arg.batch  # examples decoded ahead (per process)
    c.aug.resolution = arg.res
    c.aug.interpolation = "bicubic"
    c.aug.eval_crop_pct = 0.875
    c.aug.mixup, c.aug.cutmix, c.aug.switch_prob = 0.8, 1.0, 0.5
    c.batch_size = arg.batch
    c.total_epochs = arg.epochs
    c.label_smoothing = 0.1
    c.ema_decay = 0.9999
    c.optim.name = "adamw"
    c.optim.lr, c.optim.base_batch_size = 4e-3, 4096
    c.optim.weight_decay = 0.05
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 20.0 * arg.epochs / 300
    c.schedule.end_lr = 1e-6
    steps_per_epoch = num_train // arg.batch
    c.log_every = 100
    c.ckpt_every = max(1, steps_per_epoch // c.log_every) * c.log_every  # about one epoch
    c.eval_every = 5 * c.ckpt_every
    return c
