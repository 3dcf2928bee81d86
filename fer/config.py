"""Training hyperparameters: one frozen dataclass, validated once, saved as config.json.

Longer than most modules because ``PARAMETERS`` describes every setting (label, help, range,
choices, page group) in one table, so that validation, the CLI and the Train page never repeat it.
"""

from __future__ import annotations

import dataclasses
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


@dataclass(frozen=True)
class Parameter:
    """One training setting as validation, the CLI and the Train page see it.

    ``low``/``high`` bound a number (inclusive unless ``low_open``/``high_open``); ``widget_low``
    and ``widget_high`` are the closed bounds of its number widget where they differ (open bounds,
    or a rule the range cannot say, such as ``crop``). ``applies`` says when the setting has an
    effect. ``group`` is the Train page box that shows it ("" for the fields shown on their own).
    """

    label: str
    help: str
    group: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    step: float | None = None
    widget_low: float | None = None
    widget_high: float | None = None
    applies: str = ""

    @property
    def widget_range(self) -> tuple[float | None, float | None]:
        return (self.low if self.widget_low is None else self.widget_low,
                self.high if self.widget_high is None else self.widget_high)

    @property
    def full_help(self) -> str:
        """The help line with when it applies, as the UI and the CLI show it."""
        return f"{self.help} (applies when {self.applies})" if self.applies else self.help


_AUGMENTING = "augment is on"
_PLATEAU = "lr_schedule is plateau"
OPTIMISATION, REGULARISATION, HARDWARE = "Optimisation", "Regularisation", "Hardware"
SCHEDULE, AUGMENTATION, DATA_AND_LOSS = "Optimizer and schedule", "Augmentation", "Data and loss"

# Every TrainConfig field, in field order: the one description that validation, the CLI flags
# (python -m fer.train --help) and the Train page's widgets are made from.
PARAMETERS: dict[str, Parameter] = {
    "architecture": Parameter("Architecture", "network to train (see the presets table)"),
    "data": Parameter("Dataset location",
                      "dataset folder, .tar.gz or fer2013.csv; empty = FER_DATA or data/ in the project"),
    "epochs": Parameter("Epochs", "maximum number of passes over the training set (1-10000)",
                        OPTIMISATION, 1, 10_000),
    "batch_size": Parameter("Batch size",
                            "images per training step (1-4096); the last short batch is dropped",
                            OPTIMISATION, 1, 4096),
    "optimizer": Parameter("Optimizer",
                           "adam, adamw (decoupled weight decay) or sgd (with Nesterov momentum)",
                           OPTIMISATION, choices=OPTIMIZERS),
    "learning_rate": Parameter("Learning rate",
                               "initial step size, > 0 (typical: 1e-3 for Adam, 1e-2 for SGD)",
                               OPTIMISATION, 0.0, 10.0, low_open=True, step=1e-4, widget_low=1e-7),
    "momentum": Parameter("Momentum (sgd)", "SGD momentum in [0, 1)", SCHEDULE, 0.0, 1.0,
                          high_open=True, step=0.01, widget_high=0.999, applies="optimizer is sgd"),
    "weight_decay": Parameter("Weight decay",
                              "decoupled weight decay for the optimizer (0 = off; AdamW uses 0.004 "
                              "when 0)", SCHEDULE, 0.0, 1.0, step=1e-4),
    "lr_schedule": Parameter("Learning-rate schedule",
                             "none, plateau (ReduceLROnPlateau) or cosine (cosine decay to 0 over "
                             "all epochs)", OPTIMISATION, choices=LR_SCHEDULES),
    "plateau_monitor": Parameter("Plateau monitor",
                                 "what ReduceLROnPlateau watches: val_loss or val_accuracy",
                                 SCHEDULE, choices=PLATEAU_MONITORS, applies=_PLATEAU),
    "plateau_factor": Parameter("Plateau factor",
                                "multiply the learning rate by this on a plateau, in (0, 1)",
                                SCHEDULE, 0.0, 1.0, low_open=True, high_open=True, step=0.05,
                                widget_low=0.01, widget_high=0.99, applies=_PLATEAU),
    "plateau_patience": Parameter("Plateau patience",
                                  "epochs without improvement before the learning rate drops",
                                  SCHEDULE, 1, 1000, applies=_PLATEAU),
    "plateau_min_lr": Parameter("Plateau minimum learning rate",
                                "the plateau schedule never goes below this learning rate",
                                SCHEDULE, 0.0, 1.0, step=1e-6, applies=_PLATEAU),
    "l2": Parameter("L2 weight penalty", "L2 penalty on kernel weights (0 = off)", REGULARISATION,
                    0.0, 1.0, step=1e-4),
    "dropout": Parameter("Dropout", "dropout rate in [0, 1)", REGULARISATION, 0.0, 1.0,
                         high_open=True, step=0.05, widget_high=0.95),
    "augment": Parameter("Augment training images",
                         "random augmentation of training images (switches below)", REGULARISATION),
    "flip": Parameter("Horizontal flips", "random horizontal flips", AUGMENTATION,
                      applies=_AUGMENTING),
    "rotation": Parameter("Rotation (degrees)", "maximum random rotation in degrees (0-180)",
                          AUGMENTATION, 0.0, 180.0, step=1.0, applies=_AUGMENTING),
    "zoom": Parameter("Zoom", "maximum random zoom as a fraction (0-0.9)", AUGMENTATION, 0.0, 0.9,
                      step=0.05, applies=_AUGMENTING),
    "translation": Parameter("Translation",
                             "maximum random shift as a fraction of the image (0-0.9)",
                             AUGMENTATION, 0.0, 0.9, step=0.05, applies=_AUGMENTING),
    "shear": Parameter("Shear (degrees)",
                       "maximum random shear angle in degrees (0-45), as ImageDataGenerator's "
                       "shear_range", AUGMENTATION, 0.0, 45.0, step=0.1, applies=_AUGMENTING),
    "erasing": Parameter("Random erasing", "probability of erasing a random rectangle (0-1)",
                         AUGMENTATION, 0.0, 1.0, step=0.05, applies=_AUGMENTING),
    # Validated by its own rule: 0, or a side in [MIN_CROP, IMAGE_SIZE).
    "crop": Parameter("Random crop side (0 = off)",
                      f"train on random square crops of this side, resized back to 48x48 "
                      f"({MIN_CROP}-{IMAGE_SIZE - 1}; 0 = off); ten-crop test-time augmentation "
                      "then uses the same side", AUGMENTATION, widget_low=0,
                      widget_high=IMAGE_SIZE - 1, applies=_AUGMENTING),
    "early_stopping_patience": Parameter(
        "Early-stopping patience",
        "stop after this many epochs without a better val accuracy (0 = never)", REGULARISATION,
        0, 10_000),
    "class_weights": Parameter("Balance classes",
                               "weight classes inversely to their frequency (disgust is 1.5% of "
                               "FER2013)", DATA_AND_LOSS),
    "label_smoothing": Parameter("Label smoothing", "label smoothing for the cross-entropy, 0-0.9",
                                 DATA_AND_LOSS, 0.0, 0.9, step=0.05),
    "validation_split": Parameter("Validation fraction",
                                  "fraction of train held out for validation", DATA_AND_LOSS,
                                  0.0, 0.5, low_open=True, high_open=True, step=0.01,
                                  widget_low=0.01, widget_high=0.49,
                                  applies="the data has no PublicTest"),
    "max_train_samples": Parameter("Max training images",
                                   "train on a stratified subset of this many images (0 = all), "
                                   "for quick trials", DATA_AND_LOSS, 0, 10_000_000),
    "seed": Parameter("Seed", "random seed for shuffling, augmentation, splits and initial weights",
                      DATA_AND_LOSS, 0, 2**31 - 1),
    "mixed_precision": Parameter("Mixed precision",
                                 "16-bit compute: bfloat16 under JAX and on CPUs with AVX-512 BF16 "
                                 "or AMX, float16 on TensorFlow GPUs; other CPUs stay in float32, "
                                 "where 16-bit compute is slower", HARDWARE),
    "backend": Parameter("Keras backend",
                         "Keras backend that trains the run: tensorflow or jax (must be installed)",
                         HARDWARE, choices=BACKENDS),
    "devices": Parameter("Devices",
                         "accelerators to train on in parallel (data parallelism, 1-64); "
                         "batch_size is the global batch, split evenly across them", HARDWARE,
                         1, MAX_DEVICES),
    "deterministic": Parameter("Deterministic",
                               "same seed, same machine and backend, same run (deterministic "
                               "kernels; see the README for what it costs)", HARDWARE),
}


