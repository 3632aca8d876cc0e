"""The `convfirst` command. Thin: each subcommand lives in the library module that does the work,
which exposes `add_arguments(parser)` and `main(args) -> int | None`; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Subcommand modules keep heavy imports (jax, models) inside main()
# so that building the parser stays cheap.
COMMANDS = {
    "models": ("convfirst.commands.models", "list registered models with params, GMACs and published top-1"),
    "analyze": ("convfirst.commands.analyze", "per-block cost, fused vs layer-wise traffic and waterline of a model"),
    "bench": ("convfirst.commands.bench", "time models and blocks per implementation on this GPU (CSV)"),
    "tune": ("convfirst.commands.tune", "autotune block kernels of models on this GPU; updates the tuning cache"),
    "train": ("convfirst.commands.train", "train a model from a config file (resumes from the workdir)"),
    "eval": ("convfirst.commands.eval", "evaluate the latest or a given checkpoint of a training workdir"),
    "data": ("convfirst.commands.data", "prepare datasets (offline) as TFDS array_record"),
    "reproduce": ("convfirst.commands.reproduce", "run a named experiment (tables, plots) resumably, cell by cell"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convfirst", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Subcommands that set `accepts_config_overrides` take `--config.KEY=VALUE` arguments (validated there).
    if extra and not getattr(args, "accepts_config_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.config_overrides = extra
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"convfirst {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
