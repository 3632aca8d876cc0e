"""`convfirst data prepare NAME [--data_dir DIR]`: write a dataset as TFDS array_record, offline.

Only `digits` (scikit-learn's bundled real digits) can be built here without TensorFlow or a
download; the others print how to prepare them once in a TensorFlow environment (docs/datasets.md).
"""
from __future__ import annotations

BUILDABLE = ("digits",)
NEEDS_TENSORFLOW = ("imagenet2012", "imagenette", "cifar10")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prepare = sub.add_parser("prepare", help="build a dataset as TFDS array_record")
    prepare.add_argument("name", help=f"dataset: {', '.join(BUILDABLE + NEEDS_TENSORFLOW)}")
    prepare.add_argument("--data_dir", default=None, help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")


def main(args) -> int:
    from train import data

    data_dir = args.data_dir or data.default_data_dir()
    if args.name in NEEDS_TENSORFLOW:
        raise ValueError(f"{args.name} cannot be built without TensorFlow; {data.how_to_prepare(args.name, data_dir)}")
    if args.name not in BUILDABLE:
        raise ValueError(f"unknown dataset {args.name!r}; valid: {', '.join(BUILDABLE + NEEDS_TENSORFLOW)}")
    from train import digits

    path = digits.prepare(data_dir)
    print(f"{args.name}: prepared in {path}")
    return 0
