"""Config files in big_vision style, without absl flags.

A config is a Python file with `get_config(arg=None)` returning an `ml_collections.ConfigDict`; it is
named on the command line as `path/to/config.py[:arg]` (e.g. `...digits_convfirst.py:steps=300`) and
refined with `--config.key.sub=value` overrides. The loaded config is locked, so a misspelt key is an
error that lists the valid keys instead of a silently ignored setting. Groups named `kwargs` (e.g.
`model.kwargs`, forwarded to `create_model`) stay open to new keys: their consumer validates them.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Iterable

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"
OVERRIDE_PREFIX = "--config."
OPEN_GROUP = "kwargs"


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
    """Parse big_vision's `:a=1,b=x,flag` config argument into a ConfigDict typed by `spec`'s defaults.

    `spec` maps every accepted name to its default; values are converted to the default's type
    (bool accepts a bare `flag`, true/false, 1/0). Unknown names raise with the valid ones.
    """
    result = ml_collections.ConfigDict(spec)
    for item in filter(None, (arg or "").split(",")):
        name, has_value, text = item.partition("=")
        name = name.strip()
        if name not in spec:
            raise ValueError(f"unknown config argument {name!r}; valid: {', '.join(sorted(spec)) or '(none)'}")
        default = spec[name]
        if not has_value:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {name!r} needs a value ({name}=...)")
            result[name] = True
        else:
            result[name] = _convert(text.strip(), default, name)
    return result


def load_config(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """Load `path.py[:arg]`, apply `--config.k=v` overrides and return the locked config."""
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        available = sorted(p.name for p in CONFIG_DIR.glob("*.py") if p.name not in ("__init__.py", "common.py"))
        raise FileNotFoundError(f"config file {path!r} not found; configs in {CONFIG_DIR}: {', '.join(available)}")
    module_spec = importlib.util.spec_from_file_location(f"_convfirst_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path!r} has no get_config(arg) function")
    config = module.get_config(arg) if arg else module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"{path}: get_config must return an ml_collections.ConfigDict, got {type(config).__name__}")
    lock(config)
    apply_overrides(config, overrides)
    return config


def lock(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Lock every group except the free-form `kwargs` groups."""
    config.lock()
    for value in config.values():
        if isinstance(value, ml_collections.ConfigDict):
            if OPEN_GROUP in value and isinstance(value[OPEN_GROUP], ml_collections.ConfigDict):
                value[OPEN_GROUP].unlock()
    return config


def config_from_json(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """Reload the `config.json` a training run wrote (for `convfirst eval`), locked, with overrides."""
    with open(path) as f:
        config = ml_collections.ConfigDict(_tuples(json.load(f)))
    lock(config)
    apply_overrides(config, overrides)
    return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
    """Apply `--config.a.b=v` (or `--config.a.b v`) arguments to a locked config, in place."""
    for key, text in _pairs(list(overrides)):
        parent, leaf = _resolve(config, key)
        parent[leaf] = _convert(text, parent.get(leaf), key)
    return config


def to_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json_best_effort(indent=2, sort_keys=True)


def _pairs(args: list[str]) -> list[tuple[str, str]]:
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith(OVERRIDE_PREFIX):
            raise ValueError(f"unexpected argument {arg!r}; config overrides look like --config.KEY=VALUE")
        key, has_value, text = arg[len(OVERRIDE_PREFIX):].partition("=")
        if not has_value:
            if i + 1 >= len(args) or args[i + 1].startswith(OVERRIDE_PREFIX):
                raise ValueError(f"config override {arg!r} has no value (use {arg}=VALUE)")
            text, i = args[i + 1], i + 1
        pairs.append((key, text))
        i += 1
    return pairs


def _resolve(config: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        new_leaf = depth == len(parts) - 1 and isinstance(node, ml_collections.ConfigDict) and not node.is_locked
        if not new_leaf and (not isinstance(node, ml_collections.ConfigDict) or part not in node):
            where = ".".join(parts[:depth])
            valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(part, valid, n=1)
            hint = f" (did you mean {'.'.join(parts[:depth] + close)!r}?)" if close else ""
            raise ValueError(f"unknown config key {key!r}{hint}; valid keys"
                             f"{' under ' + where if where else ''}: {', '.join(valid)}")
        if depth < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def _convert(text: str, current: Any, key: str) -> Any:
    """Convert override text to the type of the value it replaces."""
    if isinstance(current, ml_collections.ConfigDict):
        raise ValueError(f"config key {key!r} is a group; set one of its keys: {', '.join(sorted(current.keys()))}")
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("1", "true", "yes"):
            return True
        if lowered in ("0", "false", "no"):
            return False
        raise ValueError(f"config key {key!r} is a bool; got {text!r} (use true or false)")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text  # an unset string field
        raise ValueError(f"config key {key!r} expects {type(current).__name__}, got {text!r}") from None
    if current is None or value is None:
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(current)(value)
    if type(value) is not type(current):
        raise ValueError(f"config key {key!r} expects {type(current).__name__}, got {text!r}")
    return value


def _tuples(tree):
    """JSON lists back to the tuples configs use (ConfigDict type checks compare them)."""
    if isinstance(tree, dict):
        return {k: _tuples(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return tuple(_tuples(v) for v in tree)
    return tree
