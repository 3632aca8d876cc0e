"""Efficiency-gap plot: ImageNet top-1 against latency per image, per model family, with the ideal
latency C/P (100 % computational efficiency: the model-efficiency curve) and the measured latency.
The horizontal distance between the two curves on the log axis is log(1/E).

Its cells are the efficiency table's (same models, impls, batch and protocol), so pointed at the
table's results it measures nothing new:

    convfirst reproduce efficiency-gap --out benchmarks/results/efficiency_table

Accuracies: the published ImageNet-1k top-1 of `convfirst models` (timm's results, cited in the
report); models without one (ConvFirstNet) are plotted only when a training workdir gives it:
`--accuracy convfirst_tiny=runs/convfirst_tiny` (the last val_accuracy in its metrics.jsonl).

Arguments: those of the efficiency table (quick, cpu, batch, dtype, warmup, iters).
"""
from __future__ import annotations

from experiments.configs.reproduce import efficiency_table, experiment, group


def get_config(arg=None):
    models, params = efficiency_table.models_and_params(arg)
    return experiment(
        "efficiency-gap", "Efficiency gap: accuracy against ideal and measured latency",
        groups=[group("models", "bench_model", {"model": models, "impl": efficiency_table.IMPLS}, **params)],
        cell_timeout_s=300)
