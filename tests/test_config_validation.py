"""TrainConfig: defaults are valid; every bad value is a ConfigError naming parameter and value."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fer.architectures import ARCHITECTURES
from fer.config import PARAMETERS, ConfigError, TrainConfig


def test_defaults_are_valid():
    """TrainConfig() builds, so the form's starting values can always be submitted."""
    config = TrainConfig()
    assert config.architecture in ARCHITECTURES
    assert config.epochs >= 1 and config.batch_size >= 1 and config.learning_rate > 0


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_preset_is_valid(name):
    """for_architecture applies the registry's defaults and they pass validation."""
    config = TrainConfig.for_architecture(name)
    assert config.architecture == name
    for key, value in ARCHITECTURES[name].defaults.items():
        assert getattr(config, key) == value, key


def test_for_architecture_overrides_win_over_presets():
    """Explicit values (from the UI or CLI) beat the architecture's recommended ones."""
    config = TrainConfig.for_architecture("vgg_fer", learning_rate=0.5, epochs=3)
    assert (config.learning_rate, config.epochs, config.optimizer) == (0.5, 3, "sgd")


def test_for_architecture_rejects_unknown_names():
    """An unknown architecture lists the known ones."""
    with pytest.raises(ConfigError, match="architecture='resnet' is unknown; choose one of mini_xception"):
        TrainConfig.for_architecture("resnet")


@pytest.mark.parametrize(("values", "needle"), [
    ({"learning_rate": -0.1}, "learning_rate=-0.1"),
    ({"learning_rate": 0}, "learning_rate=0.0"),
    ({"learning_rate": float("nan")}, "learning_rate=nan"),
    ({"learning_rate": "nan"}, "learning_rate=nan"),
    ({"learning_rate": float("inf")}, "learning_rate=inf"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": 5000}, "batch_size=5000"),
    ({"epochs": 0}, "epochs=0"),
    ({"epochs": -3}, "epochs=-3"),
    ({"architecture": "resnet"}, "architecture='resnet'"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"dropout": 1.5}, "dropout=1.5"),
    ({"dropout": -0.1}, "dropout=-0.1"),
    ({"momentum": 1.0}, "momentum=1.0"),
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
    ({"lr_schedule": "step"}, "lr_schedule='step'"),
    ({"plateau_monitor": "loss"}, "plateau_monitor='loss'"),
    ({"plateau_factor": 1.0}, "plateau_factor=1.0"),
    ({"validation_split": 0.0}, "validation_split=0.0"),
    ({"validation_split": 0.5}, "validation_split=0.5"),
    ({"label_smoothing": 0.95}, "label_smoothing=0.95"),
    ({"rotation": 200}, "rotation=200.0"),
    ({"max_train_samples": -1}, "max_train_samples=-1"),
    ({"seed": -1}, "seed=-1"),
    ({"crop": 48}, "crop=48"),
    ({"crop": 10}, "crop=10"),
])
def test_invalid_values_name_parameter_and_value(values, needle):
    """Each out-of-range or unknown value is refused with `name=value` in the message."""
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(values)
    assert needle in str(info.value)
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(("values", "needle"), [
    ({"epochs": "ten"}, "epochs='ten' is not a valid int"),
    ({"epochs": 2.5}, "epochs=2.5 is not a valid int"),
    ({"epochs": True}, "epochs=True is not a valid int"),
    ({"batch_size": None}, "batch_size=None is not a valid int"),
    ({"learning_rate": "fast"}, "learning_rate='fast' is not a valid float"),
    ({"learning_rate": [0.1]}, "learning_rate=[0.1] is not a valid float"),
    ({"augment": "maybe"}, "augment='maybe' is not a valid bool"),
    ({"augment": 2}, "augment=2 is not a valid bool"),
    ({"architecture": 3}, "architecture=3 is not a valid str"),
])
def test_wrong_types_name_parameter_and_value(values, needle):
    """Strings for numbers, floats for ints, bools for numbers: refused, not silently converted."""
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(values)
    assert needle in str(info.value)


@pytest.mark.parametrize(("values", "needle"), [
    ({"epochs": "10"}, "epochs='10'"),
    ({"learning_rate": None}, "learning_rate=None"),
    ({"augment": "no"}, "augment='no'"),
    ({"architecture": ["mini_xception"]}, "architecture=['mini_xception']"),
])
def test_constructor_refuses_wrong_types_too(values, needle):
    """TrainConfig(...) itself (not only from_dict) turns a wrong type into a ConfigError."""
    with pytest.raises(ConfigError) as info:
        TrainConfig(**values)
    assert needle in str(info.value)


