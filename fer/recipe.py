"""The training recipe of a run: the model ``fit`` trains (augmentation in front of the network),
its optimizer and loss, and its callbacks. The worker (``fer.train``), the benchmarks and the tests
all compile a run's model here.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from fer.architectures import ARCHITECTURES
from fer.config import TrainConfig
from fer.run_folder import RunFolder

# At most how often the worker rewrites progress.json during an epoch.
PROGRESS_INTERVAL_S = 1.0
# Validation faces per call into the backend. A stop is checked between calls, so one call must
# stay short even on a busy CPU: 256 faces of the largest network take about a second.
VALIDATION_CALL_FACES = 256


def training_model(config: TrainConfig, steps_per_epoch: int, jit_compile: Any = "auto",
                   steps_per_call: int | None = None, network=None):
    """The run's network with its augmentation in front, compiled with the run's optimizer and
    loss (call it inside ``fer.devices.training_scope``). ``steps_per_call`` overrides
    ``steps_per_execution(config, steps_per_epoch)``; ``network`` replaces the architecture's
    (a benchmark's candidate trained with the same recipe)."""
    import keras

    from fer.augment import with_augmentation
    from fer.models import build_model

    model = with_augmentation(network if network is not None else build_model(config), config)
    model.compile(
        optimizer=optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(
            label_smoothing=config.label_smoothing,
            # Padded validation faces weigh 0 and must not count as faces either.
            reduction="mean_with_sample_weight" if config.devices > 1 else "sum_over_batch_size"),
        metrics=["accuracy"], jit_compile=jit_compile,
        steps_per_execution=steps_per_call or steps_per_execution(config, steps_per_epoch))
    return model


def optimizer(config: TrainConfig, steps_per_epoch: int):
    import keras

    learning_rate: Any = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=steps_per_epoch * config.epochs)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=True,
                                    weight_decay=config.weight_decay or None)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay or 0.004)
    return keras.optimizers.Adam(learning_rate, weight_decay=config.weight_decay or None)


def class_weights(labels) -> dict[int, float]:
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights, strict=True)}


def steps_per_execution(config: TrainConfig, steps: int) -> int:
    """Keras' ``steps_per_execution`` for this run: the architecture's, at most one epoch.

    One step per call under a TensorFlow MirroredStrategy: its multi-step loop fails there
    ("You must feed a value for placeholder tensor", TensorFlow 2.21)."""
    if config.backend == "tensorflow" and config.devices > 1:
        return 1
    return max(1, min(ARCHITECTURES[config.architecture].steps_per_execution, steps))


