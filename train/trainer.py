"""The training loop: config -> model, optimizer, data, mesh, checkpoints -> metrics.jsonl.

`train(config, workdir)` resumes from the newest valid checkpoint in `workdir` (parameters, optimizer
state, BatchNorm statistics, RNG streams, step and the data iterator position), so a run that is
killed and restarted with the same command writes the same metrics as one that never stopped.
Device metrics are fetched only every `log_every` steps; checkpoints are taken at log steps
(`ckpt_every` is a multiple of `log_every`) after the non-finite check, so a diverged state is never
saved over the last good one.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from train import config_utils, data, metrics as metrics_lib, optim, sharding, step as step_lib
from train.checkpoint import Checkpointer
from train.mixed_precision import DynamicLossScale, get_policy
from train.state import create_train_state, param_count

log = logging.getLogger("train")
CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss or gradient; nothing was saved after the last good step."""


@dataclass(frozen=True)
class Plan:
    """Step counts derived from the config and the dataset size."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    decay_every: int
    learning_rate: float


def make_plan(config, num_train: int) -> Plan:
    steps_per_epoch = num_train // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {num_train} training examples")
    if (config.total_steps > 0) == (config.total_epochs > 0):
        raise ValueError(f"set exactly one of total_steps ({config.total_steps}) and total_epochs "
                         f"({config.total_epochs}) to a positive value")
    epochs = lambda e: int(round(e * steps_per_epoch))
    total = config.total_steps or epochs(config.total_epochs)
    sched = config.schedule
    if sched.warmup_steps and sched.warmup_epochs:
        raise ValueError("set at most one of schedule.warmup_steps and schedule.warmup_epochs")
    lr = config.optim.lr * (config.batch_size / config.optim.base_batch_size if config.optim.base_batch_size else 1)
    return Plan(steps_per_epoch, total, sched.warmup_steps or epochs(sched.warmup_epochs),
                epochs(sched.decay_epochs), lr)


def check_config(config) -> None:
    for key in ("log_every", "ckpt_every"):
        if config[key] <= 0:
            raise ValueError(f"{key} must be positive, got {config[key]}")
    if config.ckpt_every % config.log_every:
        raise ValueError(f"ckpt_every={config.ckpt_every} must be a multiple of log_every={config.log_every} "
                         f"(checkpoints are taken where metrics are checked and logged)")
    if config.eval_every % config.log_every:
        raise ValueError(f"eval_every={config.eval_every} must be a multiple of log_every={config.log_every}")


def build_model(config, num_classes: int, dtype) -> nnx.Module:
    from convfirst.models import create_model
    from convfirst.models.net import parse_impl
    from train.remat import remat_blocks

    m = config.model
    model = create_model(m.name, rngs=nnx.Rngs(config.seed), dtype=dtype, impl=parse_impl(m.impl),
                         bwd_impl=parse_impl(m.bwd_impl),
                         num_classes=num_classes, resolution=config.aug.resolution,
                         drop_path_rate=m.drop_path_rate, **m.kwargs.to_dict())
    if m.remat:
        remat_blocks(model)
    return model


def step_settings(config, num_classes: int) -> step_lib.StepSettings:
    a = config.aug
    return step_lib.StepSettings(num_classes=num_classes, mean=tuple(a.mean), std=tuple(a.std),
                                 label_smoothing=config.label_smoothing, mixup_alpha=a.mixup,
                                 cutmix_alpha=a.cutmix, mix_prob=a.mix_prob, switch_prob=a.switch_prob,
                                 ema_decay=config.ema_decay)


class Run:
    """Everything a train or eval run builds from a config, before any step runs."""

    def __init__(self, config, workdir: str | Path, *, need_train_data: bool = True):
        self.config, self.workdir = config, Path(workdir)
        check_config(config)
        self.policy = get_policy(config.precision)
        self.mesh = sharding.make_mesh(config.num_devices)
        sharding.check_batch_size(config.batch_size, self.mesh)
        self.eval_batch_size = config.eval_batch_size or config.batch_size
        sharding.check_batch_size(self.eval_batch_size, self.mesh, "eval_batch_size")
        d = config.data
        self.train_source = data.open_source(d.name, d.train_split, d.data_dir) if need_train_data else None
        self.eval_source = data.open_source(d.name, d.eval_split, d.data_dir) if d.eval_split else None
        self.num_classes = d.num_classes or data.num_classes_of(self.train_source or self.eval_source, d.label_key)
        self.plan = make_plan(config, len(self.train_source)) if need_train_data else None

        model = build_model(config, self.num_classes, self.policy.compute_dtype)
        o, s = config.optim, config.schedule
        total = self.plan.total_steps if self.plan else 1
        self.schedule = optim.make_schedule(
            s.name, lr=self.plan.learning_rate if self.plan else o.lr, total_steps=total,
            warmup_steps=self.plan.warmup_steps if self.plan else 0, warmup_init_lr=s.warmup_init_lr,
            end_lr=s.end_lr, decay_every=self.plan.decay_every if self.plan else 1, decay_rate=s.decay_rate)
        self.tx = optim.make_optimizer(o.name, self.schedule, weight_decay=o.weight_decay, b1=o.b1, b2=o.b2,
                                       eps=o.eps, momentum=o.momentum, nesterov=o.nesterov,
                                       rms_decay=o.rms_decay, mu_dtype=o.mu_dtype, grad_clip=o.grad_clip)
        loss_scale = (DynamicLossScale.create(config.loss_scale.init, config.loss_scale.period)
                      if self.policy.loss_scaling else None)
        self.model_def, state = create_train_state(model, self.tx, seed=config.seed, ema=config.ema_decay > 0,
                                                   loss_scale=loss_scale, flat_params=o.name in optim.ELEMENTWISE)
        self.state_sharding = jax.tree.map(lambda _: sharding.replicated(self.mesh), state)
        self.state = sharding.replicate(state, sharding.replicated(self.mesh))
        self.settings = step_settings(config, self.num_classes)
        self.checkpointer = Checkpointer(self.workdir / CHECKPOINT_DIR, keep=config.keep_ckpts)
        self.is_chief = jax.process_index() == 0

    def evaluate(self, eval_fn, state, prefix: str = "val") -> dict:
        """Loss and accuracy over the whole eval split (and of the EMA weights when there are some)."""
        c, a = self.config, self.config.aug
        weights = {prefix: state.params} | ({f"{prefix}_ema": self.model_def.layout.unflatten(state.ema_params)}
                                            if state.ema_params is not None else {})
        results = {}
        for name, params in weights.items():
            totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
            batches = data.eval_batches(
                self.eval_source, batch_size=self.eval_batch_size,
                augment=data.EvalAugment(a.resolution, a.eval_crop_pct, a.interpolation),
                image_key=c.data.image_key, label_key=c.data.label_key, process_index=jax.process_index(),
                process_count=jax.process_count(), num_threads=c.data.num_threads)
            sums = [eval_fn(params, state.batch_stats, state.rest, batch)
                    for batch, _ in sharding.prefetch_to_device(batches, sharding.batch_sharding(self.mesh))]
            for s in jax.device_get(sums):
                for k in totals:
                    totals[k] += float(s[k])
            results[f"{name}_loss"] = totals["loss"] / totals["count"]
            results[f"{name}_accuracy"] = totals["correct"] / totals["count"]
        return results

    def jitted_eval(self):
        eval_step = step_lib.make_eval_step(self.model_def, self.policy, self.settings)
        return jax.jit(eval_step, out_shardings=sharding.replicated(self.mesh))

    def restore(self, step: int | None = None):
        """Restore in place; returns (step, data position) or (0, None) when there is no checkpoint."""
        restored = self.checkpointer.restore(self.state, step)
        if restored is None:
            return 0, None
        self.state, position, restored_step = restored
        return restored_step, position


def train(config, workdir: str | Path, *, stop_at_step: int | None = None) -> dict:
    """Train (or resume) to `config.total_steps`; returns the last logged train and eval metrics.

    `stop_at_step` ends the run after that step as a preemption would, with a checkpoint there, e.g. to
    split a long run into fixed-length jobs; the same command then continues it.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = Run(config, workdir)
    c, plan = config, run.plan
    start, position = run.restore()
    if run.is_chief:
        _write_config(config, workdir, resumed=start > 0)
    progress = metrics_lib.Progress(plan.total_steps, start, enabled=c.progress and run.is_chief)
    say = progress.print if run.is_chief else (lambda message: None)
    say(f"{c.model.name}: {param_count(run.state.params) / 1e6:.3f}M params, {plan.total_steps} steps "
                   f"({plan.steps_per_epoch}/epoch), batch {c.batch_size} on {run.mesh.size} device(s), "
                   f"{c.precision}" + (f"; resuming at step {start}" if start else ""))
    writer = metrics_lib.MetricsWriter(workdir, resume_step=start, enabled=run.is_chief)
    if start >= plan.total_steps:
        say(f"{workdir} already holds the final checkpoint (step {start})")
        progress.close()
        return {}

    a = c.aug
    loader = data.train_loader(
        run.train_source, batch_size=c.batch_size, seed=c.seed,
        augment=data.TrainAugment(a.resolution, tuple(a.crop_scale), tuple(a.crop_ratio), a.flip, a.interpolation),
        image_key=c.data.image_key, label_key=c.data.label_key, process_index=jax.process_index(),
        process_count=jax.process_count(), num_threads=c.data.num_threads, prefetch=c.data.prefetch)
    if position is not None:
        if position.get("process_count", 1) != jax.process_count():
            raise ValueError(f"the checkpoint in {workdir} was written by {position.get('process_count', 1)} "
                             f"processes; resume it with the same number (now {jax.process_count()})")
        loader.set_state(position["train_iterator"])
    batches = sharding.prefetch_to_device(loader, sharding.batch_sharding(run.mesh), c.data.device_prefetch,
                                          state_fn=loader.get_state)
    train_step = jax.jit(step_lib.make_train_step(run.model_def, run.tx, run.schedule, run.policy, run.settings),
                         donate_argnums=0, out_shardings=(run.state_sharding, sharding.replicated(run.mesh)))
    eval_fn = run.jitted_eval() if run.eval_source is not None else None

    state, pending, last = run.state, [], {}
    last_ckpt = start
    timer_step, timer = start, None
    end = plan.total_steps if stop_at_step is None else min(stop_at_step, plan.total_steps)
    try:
        for step in range(start + 1, end + 1):
            batch, position = next(batches)
            state, step_metrics = train_step(state, batch)
            pending.append(step_metrics)
            if timer is None:  # exclude compilation from throughput: time from the end of the first step
                jax.block_until_ready(step_metrics)
                timer_step, timer = step, time.perf_counter()
            progress.update(step)
            final = step == end
            if not (step % c.log_every == 0 or final):
                continue
            window = jax.device_get(pending)
            pending = []
            _check_finite(window, step, last_ckpt, run)
            now = time.perf_counter()
            last = _summarize(window)
            if step > timer_step:
                step_time = (now - timer) / (step - timer_step)
                last |= {"step_time": step_time, "img_per_sec": c.batch_size / step_time}
            timer_step, timer = step, now
            if eval_fn is not None and ((c.eval_every and step % c.eval_every == 0) or step == plan.total_steps):
                last |= run.evaluate(eval_fn, state)
                timer = time.perf_counter()
            writer.write(step, last)
            progress.update(step, _short(last))
            if step % c.ckpt_every == 0 or final:
                run.checkpointer.save(step, state, {"train_iterator": position,
                                                    "process_count": jax.process_count()})
                last_ckpt = step
        run.checkpointer.wait()
    finally:
        run.checkpointer.close()
        progress.close()
    if "val_accuracy" in last:
        say(f"step {step}: " + _short(last))
    return last


