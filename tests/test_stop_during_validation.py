"""A stop asked for during an epoch's validation cuts the validation short, and the run resumes
from its last completed epoch (the worker's recipe: fer.recipe.callbacks and its validation batches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import face

from fer.config import TrainConfig
from fer.pipeline import evaluation_batches, training_batches
from fer.recipe import callbacks, training_model, validation_batch_size
from fer.run_folder import RunFolder
from fer.runs import create_run
from fer.train import RunStopped

pytestmark = pytest.mark.slow

TRAIN_FACES, VAL_FACES, BATCH = 32, 600, 4


def faces(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.random.default_rng(seed).integers(0, 7, count)
    return np.stack([face(int(label), i) for i, label in enumerate(labels)]), labels


class ValidationProbe:
    """Asks for a stop when the second epoch's validation begins, and counts its batches."""

    def __init__(self) -> None:
        import keras

        probe = self

        class Probe(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                probe.epoch = epoch

            def on_test_begin(self, logs: dict | None = None) -> None:
                probe.requested = probe.epoch == 1

            def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
                probe.validated_batches = batch + 1  # with steps_per_execution: the call's last batch

        self.callback = Probe()
        self.epoch, self.requested, self.validated_batches = 0, False, 0

    def check_stop(self) -> None:
        if self.requested:
            raise RunStopped()


def fit(run: Path, config: TrainConfig, probe: ValidationProbe | None = None) -> None:
    """What the worker's model.fit does for ``run``."""
    folder = RunFolder(run)
    done = folder.completed_epochs()
    folder.keep_history(done)
    train_data = training_batches(*faces(TRAIN_FACES, 1), config.batch_size, config.seed, first_epoch=done)
    steps = len(train_data)
    val_data = evaluation_batches(*faces(VAL_FACES, 2), validation_batch_size(config, steps))
    model = training_model(config, steps)
    history = folder.read_history()
    best = float(history["val_accuracy"].max()) if not history.empty else None
    check_stop = probe.check_stop if probe else (lambda: None)
    extra = [probe.callback] if probe else []
    model.fit(train_data, validation_data=val_data, epochs=config.epochs, verbose=0,
              callbacks=extra + callbacks(folder, config, check_stop, steps, best))


def test_stop_during_validation_cuts_it_short_and_the_run_resumes(tmp_path):
    config = TrainConfig.for_architecture("mini_xception", epochs=2, batch_size=BATCH, augment=False,
                                          lr_schedule="none", early_stopping_patience=0)
    run = create_run(config, tmp_path / "runs")
    RunFolder(run).write_checkpoint_config(config)
    probe = ValidationProbe()
    with pytest.raises(RunStopped):
        fit(run, config, probe)
    val_batches = len(evaluation_batches(*faces(VAL_FACES, 2),
                                         validation_batch_size(config, TRAIN_FACES // BATCH)))
    # The stop ended the validation after its first call into the backend, not at its end.
    assert probe.epoch == 1 and 0 < probe.validated_batches < val_batches
    # The interrupted epoch is not recorded: the run resumes after epoch 1 and trains epoch 2 again.
    folder = RunFolder(run)
    assert folder.completed_epochs() == 1
    assert folder.read_history()["epoch"].tolist() == [1]
    fit(run, config)
    assert folder.read_history()["epoch"].tolist() == [1, 2]