# Named starting points on top of an architecture's defaults (python -m fer.train --preset NAME).
# The quick trial trains mini-Xception on a stratified 15,000-face subset for 6 epochs: a real
# model (above 40% on PrivateTest) in under 5 minutes on a 2-core CPU (measured: see the README).
# Fewer steps leave batch normalisation's running statistics near their start, and such a model
# predicts one class for every face.
QUICK_TRIAL = "quick_trial"
PRESETS: dict[str, dict[str, Any]] = {
    QUICK_TRIAL: {"architecture": "mini_xception", "max_train_samples": 15_000, "epochs": 6},
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
    def for_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """A preset's settings (``PRESETS``) on its architecture's, then ``overrides`` on top."""
        if preset not in PRESETS:
            raise ConfigError([f"preset={preset!r} is unknown; choose one of {', '.join(PRESETS)}"])
        values = {**PRESETS[preset], **overrides}
        return cls.for_architecture(values.pop("architecture"), **values)

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
        from fer.files import load_json

        try:
            values = load_json(path)
        except FileNotFoundError:
            raise ConfigError([f"{path} does not exist"]) from None
        except OSError as exc:  # not a regular file, too large, not JSON (never quoted)
            raise ConfigError([f"{path}: {exc}"]) from None
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
    for name, parameter in PARAMETERS.items():
        if parameter.choices:
            check_choice(name, parameter.choices)
        elif parameter.low is not None:
            check_range(name, parameter.low, parameter.high, parameter.low_open, parameter.high_open)
    if c.crop != 0 and not MIN_CROP <= c.crop < IMAGE_SIZE:
        problems.append(f"crop={c.crop!r} is out of range; use 0 (off) or [{MIN_CROP}, {IMAGE_SIZE - 1}]")
    if c.devices > 1 and c.batch_size % c.devices:
        problems.append(f"batch_size={c.batch_size} must be a multiple of devices={c.devices} "
                        "(each device trains an equal share of the global batch)")
    return problems