def evaluate(workdir: str | Path, *, step: int | None = None, overrides=()) -> dict:
    """Evaluate the latest (or `step`'s) checkpoint of a training workdir with its saved config."""
    workdir = Path(workdir)
    config_path = workdir / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: is {workdir} a training workdir?")
    config = config_utils.config_from_json(config_path, overrides)
    run = Run(config, workdir, need_train_data=False)
    if run.eval_source is None:
        raise ValueError("the config has no data.eval_split; set --config.data.eval_split=SPLIT")
    restored_step, _ = run.restore(step)
    run.checkpointer.close()
    if restored_step == 0:
        raise FileNotFoundError(f"no checkpoint in {workdir / CHECKPOINT_DIR}")
    results = {"step": restored_step, "split": config.data.eval_split, **run.evaluate(run.jitted_eval(), run.state)}
    if run.is_chief:
        with open(workdir / f"eval_step{restored_step}.json", "w") as f:
            json.dump(results, f, indent=1)
    return results


def _write_config(config, workdir: Path, resumed: bool) -> None:
    path = workdir / CONFIG_FILE
    text = config_utils.to_json(config)
    if resumed and path.exists() and path.read_text() != text:
        log.warning("resuming %s with a config that differs from the saved %s", workdir, path)
    path.write_text(text)


