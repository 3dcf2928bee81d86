"""The quick_trial preset: its settings, the --preset flag, and (with the real FER2013) a real model."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli

from fer.config import QUICK_TRIAL, ConfigError, TrainConfig
from fer.evaluate import one_class_warning, read_evaluation
from fer.run_folder import RunFolder


def test_quick_trial_is_mini_xception_on_a_subset_for_a_few_epochs_and_flags_override_it():
    config = TrainConfig.for_preset(QUICK_TRIAL)
    assert (config.architecture, config.max_train_samples, config.epochs) == ("mini_xception", 15_000, 6)
    # The rest is the architecture's recipe.
    assert config.lr_schedule == TrainConfig.for_architecture("mini_xception").lr_schedule
    assert TrainConfig.for_preset(QUICK_TRIAL, epochs=7).epochs == 7
    with pytest.raises(ConfigError, match="preset='fast' is unknown; choose one of quick_trial"):
        TrainConfig.for_preset("fast")


def test_an_unknown_preset_flag_is_refused_with_the_choices(tmp_path):
    result = run_cli(["fer.train", "--preset", "fast", "--experiments", tmp_path], timeout=120)
    assert result.returncode == 2 and "quick_trial" in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_quick_trial_gives_a_real_model_on_fer2013(real_data, tmp_path):
    """At least 40% on PrivateTest, and no single-class answer (bench/quick_trial.py times it)."""
    result = run_cli(["fer.train", "--preset", QUICK_TRIAL, "--data", real_data, "--experiments", tmp_path,
                      "--name", "quick"], timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    status = RunFolder(tmp_path / "quick").read_status()
    assert status["test_accuracy"] >= 0.40, json.dumps(status)
    assert one_class_warning(read_evaluation(tmp_path / "quick")) is None
