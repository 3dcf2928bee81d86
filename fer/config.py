"""Training hyperparameters: one frozen dataclass, validated once, saved as config.json."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer import IMAGE_SIZE
from fer.architectures import ARCHITECTURES
from fer.backends import BACKENDS, default_backend

OPTIMIZERS = ("adam", "adamw", "sgd")
MIN_CROP = 24
LR_SCHEDULES = ("none", "plateau", "cosine")
MAX_DEVICES = 64
PLATEAU_MONITORS = ("val_loss", "val_accuracy")


# One line per parameter, shown as help in the UI and the CLI.
PARAMETER_HELP: dict[str, str] = {
    "architecture": "network to train (see the presets table)",
    "data": "dataset folder, .tar.gz or fer2013.csv; empty = FER_DATA or data/ in the project",
    "epochs": "maximum number of passes over the training set (1-10000)",
    "batch_size": "images per training step (1-4096); the last short batch is dropped",
    "optimizer": "adam, adamw (decoupled weight decay) or sgd (with Nesterov momentum)",
    "learning_rate": "initial step size, > 0 (typical: 1e-3 for Adam, 1e-2 for SGD)",
    "momentum": "SGD momentum in [0, 1)",
    "weight_decay": "decoupled weight decay for the optimizer (0 = off; AdamW uses 0.004 when 0)",
    "lr_schedule": "none, plateau (ReduceLROnPlateau) or cosine (cosine decay to 0 over all epochs)",
    "plateau_monitor": "what ReduceLROnPlateau watches: val_loss or val_accuracy",
    "plateau_factor": "multiply the learning rate by this on a plateau, in (0, 1)",
    "plateau_patience": "epochs without improvement before the learning rate drops",
    "plateau_min_lr": "the plateau schedule never goes below this learning rate",
    "l2": "L2 penalty on kernel weights (0 = off)",
    "dropout": "dropout rate in [0, 1)",
    "augment": "random augmentation of training images (switches below)",
    "flip": "random horizontal flips",
    "rotation": "maximum random rotation in degrees (0-180)",
    "zoom": "maximum random zoom as a fraction (0-0.9)",
    "translation": "maximum random shift as a fraction of the image (0-0.9)",
    "shear": "maximum random shear angle in degrees (0-45), as ImageDataGenerator's shear_range",
    "erasing": "probability of erasing a random rectangle (0-1)",
    "crop": "train on random square crops of this side, resized back to 48x48 (24-47; 0 = off); "
            "ten-crop test-time augmentation then uses the same side",
    "early_stopping_patience": "stop after this many epochs without a better val accuracy (0 = never)",
    "class_weights": "weight classes inversely to their frequency (disgust is 1.5% of FER2013)",
    "label_smoothing": "label smoothing for the cross-entropy, 0-0.9",
    "validation_split": "fraction of train held out for validation when the data has no PublicTest",
    "max_train_samples": "train on a stratified subset of this many images (0 = all), for quick trials",
    "seed": "random seed for shuffling, augmentation, splits and initial weights",
    "mixed_precision": "16-bit compute (bfloat16 on TPUs and recent GPUs under JAX, float16 "
                       "otherwise; slower on most CPUs)",
    "backend": "Keras backend that trains the run: tensorflow or jax (must be installed)",
    "devices": "accelerators to train on in parallel (data parallelism, 1-64); batch_size is the "
               "global batch, split evenly across them",
    "deterministic": "same seed, same machine and backend, same run (deterministic kernels; "
                     "see the README for what it costs)",
}


class ConfigError(ValueError):
    """One or more hyperparameters are invalid; ``problems`` lists one message per parameter."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class TrainConfig:
    architecture: str = "mini_xception"
    data: str = ""
    epochs: int = 50
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "plateau"
    plateau_monitor: str = "val_loss"
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    plateau_min_lr: float = 1e-6
    l2: float = 0.0
    dropout: float = 0.25
    augment: bool = True
    flip: bool = True
    rotation: float = 10.0
    zoom: float = 0.1
    translation: float = 0.1
    shear: float = 0.0
    erasing: float = 0.0
    crop: int = 0
    early_stopping_patience: int = 15
    class_weights: bool = False
    label_smoothing: float = 0.0
    validation_split: float = 0.1
    max_train_samples: int = 0
    seed: int = 42
    mixed_precision: bool = False
    backend: str = "tensorflow"
    devices: int = 1
    deterministic: bool = True

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError(problems)

    @classmethod
    def for_architecture(cls, architecture: str, **overrides: Any) -> TrainConfig:
        """The architecture's recommended settings, then ``overrides`` on top; the backend is
        ``KERAS_BACKEND`` or the first installed one unless given."""
        if architecture not in ARCHITECTURES:
            raise ConfigError([_unknown_architecture(architecture)])
        values = {"backend": default_backend(), **ARCHITECTURES[architecture].defaults, **overrides,
                  "architecture": architecture}
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from plain values (a form, JSON or CLI flags); missing keys take defaults."""
        if not isinstance(values, dict):
            raise ConfigError([f"config must be a JSON object, got {type(values).__name__}"])
        known = {f.name: f for f in dataclasses.fields(cls)}
        problems = [f"unknown parameter {key!r}" for key in values if key not in known]
        converted: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                continue
            try:
                converted[key] = _coerce(known[key].type, value)
            except (TypeError, ValueError):
                problems.append(f"{key}={value!r} is not a valid {known[key].type}")
        if problems:
            raise ConfigError(problems)
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from fer.files import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError([f"{path} does not exist"]) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError([f"{path} is not valid JSON ({exc})"]) from None
        return cls.from_dict(values)


def _coerce(type_name: str, value: Any) -> Any:
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(value)
    if type_name == "int":
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        return int(value)
    if type_name == "float":
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _unknown_architecture(name: str) -> str:
    return f"architecture={name!r} is unknown; choose one of {', '.join(ARCHITECTURES)}"


# What each field type accepts when TrainConfig(...) is called directly (from_dict converts first).
_ACCEPTED_TYPES: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "float": (int, float),
                                                "str": (str,)}


def _type_problems(c: TrainConfig) -> list[str]:
    problems = []
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, bool) != (f.type == "bool") or not isinstance(value, _ACCEPTED_TYPES[f.type]):
            problems.append(f"{f.name}={value!r} is not a valid {f.type}")
    return problems


def _problems(c: TrainConfig) -> list[str]:
    # Range checks on a wrong type would raise TypeError instead of naming the parameter.
    problems = _type_problems(c)
    if problems:
        return problems

    def check_range(name: str, low: float, high: float, low_open: bool = False,
                    high_open: bool = False) -> None:
        value = getattr(c, name)
        if isinstance(value, float) and math.isnan(value):
            problems.append(f"{name}=nan is not a number")
            return
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            problems.append(f"{name}={value!r} is out of range; allowed {lo}{low}, {high}{hi}")

    def check_choice(name: str, choices: tuple[str, ...]) -> None:
        value = getattr(c, name)
        if value not in choices:
            problems.append(f"{name}={value!r} is not one of {', '.join(choices)}")

    if c.architecture not in ARCHITECTURES:
        problems.append(_unknown_architecture(c.architecture))
    check_range("epochs", 1, 10_000)
    check_range("batch_size", 1, 4096)
    check_choice("optimizer", OPTIMIZERS)
    check_range("learning_rate", 0.0, 10.0, low_open=True)
    check_range("momentum", 0.0, 1.0, high_open=True)
    check_range("weight_decay", 0.0, 1.0)
    check_choice("lr_schedule", LR_SCHEDULES)
    check_choice("plateau_monitor", PLATEAU_MONITORS)
    check_range("plateau_factor", 0.0, 1.0, low_open=True, high_open=True)
    check_range("plateau_patience", 1, 1000)
    check_range("plateau_min_lr", 0.0, 1.0)
    check_range("l2", 0.0, 1.0)
    check_range("dropout", 0.0, 1.0, high_open=True)
    check_range("rotation", 0.0, 180.0)
    check_range("zoom", 0.0, 0.9)
    check_range("translation", 0.0, 0.9)
    check_range("shear", 0.0, 45.0)
    check_range("erasing", 0.0, 1.0)
    if c.crop != 0 and not MIN_CROP <= c.crop < IMAGE_SIZE:
        problems.append(f"crop={c.crop!r} is out of range; use 0 (off) or [{MIN_CROP}, {IMAGE_SIZE - 1}]")
    check_range("early_stopping_patience", 0, 10_000)
    check_range("label_smoothing", 0.0, 0.9)
    check_range("validation_split", 0.0, 0.5, low_open=True, high_open=True)
    check_range("max_train_samples", 0, 10_000_000)
    check_range("seed", 0, 2**31 - 1)
    check_choice("backend", BACKENDS)
    check_range("devices", 1, MAX_DEVICES)
    if c.devices > 1 and c.batch_size % c.devices:
        problems.append(f"batch_size={c.batch_size} must be a multiple of devices={c.devices} "
                        "(each device trains an equal share of the global batch)")
    return problems
