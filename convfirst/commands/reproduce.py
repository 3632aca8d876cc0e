"""`convfirst reproduce NAME[:ARG] [--out DIR]`: run a named experiment (experiments/configs/reproduce/)
cell by cell in fresh processes, resumably, and write its tables and plots.

    convfirst reproduce efficiency-table --out benchmarks/results/efficiency_table --time-limit 420
    convfirst reproduce waterline:quick --out runs/waterline
    convfirst reproduce small-scale:test --out runs/small   # CPU

Names: efficiency-table, efficiency-gap, waterline, ablations, small-scale (see experiments/run.py).
"""
from __future__ import annotations


def add_arguments(parser) -> None:
    from experiments.run import EXPERIMENTS, add_arguments as run_arguments

    parser.add_argument("name", metavar="NAME[:ARG]", help=f"one of {', '.join(EXPERIMENTS)}; ARG selects a "
                        "variant, e.g. waterline:quick (see the config file's docstring)")
    run_arguments(parser)


def main(args) -> int:
    from experiments.run import config_spec, execute

    command = " ".join(["convfirst reproduce", args.name, *_flags(args)])
    return execute(config_spec(args.name), args, command)


def _flags(args) -> list[str]:
    """The options that select what runs, as command-line text (recorded in the run's manifest)."""
    out = [f"--out {args.out}"] if args.out else []
    out += [f"--timing {args.timing}"] if args.timing != "real" else []
    out += [f"--time-limit {args.time_limit:g}"] if args.time_limit is not None else []
    out += ["--retry-failed"] if args.retry_failed else []
    out += ["--rerun"] if args.rerun else []
    out += [f"--only {o}" for o in args.only] + [f"--accuracy {a}" for a in args.accuracy]
    return out
