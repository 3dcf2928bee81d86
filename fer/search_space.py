"""A sweep's search space: which hyperparameters vary, over which range or choices.

As JSON (stored with the study, so every worker samples the same space)::

    {"learning_rate": {"low": 0.0001, "high": 0.01, "log": true},
     "batch_size": {"choices": [32, 64, 128]},
     "dropout": {"low": 0.0, "high": 0.5}}

Ranges are for numeric settings (integers stay integers); choices for any setting. Every bound
and choice is checked with the same validation as a run's config (fer.config), so a sampled trial
is always a valid run. No framework is imported here.
"""

from __future__ import annotations

import math
from typing import Any

from fer.config import PARAMETERS, ConfigError, TrainConfig

# Settings a sweep may vary, with the range (or choices) the Sweep page suggests.
SEARCHABLE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": {"choices": [32, 64, 128]},
    "optimizer": {"choices": ["adam", "adamw", "sgd"]},
    "momentum": {"low": 0.8, "high": 0.99},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "lr_schedule": {"choices": ["none", "plateau", "cosine"]},
    "l2": {"low": 1e-6, "high": 1e-3, "log": True},
    "dropout": {"low": 0.0, "high": 0.6},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "rotation": {"low": 0.0, "high": 20.0},
    "zoom": {"low": 0.0, "high": 0.2},
    "translation": {"low": 0.0, "high": 0.2},
    "shear": {"low": 0.0, "high": 15.0},
    "erasing": {"low": 0.0, "high": 0.5},
    "epochs": {"low": 5, "high": 50},
}
# Values a grid takes from each range (ends included; geometric for log ranges).
GRID_POINTS = 3
MAX_CHOICES = 50


class SearchSpaceError(ValueError):
    """A search space that cannot be sampled; ``problems`` lists one message per setting."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _is_int(name: str) -> bool:
    default = getattr(TrainConfig(), name)
    return isinstance(default, int) and not isinstance(default, bool)


def _check_value(architecture: str, base: dict[str, Any], name: str, value: Any) -> str | None:
    try:
        TrainConfig.for_architecture(architecture, **{**base, name: value})
    except ConfigError as exc:
        return "; ".join(exc.problems)
    return None


def validate(space: Any, architecture: str, base: dict[str, Any] | None = None) -> dict[str, dict]:
    """The space in its stored form (numbers converted), or SearchSpaceError with every problem.

    ``base``: the settings every trial shares (epochs, data, ...); each bound and choice is
    checked together with them.
    """
    base = dict(base or {})
    if not isinstance(space, dict) or not space:
        raise SearchSpaceError(["the search space is empty: choose at least one setting to vary"])
    problems: list[str] = []
    clean: dict[str, dict] = {}
    for name, spec in space.items():
        if name not in SEARCHABLE:
            problems.append(f"{name!r} cannot be searched; searchable: {', '.join(SEARCHABLE)}")
            continue
        if name in base:
            problems.append(f"{name} is both fixed and searched")
            continue
        entry = _validate_entry(name, spec, architecture, base, problems)
        if entry is not None:
            clean[name] = entry
    if problems:
        raise SearchSpaceError(problems)
    return clean


def _validate_entry(name: str, spec: Any, architecture: str, base: dict[str, Any],
                    problems: list[str]) -> dict | None:
    label = PARAMETERS[name].label
    if not isinstance(spec, dict):
        problems.append(f"{name}: give a range (low, high) or choices")
        return None
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or len(choices) > MAX_CHOICES:
            problems.append(f"{name}: choices must be a list of 1 to {MAX_CHOICES} values")
            return None
        if len(set(map(repr, choices))) != len(choices):
            problems.append(f"{name}: a choice is listed twice")
            return None
        for choice in choices:
            problem = _check_value(architecture, base, name, choice)
            if problem:
                problems.append(f"{name} choice {choice!r}: {problem}")
                return None
        return {"choices": list(choices)}
    low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
    numbers = (int, float)
    if (not isinstance(low, numbers) or not isinstance(high, numbers) or isinstance(low, bool)
            or isinstance(high, bool) or not math.isfinite(low) or not math.isfinite(high)):
        problems.append(f"{name} ({label}): low and high must be numbers")
        return None
    if PARAMETERS[name].choices or isinstance(getattr(TrainConfig(), name), bool | str):
        problems.append(f"{name} is not numeric: give choices instead of a range")
        return None
    if _is_int(name):
        if low != int(low) or high != int(high):
            problems.append(f"{name} takes whole numbers")
            return None
        low, high = int(low), int(high)
    if low >= high:
        problems.append(f"{name}: low ({low:g}) must be below high ({high:g})")
        return None
    if log and low <= 0:
        problems.append(f"{name}: a log range needs low > 0")
        return None
    for bound in (low, high):
        problem = _check_value(architecture, base, name, bound)
        if problem:
            problems.append(f"{name} bound {bound:g}: {problem}")
            return None
    return {"low": low, "high": high, "log": log}


def distributions(space: dict[str, dict]) -> dict[str, Any]:
    """Optuna distributions for a validated space."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    result = {}
    for name, spec in space.items():
        if "choices" in spec:
            result[name] = CategoricalDistribution(spec["choices"])
        elif _is_int(name):
            result[name] = IntDistribution(spec["low"], spec["high"], log=spec["log"])
        else:
            result[name] = FloatDistribution(spec["low"], spec["high"], log=spec["log"])
    return result


def grid(space: dict[str, dict], points: int = GRID_POINTS) -> dict[str, list]:
    """The values a grid search takes: each choice, or ``points`` values spread over each range."""
    import numpy as np

    result: dict[str, list] = {}
    for name, spec in space.items():
        if "choices" in spec:
            result[name] = list(spec["choices"])
            continue
        spread = np.geomspace if spec["log"] else np.linspace
        values = np.clip(spread(spec["low"], spec["high"], points), spec["low"], spec["high"])
        whole = _is_int(name)
        result[name] = sorted({int(round(v)) for v in values}) if whole else [float(v) for v in values]
    return result


def grid_size(space: dict[str, dict], points: int = GRID_POINTS) -> int:
    return math.prod(len(values) for values in grid(space, points).values())


def parse_flag(text: str) -> tuple[str, dict]:
    """``name=low:high[:log]`` or ``name=a,b,c`` (the CLI's ``--param``) as (name, spec)."""
    if "=" not in text:
        raise SearchSpaceError([f"--param {text!r}: write name=low:high[:log] or name=a,b,c"])
    name, value = (part.strip() for part in text.split("=", 1))
    if ":" in value:
        parts = value.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise SearchSpaceError([f"--param {text!r}: a range is low:high or low:high:log"])
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise SearchSpaceError([f"--param {text!r}: low and high must be numbers"]) from None
        return name, {"low": low, "high": high, "log": len(parts) == 3}
    return name, {"choices": [parse_scalar(item.strip()) for item in value.split(",") if item.strip()]}


def parse_scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