def _summarize(window: list[dict]) -> dict:
    """Means over the logging window; the learning rate and loss scale at its last step."""
    out = {}
    for key in window[-1]:
        values = np.asarray([m[key] for m in window], np.float64)
        out[key] = float(values[-1]) if key in ("learning_rate", "loss_scale") else float(values.mean())
        if key == "skipped":
            out[key] = float(values.sum())
    return out


def _check_finite(window: list[dict], step: int, last_ckpt: int, run: Run) -> None:
    first = step - len(window) + 1
    for i, m in enumerate(window):
        if "loss_scale" in m:  # fp16: non-finite steps are skipped; fatal only once the scale cannot drop
            bad = bool(m["skipped"]) and float(m["loss_scale"]) <= DynamicLossScale.min_scale
        else:
            bad = not (math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"])))
        if bad:
            ckpt = (f"the last good checkpoint is step {last_ckpt} in {run.checkpointer.directory}"
                    if last_ckpt else "no checkpoint was saved")
            raise NonFiniteError(
                f"non-finite training at step {first + i} (loss={float(m['loss'])}, "
                f"grad_norm={float(m['grad_norm'])}); stopped without saving: {ckpt}. Try a lower optim.lr, "
                f"optim.grad_clip > 0, longer warm-up, or precision=f32 to check whether it is numerical.")


def _short(m: dict) -> str:
    parts = [f"loss {m['loss']:.4f}", f"acc {m['accuracy']:.3f}", f"lr {m['learning_rate']:.2e}"]
    if "img_per_sec" in m:
        parts.append(f"{m['img_per_sec']:.0f} img/s")
    if "val_accuracy" in m:
        parts.append(f"val_acc {m['val_accuracy']:.4f}")
    if "val_ema_accuracy" in m:
        parts.append(f"val_ema_acc {m['val_ema_accuracy']:.4f}")
    return "  ".join(parts)
