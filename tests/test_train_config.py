"""Config files, `:arg` parsing, locking and `--config.k=v` overrides (train/config_utils.py)."""
from pathlib import Path

import pytest

from train import config_utils
from train.config_utils import apply_overrides, load_config, parse_arg

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (REPO / "experiments" / "configs").glob("*.py") if p.name not in ("__init__.py", "common.py"))
DIGITS = str(REPO / "experiments" / "configs" / "digits_convfirst.py")


def test_parse_arg_types_flags_and_unknown_names():
    arg = parse_arg("steps=30,lr=0.5,name=abc,quick", steps=10, lr=0.1, name="x", quick=False, other=3)
    assert (arg.steps, arg.lr, arg.name, arg.quick, arg.other) == (30, 0.5, "abc", True, 3)
    assert isinstance(arg.lr, float) and isinstance(arg.steps, int)
    assert parse_arg(None, a=1).a == 1
    with pytest.raises(ValueError, match="unknown config argument 'stpes'; valid: quick, steps"):
        parse_arg("stpes=3", steps=1, quick=False)
    with pytest.raises(ValueError, match="needs a value"):
        parse_arg("steps", steps=1)
    with pytest.raises(ValueError, match="expects int"):
        parse_arg("steps=abc", steps=1)


def test_load_config_with_arg_and_overrides():
    c = load_config(DIGITS + ":steps=40,batch=32", ["--config.optim.lr=0.01", "--config.aug.flip", "true",
                                                    "--config.aug.crop_scale=(0.5, 1.0)", "--config.data.data_dir=/x"])
    assert (c.total_steps, c.batch_size, c.optim.lr, c.aug.flip) == (40, 32, 0.01, True)
    assert c.aug.crop_scale == (0.5, 1.0) and c.data.data_dir == "/x"
    assert c.is_locked


def test_unknown_key_lists_valid_keys_and_suggests():
    c = load_config(DIGITS)
    with pytest.raises(ValueError) as e:
        apply_overrides(c, ["--config.optim.lrr=3"])
    msg = str(e.value)
    assert "unknown config key 'optim.lrr'" in msg and "did you mean 'optim.lr'" in msg
    assert "valid keys under optim:" in msg and "weight_decay" in msg
    with pytest.raises(ValueError, match="valid keys: .*batch_size"):
        apply_overrides(c, ["--config.nope=1"])
    with pytest.raises(AttributeError, match="new_key"):  # locked: code cannot add keys either
        c.new_key = 1


@pytest.mark.parametrize("override, message", [
    ("--config.batch_size=abc", "expects int"),
    ("--config.aug.flip=maybe", "is a bool"),
    ("--config.optim=3", "is a group"),
    ("--config.optim.lr", "has no value"),
    ("optim.lr=3", "config overrides look like"),
])
def test_bad_override_values(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(load_config(DIGITS), [override])


def test_kwargs_group_accepts_new_keys():
    c = load_config(DIGITS, ["--config.model.kwargs.group_width=16", "--config.model.kwargs.act=gelu"])
    assert c.model.kwargs.to_dict() == {"group_width": 16, "act": "gelu"}


def test_missing_config_file_lists_available():
    with pytest.raises(FileNotFoundError, match="digits_convfirst.py"):
        load_config("experiments/configs/nope.py")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_documents_its_command(path):
    module_doc = path.read_text()
    assert f"convfirst train --config experiments/configs/{path.name}" in module_doc
    assert "Expected" in module_doc or "expected" in module_doc
    c = load_config(str(path))
    assert (c.total_steps > 0) != (c.total_epochs > 0)
    assert c.ckpt_every % c.log_every == 0


def test_json_round_trip(tmp_path):
    c = load_config(DIGITS, ["--config.model.kwargs.group_width=16"])
    (tmp_path / "config.json").write_text(config_utils.to_json(c))
    back = config_utils.config_from_json(tmp_path / "config.json", ["--config.batch_size=16"])
    assert back.aug.crop_scale == c.aug.crop_scale and back.batch_size == 16
    assert back.model.kwargs.group_width == 16
    back_dict, c_dict = back.to_dict(), c.to_dict()
    back_dict["batch_size"] = c_dict["batch_size"]
    assert back_dict == c_dict