def test_lenient_forms_values_are_converted():
    """Values as a form or CLI sends them (strings, whole floats, 0/1) become proper types."""
    config = TrainConfig.from_dict({"epochs": "12", "batch_size": 32.0, "learning_rate": "0.01",
                                    "augment": "false", "flip": 1, "class_weights": "yes"})
    assert (config.epochs, config.batch_size, config.learning_rate) == (12, 32, 0.01)
    assert (config.augment, config.flip, config.class_weights) == (False, True, True)
    assert isinstance(TrainConfig.from_dict({"learning_rate": 1}).learning_rate, float)


def test_unknown_keys_are_refused_by_name():
    """A typo like `learnig_rate` is an error, not silently ignored."""
    with pytest.raises(ConfigError, match="unknown parameter 'learnig_rate'"):
        TrainConfig.from_dict({"learnig_rate": 0.1})


def test_all_problems_are_reported_at_once():
    """A form with three mistakes gets three messages, not one at a time."""
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"epochs": 0, "batch_size": 0, "bogus": 1, "dropout": "x"})
    problems = info.value.problems
    assert any("unknown parameter 'bogus'" in p for p in problems)
    assert any("dropout='x'" in p for p in problems)
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"epochs": 0, "batch_size": 0})
    assert len(info.value.problems) == 2


def test_missing_fields_take_defaults():
    """An old or partial config.json still loads; absent keys take today's defaults."""
    config = TrainConfig.from_dict({"epochs": 3})
    assert config == dataclasses.replace(TrainConfig(), epochs=3)
    assert TrainConfig.from_dict({}) == TrainConfig()


def test_non_object_json_is_refused():
    """A JSON list (or number) is not a config."""
    with pytest.raises(ConfigError, match="must be a JSON object, got list"):
        TrainConfig.from_dict([1, 2])


def test_save_load_round_trip(tmp_path):
    """save() then load() gives an equal config (every field survives JSON)."""
    config = TrainConfig.for_architecture("seed_cnn_b", data="/some/where", epochs=7, augment=False,
                                          learning_rate=3e-4, mixed_precision=True)
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == config
    assert json.loads((tmp_path / "config.json").read_text()) == config.to_dict()


def test_load_of_invalid_json_names_the_file(tmp_path):
    """A hand-edited, broken config.json says it is not valid JSON and which file."""
    path = tmp_path / "config.json"
    path.write_text("{epochs: 3")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        TrainConfig.load(path)
    assert str(path) in str(info.value)


def test_load_of_missing_file_names_it(tmp_path):
    """A missing config.json is a ConfigError, not a FileNotFoundError traceback."""
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.load(tmp_path / "config.json")


def test_load_validates_values(tmp_path):
    """A config.json with a bad value is refused like a form would be."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"epochs": 0}))
    with pytest.raises(ConfigError, match="epochs=0"):
        TrainConfig.load(path)


def test_config_is_frozen():
    """A config cannot change after validation."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 0  # type: ignore[misc]


def test_one_table_describes_every_parameter_in_field_order():
    """Validation, the CLI and the Train page are made from PARAMETERS: every field is in it, in
    order, with a label and a help line."""
    assert list(PARAMETERS) == [f.name for f in dataclasses.fields(TrainConfig)]
    for name, parameter in PARAMETERS.items():
        assert parameter.label and parameter.help, name
        if parameter.group and not parameter.choices and dataclasses.fields(TrainConfig)[
                list(PARAMETERS).index(name)].type != "bool":
            low, high = parameter.widget_range
            assert low is not None and high is not None, f"{name} needs a widget range"


@pytest.mark.parametrize("name", [n for n, p in PARAMETERS.items() if p.low is not None])
def test_the_tables_bounds_are_what_validation_enforces(name):
    """Just inside each bound is accepted, just outside refused naming the parameter."""
    parameter = PARAMETERS[name]
    is_int = isinstance(getattr(TrainConfig(), name), int)
    epsilon = 1 if is_int else 1e-9
    low_inside = parameter.low + (epsilon if parameter.low_open else 0)
    high_inside = parameter.high - (epsilon if parameter.high_open else 0)
    for value in (low_inside, high_inside):
        TrainConfig.from_dict({name: value, **({"batch_size": 64} if name == "devices" else {})})
    for value in (parameter.low - epsilon if not parameter.low_open else parameter.low,
                  parameter.high + epsilon if not parameter.high_open else parameter.high):
        with pytest.raises(ConfigError, match=name):
            TrainConfig.from_dict({name: value})
