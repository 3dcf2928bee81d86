"""Several training steps per call into TensorFlow (Keras' steps_per_execution) lose no step."""

from __future__ import annotations

import pytest
from helpers import run_cli
from synthetic import write_image_folder

from fer.architectures import ARCHITECTURES
from fer.config import TrainConfig
from fer.files import read_json
from fer.recipe import steps_per_execution
from fer.run_folder import RunFolder


def test_steps_per_execution_is_the_architectures_and_never_more_than_an_epoch():
    assert ARCHITECTURES["mini_xception"].steps_per_execution == 16
    assert ARCHITECTURES["vgg_fer"].steps_per_execution == 1  # slow steps: stop must stay prompt
    config = TrainConfig.for_architecture("mini_xception")
    assert steps_per_execution(config, 448) == 16
    assert steps_per_execution(config, 5) == 5
    assert steps_per_execution(TrainConfig.for_architecture("vgg_fer"), 448) == 1


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_epoch_that_is_not_a_multiple_of_steps_per_execution_runs_every_step(tmp_path):
    """84 faces in batches of 4 are 21 steps: one call of 16 steps and one of 5, every epoch."""
    keras = pytest.importorskip("keras")
    data = write_image_folder(tmp_path / "fer2013", train=12, test=1)
    experiments = tmp_path / "experiments"
    result = run_cli(["fer.train", "--experiments", experiments, "--name", "spe", "--architecture",
                      "mini_xception", "--data", data, "--epochs", "2", "--batch-size", "4",
                      "--no-augment"], timeout=300)
    run = experiments / "spe"
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert RunFolder(run).read_status()["state"] == "finished"
    assert list(RunFolder(run).read_history()["epoch"]) == [1, 2]
    progress = read_json(run / "progress.json")
    # The last epoch ended with all 21 batches done (not a call planned past the end).
    assert (progress["batch"], progress["batches"], progress["epoch"]) == (21, 21, 2)
    # The optimizer's step count after the last epoch: every step of both epochs ran.
    assert progress["step"] == 42
    keras.saving.load_model(run / "model.keras", safe_mode=True)
