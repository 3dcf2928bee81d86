"""Run folders written straight to disk, as a worker leaves them, without training anything: the
dashboard benchmark fills an experiments folder with them, and the UI tests build on them
(tests/fake_runs.py adds evaluations with synthetic faces)."""

from __future__ import annotations

import time
from pathlib import Path

from fer.config import TrainConfig
from fer.run_folder import RunFolder
from fer.runs import create_run

EPOCH_COLUMNS = "epoch,accuracy,learning_rate,loss,seconds,val_accuracy,val_loss"


def val_accuracy(epoch: int) -> float:
    """The validation accuracy of a fake run's (1-based) ``epoch``: 28%, then 4 points more per
    epoch up to 70%."""
    return min(0.28 + 0.04 * (epoch - 1), 0.7)


def history_row(epoch: int) -> str:
    """The history.csv line of 0-based ``epoch``, as Keras' CSVLogger writes it."""
    return (f"{epoch},{min(0.3 + 0.05 * epoch, 0.9):.4f},0.001,{max(1.8 - 0.1 * epoch, 0.3):.4f},"
            f"12.5,{val_accuracy(epoch + 1):.4f},{max(1.9 - 0.08 * epoch, 0.5):.4f}")


def write_history(run_dir: Path, epochs: int) -> None:
    """A history.csv with ``epochs`` improving epochs."""
    lines = [EPOCH_COLUMNS, *(history_row(epoch) for epoch in range(epochs))]
    RunFolder(run_dir).history_file.write_text("\n".join(lines) + "\n")


def fake_run(root: Path, run_id: str, state: str = "finished", epochs_done: int = 3, epochs: int = 5,
             architecture: str = "mini_xception", model: bool = True, error: str | None = None,
             created: float | None = None, **status) -> Path:
    """A run folder in ``state`` with ``epochs_done`` epochs of history, a log, optionally a (fake)
    model file, and ``status`` added to its status.json."""
    config = TrainConfig.for_architecture(architecture, epochs=epochs, batch_size=8)
    run_dir = create_run(config, root, run_id)
    folder = RunFolder(run_dir)
    write_history(run_dir, epochs_done)
    if model:
        folder.model_file.write_bytes(b"fake model bytes for " + run_id.encode())
    now = time.time()
    folder.write_status(
        state=state, created=created or now, started=now - 600,
        ended=None if state == "running" else now, epochs_done=epochs_done,
        best_val_accuracy=val_accuracy(epochs_done) if epochs_done else None,
        best_epoch=epochs_done or None, error=error, phase="training" if state == "running" else None,
        train_size=28, val_size=7, test_size=7, **status)
    folder.log_file.write_text(f"[fer] loading dataset\nEpoch 1/{epochs}\n[fer] {state}\n")
    return run_dir
