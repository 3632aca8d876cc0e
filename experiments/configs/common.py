"""Defaults shared by every training config: one place that lists every key the trainer reads.

Configs start from `base_config()` and change what their recipe needs; the result is locked by the
loader, so `--config.KEY=VALUE` can only set keys listed here.
"""
from __future__ import annotations

import ml_collections

from train.config_utils import parse_arg  # noqa: F401  re-exported for configs: common.parse_arg

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.precision = "bf16"  # f32 | bf16 | fp16 (fp16 adds dynamic loss scaling)
    c.num_devices = 0  # 0: every device of every process (data parallel); n: the first n (single process)
    c.batch_size = 128  # global, over all devices and processes
    c.eval_batch_size = 0  # 0: batch_size
    c.total_steps = 0  # exactly one of total_steps / total_epochs is positive
    c.total_epochs = 0.0
    c.label_smoothing = 0.0
    c.ema_decay = 0.0  # 0 disables the weight EMA; evaluated as val_ema_* when enabled

    c.model = ml_collections.ConfigDict()
    c.model.name = "convfirst_pico"  # any name in `convfirst models`
    # block-op implementation, "a+b" (a where it runs, else b), or per op: "convfirst_block=pallas_fused,mbconv_block=xla"
    c.model.impl = "auto"
    c.model.bwd_impl = "auto"  # the backward's, chosen separately (same syntax): "xla", "pallas_fused", ...
    c.model.drop_path_rate = 0.0  # stochastic depth, linear over blocks
    c.model.remat = False  # recompute each block's activations in the backward pass
    c.model.kwargs = ml_collections.ConfigDict()  # family overrides for create_model (e.g. norm, act)

    c.data = ml_collections.ConfigDict()
    c.data.name = "digits"  # TFDS name or dataset directory, prepared as array_record (docs/datasets.md)
    c.data.data_dir = ""  # "": $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.train_split = "train"
    c.data.eval_split = "test"  # "": no evaluation
    c.data.image_key = "image"
    c.data.label_key = "label"
    c.data.num_classes = 0  # 0: from the dataset's label feature
    c.data.num_threads = 4  # grain reader threads (decode + augment)
    c.data.prefetch = 256  # examples decoded ahead by the grain threads
    c.data.device_prefetch = 2  # batches in flight to the devices

    c.aug = ml_collections.ConfigDict()
    c.aug.resolution = 224
    c.aug.crop_scale = (0.08, 1.0)  # random-resized-crop area range
    c.aug.crop_ratio = (3 / 4, 4 / 3)  # random-resized-crop aspect range
    c.aug.flip = True
    c.aug.interpolation = "bilinear"  # bilinear | bicubic | nearest
    c.aug.eval_crop_pct = 0.875  # centre crop of the shorter side at evaluation
    c.aug.mean = IMAGENET_MEAN  # on the 0..255 scale, per channel
    c.aug.std = IMAGENET_STD
    c.aug.mixup = 0.0  # Beta(alpha, alpha); 0 disables
    c.aug.cutmix = 0.0
    c.aug.mix_prob = 1.0
    c.aug.switch_prob = 0.5

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"  # adamw | lamb | sgd | rmsprop
    c.optim.lr = 1e-3
    c.optim.base_batch_size = 0  # >0: lr scales linearly with batch_size / base_batch_size
    c.optim.weight_decay = 0.05  # never on biases and norm parameters
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.momentum = 0.9  # sgd and rmsprop
    c.optim.nesterov = False
    c.optim.rms_decay = 0.9
    c.optim.mu_dtype = "float32"  # bfloat16 halves first-moment memory
    c.optim.grad_clip = 0.0  # global-norm clipping; 0 disables

    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "cosine"  # cosine | exponential | constant (after linear warm-up)
    c.schedule.warmup_steps = 0
    c.schedule.warmup_epochs = 0.0
    c.schedule.warmup_init_lr = 0.0
    c.schedule.end_lr = 0.0
    c.schedule.decay_epochs = 0.0  # exponential: decay every this many epochs
    c.schedule.decay_rate = 1.0

    c.loss_scale = ml_collections.ConfigDict()  # fp16 only
    c.loss_scale.init = 2.0 ** 15
    c.loss_scale.period = 2000

    c.log_every = 50
    c.eval_every = 0  # 0: at the end only; else a multiple of log_every
    c.ckpt_every = 1000  # a multiple of log_every; also at the end
    c.keep_ckpts = 3
    c.progress = True
    return c
