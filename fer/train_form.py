"""The Train page's form as plain values: what an architecture switch, a preset or a cloned run
does to the settings a user typed.

Nothing here draws anything or imports Streamlit (the pages do; ``app_pages/clone_link.py`` opens
the Train page with a run's settings), so every rule is testable on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fer.architectures import ARCHITECTURES
from fer.config import PARAMETERS, ConfigError, TrainConfig

# Every setting of the form but the architecture and the data, in TrainConfig's field order.
FORM_SETTINGS = [name for name, parameter in PARAMETERS.items() if parameter.group]
# The run to copy into the Train form, set by a "Clone settings into Train" button.
CLONE_REQUEST = "train.clone"
TRAIN_PAGE = "app_pages/train.py"


@dataclass(frozen=True)
class Change:
    """A value the user had set that a preset or an architecture replaced."""

    name: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{PARAMETERS[self.name].label.lower()} {show_value(self.old)} → {show_value(self.new)}"


@dataclass
class Cloned:
    """A run's config as the form can show it, and what of it the form could not take."""

    architecture: str
    data: str
    values: dict[str, Any]
    user_set: set[str]
    problems: list[str] = field(default_factory=list)


def show_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def architecture_defaults(architecture: str) -> dict[str, Any]:
    """The form's settings as ``architecture`` recommends them."""
    defaults = TrainConfig.for_architecture(architecture).to_dict()
    return {name: defaults[name] for name in FORM_SETTINGS}


def apply_preset(values: dict[str, Any], user_set: set[str], preset: dict[str, Any],
                 base: dict[str, Any] | None = None) -> tuple[dict[str, Any], set[str], list[Change]]:
    """The form after applying ``preset`` (setting -> value) on top of ``values``.

    With ``base`` (a new architecture's defaults), settings the user never set take the base's
    values; the user's own values are kept unless the preset names them. Returns the new values,
    the settings still counted as the user's, and the user's values the preset replaced.
    """
    new = dict(values if base is None else base)
    for name in user_set:
        new[name] = values[name]
    changes = []
    kept = set(user_set)
    for name, value in preset.items():
        if name not in new:
            continue
        if name in user_set and values[name] != value:
            changes.append(Change(name, values[name], value))
            kept.discard(name)
        new[name] = value
    return new, kept, changes


def switch_architecture(values: dict[str, Any], user_set: set[str],
                        architecture: str) -> tuple[dict[str, Any], set[str], list[Change]]:
    """The form for ``architecture``: its recommended settings, except the ones the user set and
    the architecture does not prescribe (a subset size, a seed, a batch size...)."""
    base = architecture_defaults(architecture)
    preset = {name: base[name] for name in ARCHITECTURES[architecture].defaults if name in base}
    return apply_preset(values, user_set, preset, base)


def use_preset(architecture: str, values: dict[str, Any], user_set: set[str], preset: dict[str, Any]
               ) -> tuple[str, dict[str, Any], set[str], list[Change]]:
    """The form after a named preset (``fer.config.PRESETS``): its architecture (switched as by
    :func:`switch_architecture`), then its values, which count as the user's own from then on.

    Returns the architecture, values, user's settings and every change of a value that the user
    had set or that the preset names.
    """
    preset = dict(preset)
    new_architecture = preset.pop("architecture", architecture)
    new, kept = values, set(user_set)
    if new_architecture != architecture:
        new, kept, _ = switch_architecture(values, user_set, new_architecture)
    new, _, _ = apply_preset(new, set(), preset)
    watched = set(user_set) | set(preset)
    changes = [Change(name, values[name], new[name]) for name in FORM_SETTINGS
               if name in watched and values[name] != new[name]]
    return new_architecture, new, kept | set(preset), changes


def widget_problem(name: str, value: Any) -> str | None:
    """Why the form's widget for ``name`` cannot show ``value`` (a valid setting may still lie
    outside the widget's closed range, e.g. dropout 0.97), or None."""
    parameter = PARAMETERS[name]
    if parameter.choices or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = parameter.widget_range
    if low is None or high is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not low <= value <= high:
        return f"{name}={show_value(value)} is outside what the form can show ({show_value(low)} to " \
               f"{show_value(high)})"
    return None


def clone_values(raw: Any, current_architecture: str) -> Cloned:
    """A run's config.json (plain values, unvalidated) as the form's settings.

    Each setting is validated on its own through :class:`TrainConfig`; one that is invalid,
    unknown or outside what its widget can show keeps the form's default and is named in
    ``problems``. An architecture that is no longer registered keeps ``current_architecture``.
    """
    if not isinstance(raw, dict):
        raise ConfigError([f"config.json holds {type(raw).__name__}, not a JSON object"])
    problems = []
    architecture = raw.get("architecture")
    if architecture not in ARCHITECTURES:
        problems.append(f"architecture {show_value(architecture)!r} is not available here; kept "
                        f"{ARCHITECTURES[current_architecture].title} and its settings")
        architecture = current_architecture
    base = TrainConfig.for_architecture(architecture).to_dict()
    data = raw.get("data", "")
    if not isinstance(data, str):
        problems.append(f"data={data!r} is not a path; the dataset field is left empty")
        data = ""
    values = {name: base[name] for name in FORM_SETTINGS}
    for name, value in raw.items():
        if name in ("architecture", "data"):
            continue
        if name not in values:
            problems.append(f"{name} is not a setting here; ignored")
            continue
        try:
            checked = TrainConfig.from_dict({**base, name: value}).to_dict()[name]
        except ConfigError as exc:
            own = [problem for problem in exc.problems if problem.startswith(f"{name}=")]
            if own:
                problems += [f"{problem}; kept {show_value(base[name])}" for problem in own]
                continue
            # Valid alone, not with the defaults of another setting (devices and batch size):
            # the check of all values together below says so.
            checked = type(base[name])(value)
        problem = widget_problem(name, checked)
        if problem:
            problems.append(f"{problem}; kept {show_value(base[name])}")
            continue
        values[name] = checked
    try:
        TrainConfig.from_dict({**base, **values, "data": data})
    except ConfigError as exc:  # each value is valid on its own, not together: Launch will say so too
        problems += exc.problems
    user_set = {name for name in FORM_SETTINGS if values[name] != base[name]}
    return Cloned(architecture, data, values, user_set, problems)