def validation_batch_size(config: TrainConfig, steps: int) -> int:
    """Faces per validation batch: with ``steps_per_execution`` batches in one call, a call holds
    about ``VALIDATION_CALL_FACES`` faces."""
    return max(1, VALIDATION_CALL_FACES // steps_per_execution(config, steps))


class FilesLock:
    """Held while the training thread writes a run's files (see ``callbacks``); ``with`` for one
    write, ``begin_save``/``end_save`` (training thread only) around an epoch's save."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._saving = False

    def __enter__(self) -> FilesLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def begin_save(self) -> None:
        self._lock.acquire()
        self._saving = True

    def end_save(self) -> None:
        if self._saving:
            self._saving = False
            self._lock.release()


# Room kept free on the run's disk beyond an epoch's files (the history row, status, progress, log).
SAVE_MARGIN_BYTES = 1 << 20


def epoch_save_bytes(folder: RunFolder, model: Any) -> int:
    """About how many bytes saving an epoch may need on the run's disk: the resume point is copied
    before it is rewritten (Keras BackupAndRestore's double checkpoint) and the best network may
    be rewritten too. Sizes of the files there, or estimated from the variables (float32)."""
    import numpy as np

    from fer.augment import network_of

    def size(path, variables) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 4 * sum(int(np.prod(v.shape)) for v in variables)

    optimizer = getattr(model, "optimizer", None)
    backup = size(folder.backup_dir / "latest.weights.h5",
                  [*model.variables, *(optimizer.variables if optimizer is not None else [])])
    best = size(folder.model_file, network_of(model).variables)
    return 2 * backup + best + SAVE_MARGIN_BYTES


def check_free_space(folder: RunFolder, model: Any, epoch: int) -> None:
    """Raise ENOSPC (an OSError) with the sizes when the run's disk cannot hold the epoch's save:
    a full disk then fails the run with a clear message, instead of a checkpoint written halfway
    (HDF5 may even crash the process on a failed write)."""
    needed = epoch_save_bytes(folder, model)
    free = shutil.disk_usage(folder.path).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (saving epoch {epoch + 1} needs "
                                    f"about {needed / 1e6:.1f} MB, {free / 1e6:.1f} MB are free)",
                      str(folder.path))


def callbacks(folder: RunFolder, config: TrainConfig, check_stop: Callable[[], None], steps: int,
              best_so_far: float | None, files_lock: FilesLock | None = None) -> list:
    """Keras callbacks of a run: live progress, history.csv, the best network, status, the
    learning-rate schedule, early stopping and the resume point. ``check_stop`` raises at a
    batch end when a stop was requested.

    ``files_lock`` is held while the callbacks write the run's files: from the start of an epoch's
    save (history row, best network, status, resume point) to the start of the next epoch, and
    after the last epoch until the caller's ``end_save`` once ``fit`` has returned (BackupAndRestore
    deletes its backup then). The worker's stop watchdog (``fer.train``) takes it before it ends
    the process, so it never cuts a save short."""
    import keras

    from fer.augment import network_of

    files = files_lock or FilesLock()

    class RunStatus(keras.callbacks.Callback):
        """Progress for the UI (throttled) and the best-epoch summary in status.json."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.first_epoch = True
            self.epoch_start = time.time()
            self.last_write = 0.0

        def _progress(self, batch: int, phase: str, force: bool = False) -> None:
            now = time.time()
            if force or now - self.last_write > PROGRESS_INTERVAL_S:
                with files:
                    folder.write_progress(epoch=self.epoch + 1, epochs=config.epochs, batch=batch,
                                          batches=steps, phase=phase)
                self.last_write = now

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            files.end_save()  # the previous epoch's save is complete
            if self.first_epoch and epoch > 0:
                # BackupAndRestore has restored the weights and the optimizer (its step counter too).
                step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
                print(f"[fer] resumed at epoch {epoch + 1} with optimizer step {step}", flush=True)
            self.first_epoch = False
            # The previous epoch is saved (BackupAndRestore runs last): a stop asked for while it
            # was saved ends the run here, before another call into the backend.
            check_stop()
            self.epoch = epoch
            self.epoch_start = time.time()
            self._progress(0, "training", force=True)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            # With steps_per_execution, ``batch`` is the last step of the call (the last call of an
            # epoch may be planned past its end).
            check_stop()
            self._progress(min(batch + 1, steps), "training")

        def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
            # A stop cuts validation short: the epoch is not recorded (no history row, checkpoint
            # or resume point), so a resumed run trains it again.
            check_stop()
            self._progress(steps, "validating")

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            files.begin_save()  # see files_lock above
            # Refused before anything is written: the last completed epoch stays the resume point.
            check_free_space(folder, self.model, epoch)
            # Runs before CSVLogger (and the checkpoint), so these columns land in history.csv.
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
            logs["seconds"] = round(time.time() - self.epoch_start, 2)
            logs["time"] = round(time.time(), 2)  # when it ended: the curves' wall-clock axis
            # The optimizer's step count: every step of every epoch ran (steps_per_execution included).
            folder.write_progress(
                epoch=epoch + 1, epochs=config.epochs, batch=steps, batches=steps, phase="training",
                step=int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))
            self.last_write = time.time()

    class NetworkCheckpoint(keras.callbacks.ModelCheckpoint):
        """Saves the trained network alone (the augmentation in front of it is not part of it),
        atomically: Keras writes a staging file next to model.keras, which then replaces it, so a
        worker killed mid-save (SIGKILL, power loss) leaves the previous best network, never an
        empty or truncated model.keras."""

        def __init__(self, **kwargs) -> None:
            super().__init__(str(folder.model_staging_file), **kwargs)

        @property
        def model(self):
            return network_of(super().model)

        def _save_model(self, epoch, batch, logs):
            staging = folder.model_staging_file
            staging.unlink(missing_ok=True)
            super()._save_model(epoch, batch, logs)
            if staging.is_file():  # saved: this epoch is the best so far
                with open(staging, "rb") as file:
                    os.fsync(file.fileno())
                os.replace(staging, folder.model_file)

    class BestSoFar(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            history = folder.read_history()
            best = history.loc[history["val_accuracy"].idxmax()] if not history.empty else None
            folder.write_status(epochs_done=epoch + 1,
                                best_val_accuracy=None if best is None else float(best["val_accuracy"]),
                                best_epoch=None if best is None else int(best["epoch"]))

    callbacks = [
        RunStatus(),
        # The best network is saved before the epoch's history row is written: a history row
        # always means its epoch's files are on disk (a full disk while saving leaves no row
        # announcing an epoch whose model.keras is missing).
        NetworkCheckpoint(monitor="val_accuracy", mode="max", save_best_only=True,
                          initial_value_threshold=best_so_far),
        keras.callbacks.CSVLogger(str(folder.history_file), append=True),
        BestSoFar(),
    ]
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=config.plateau_monitor, factor=config.plateau_factor,
            patience=config.plateau_patience, min_lr=config.plateau_min_lr,
            mode="max" if config.plateau_monitor == "val_accuracy" else "min"))
    if config.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=config.early_stopping_patience))
    # Last: an epoch counts as done (the resume point) only once its history row and checkpoint
    # are written, so a worker killed in between re-runs that epoch instead of leaving a gap.
    callbacks.append(keras.callbacks.BackupAndRestore(str(folder.backup_dir), double_checkpoint=True))
    return callbacks


