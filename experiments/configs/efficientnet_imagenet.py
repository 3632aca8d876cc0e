"""EfficientNet on ImageNet-1k with the published recipe (Tan & Le 2019; tensorflow/tpu
models/official/efficientnet). Documented here, not run in this repository.

Run (8 GPUs of one host; ImageNet prepared as array_record, see docs/datasets.md):

    convfirst train --config experiments/configs/efficientnet_imagenet.py:variant=b0 --workdir runs/efficientnet_b0

Several hosts: the same command on every host with `--distributed`. `:variant=b0,batch=1024`
scales the learning rate linearly (0.016 per 256). Pipeline check on Imagenette:
`:variant=b0,dataset=imagenette,epochs=30`.

Recipe: 350 epochs, RMSProp in TensorFlow form (decay 0.9, momentum 0.9, epsilon 1e-3, accumulator
initialised to 1), lr 0.016 per 256 images (0.256 at 4096), 5 warm-up epochs then x0.97 every
2.4 epochs, L2 weight decay 1e-5 (not on BatchNorm and biases), BatchNorm momentum 0.99 and epsilon
1e-3 (in the model), dropout 0.2-0.5 by variant (in the model), stochastic depth 0.2 (survival 0.8),
label smoothing 0.1, EMA 0.9999, bicubic random-resized crop + flip, centre crop res/(res+32).
Expected: published top-1 (paper) B0 77.1 ... B7 84.3; timm's reproduction of the TF weights: B0
76.5 (see `convfirst models`). Not implemented here, so expect a lower number: AutoAugment.
"""
from __future__ import annotations

from experiments.configs import common

RESOLUTION = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}
DATASETS = {  # name -> (TFDS name, train examples, eval split)
    "imagenet2012": ("imagenet2012", 1_281_167, "validation"),
    "imagenette": ("imagenette/full-size-v2", 9_469, "validation"),
}


def get_config(arg=None):
    arg = common.parse_arg(arg, variant="b0", batch=4096, epochs=350.0, res=0, dataset="imagenet2012",
                           precision="bf16")
    if arg.variant not in RESOLUTION:
        raise ValueError(f"unknown variant {arg.variant!r}; valid: {', '.join(RESOLUTION)}")
    if arg.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {arg.dataset!r}; valid: {', '.join(DATASETS)}")
    tfds_name, num_train, eval_split = DATASETS[arg.dataset]
    res = arg.res or RESOLUTION[arg.variant]
    c = common.base_config()
    c.precision = arg.precision
    c.model.name = f"efficientnet_{arg.variant}"
    c.model.drop_path_rate = 0.2
    c.data.name = tfds_name
    c.data.train_split, c.data.eval_split = "train", eval_split
    c.data.num_threads = 32
    c.data.prefetch = 2 * arg.batch  # examples decoded ahead (per process)
    c.aug.resolution = res
    c.aug.interpolation = "bicubic"
    c.aug.eval_crop_pct = res / (res + 32)
    c.batch_size = arg.batch
    c.total_epochs = arg.epochs
    c.label_smoothing = 0.1
    c.ema_decay = 0.9999
    c.optim.name = "rmsprop"
    c.optim.lr, c.optim.base_batch_size = 0.016, 256
    c.optim.rms_decay, c.optim.momentum, c.optim.eps = 0.9, 0.9, 1e-3
    c.optim.weight_decay = 1e-5
    c.schedule.name = "exponential"
    c.schedule.warmup_epochs = 5.0
    c.schedule.decay_epochs, c.schedule.decay_rate = 2.4, 0.97
    steps_per_epoch = num_train // arg.batch
    c.log_every = 100
    c.ckpt_every = max(1, steps_per_epoch // c.log_every) * c.log_every  # about one epoch
    c.eval_every = 5 * c.ckpt_every
    return c
