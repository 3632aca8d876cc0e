"""`convfirst eval --workdir DIR [--step N] [--config.KEY=VALUE ...]`: evaluate a training run's
latest (or step N's) checkpoint with the config saved in DIR/config.json; prints JSON and writes
DIR/eval_stepN.json. Overrides can point at another split or data_dir (--config.data.eval_split=...)."""
from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--workdir", required=True, help="a directory written by `convfirst train`")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.set_defaults(accepts_config_overrides=True)


def main(args) -> int:
    from train.trainer import evaluate

    print(json.dumps(evaluate(args.workdir, step=args.step, overrides=args.config_overrides)))
    return 0
