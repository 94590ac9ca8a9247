"""Experiment files: a run's (``convlora train --config``) or a grid's (``convlora reproduce --config``)
settings in YAML, keyed by the fields of :class:`~convlora_lite.training.config.TrainConfig`.

A file holds a mapping; each key is a config field (``dataset``, ``method``, ``preset``, ``seed``,
``epochs``, ``lr``, ``method_options: {num_experts: 4}``, ...), and a grid's file also ``datasets``,
``methods``, ``seeds`` and ``shard``. Its values sit above the preset and the dataset's recipe and
below the command line's flags. Examples are in ``configs/``; ``docs/experiment_files.md`` says more.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from convlora_lite.errors import ConfigError
from convlora_lite.training.config import TrainConfig

#: the fields a file may not set: derived from the dataset (``num_classes``).
DERIVED_FIELDS = ("num_classes",)
#: a run's keys: every field a user sets.
RUN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in DERIVED_FIELDS)
#: a grid's keys: the run's, with the grid's names for what differs between its runs (``output_dir`` is the
#: grid's folder).
GRID_KEYS = tuple(k for k in RUN_KEYS if k not in ("dataset", "method", "seed", "resume")) + (
    "datasets", "methods", "seeds", "shard")
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,), "list": (list,)}
_LISTS = ("datasets", "methods")


def _field_types() -> dict[str, tuple[tuple, bool]]:
    """field -> (accepted Python types, whether null is accepted), from TrainConfig's annotations."""
    types = {}
    for f in dataclasses.fields(TrainConfig):
        text = str(f.type)
        optional = text.startswith("Optional[")
        base = text.removeprefix("Optional[").removesuffix("]") if optional else text
        types[f.name] = (_TYPES.get(base, (object,)), optional)
    return {**types, "seeds": ((int,), False), "shard": ((str,), False)}


_FIELD_TYPES = _field_types()


def _checked(key: str, value, path: Path):
    """``value`` of ``key`` as the config takes it; a float field also takes YAML's ``1e-4`` (which YAML 1.1,
    PyYAML's, reads as text); a grid's ``datasets``/``methods`` take a list or comma-separated text."""
    if key in _LISTS:
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"{path}: {key} must be a list of names (or 'a,b'), not {value!r}.")
        return [n.strip() for n in names]
    accepted, optional = _FIELD_TYPES[key]
    if value is None and optional:
        return None
    if float in accepted and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in accepted:  # YAML's yes/no are bools, not numbers
        accepted = ()
    if not isinstance(value, accepted):
        wanted = " or ".join(t.__name__ for t in accepted) or "not a boolean"
        raise ConfigError(f"{path}: {key} = {value!r} must be {wanted}{' (or null)' if optional else ''}.")
    return value


def read_experiment_file(path, grid: bool = False) -> dict:
    """The settings of the YAML file at ``path``, checked: a mapping whose keys are :data:`RUN_KEYS`
    (``grid``: :data:`GRID_KEYS`) with values of their field's type. An unknown key is a
    :class:`ConfigError` naming it, the closest valid key and every valid one."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No experiment file at {path}: give the path of a YAML file (examples in configs/).")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings (key: value lines), not a {type(data).__name__}.")
    valid = GRID_KEYS if grid else RUN_KEYS
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            derived = " It follows from the dataset." if key in DERIVED_FIELDS else ""
            raise ConfigError(f"{path}: unknown key {key!r}.{derived}{hint} "
                              f"Valid keys: {', '.join(sorted(valid))}.")
    return {key: _checked(key, value, path) for key, value in data.items()}


def merged(file_values: dict, flags: dict) -> dict:
    """The file's settings with the command line's ``flags`` (the options given, ``None`` left out) over
    them; ``method_options`` are merged key by key, the flags' winning."""
    values = {**file_values, **{k: v for k, v in flags.items() if v is not None}}
    options = {**(file_values.get("method_options") or {}), **(flags.get("method_options") or {})}
    if options:
        values["method_options"] = options
    return values
