"""`convfirst train --config experiments/configs/NAME.py[:arg] [--config.KEY=VALUE ...] --workdir DIR`.

Trains from a big_vision-style config file; rerunning the same command resumes from the newest
checkpoint in DIR. Metrics go to DIR/metrics.jsonl and the resolved config to DIR/config.json.
"""
from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE.py[:ARG]",
                        help="config file with get_config(arg), e.g. experiments/configs/digits_convfirst.py:quick")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and config.json go here")
    parser.add_argument("--stop_at_step", type=int, default=None,
                        help="stop after this step with a checkpoint, as a preemption would (resume with the same command)")
    parser.add_argument("--distributed", action="store_true",
                        help="multi-host: call jax.distributed.initialize() first (auto-detects SLURM/Open MPI, "
                             "or give --coordinator_address/--num_processes/--process_id)")
    parser.add_argument("--coordinator_address", default=None, help="host:port of process 0 (with --distributed)")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    parser.epilog = "Any --config.KEY=VALUE (e.g. --config.optim.lr=1e-3) overrides a key of the config."
    parser.set_defaults(accepts_config_overrides=True)


def main(args) -> int:
    from train import sharding
    from train.config_utils import load_config

    config = load_config(args.config, args.config_overrides)  # before JAX starts: config errors come first
    if args.distributed:
        sharding.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    from train.trainer import NonFiniteError, train

    try:
        final = train(config, args.workdir, stop_at_step=args.stop_at_step)
    except NonFiniteError as e:
        print(f"convfirst train: {e}", file=sys.stderr)
        return 3
    print(json.dumps({"workdir": args.workdir, **final}))
    return 0
