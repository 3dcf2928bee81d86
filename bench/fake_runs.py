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


# What a fake sweep searches: a log-range learning rate, a dropout range and a batch size choice.
FAKE_SWEEP_SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                    "dropout": {"low": 0.0, "high": 0.6}, "batch_size": {"choices": [32, 64, 128]}}


def plausible_accuracy(params: dict) -> float:
    """A validation accuracy that peaks near learning rate 2e-3 and dropout 0.3, as a sweep of
    mini-Xception might find."""
    import math

    lr_term = (math.log10(params["learning_rate"]) + 2.7) ** 2
    return round(0.62 - 0.06 * lr_term - 0.25 * (params["dropout"] - 0.3) ** 2
                 - 0.01 * (params["batch_size"] == 128), 4)


def fake_sweep(root: Path, name: str, trials: int, storage: str | None = None,
               value=plausible_accuracy, planned: int = 20) -> list[Path]:
    """A sweep ``name`` (``planned`` trials over FAKE_SWEEP_SPACE) whose first ``trials`` trials ran as
    fake finished runs: sampled by the study (ask), told ``value(params)``, their run folders tagged as
    trials. ``value`` returning None prunes the trial. Their run folders."""
    import socket

    from optuna.trial import TrialState

    from fer.search_space import distributions
    from fer.sweep import (
        HOST_ATTR,
        RUN_ATTR,
        SweepSpec,
        create_sweep,
        default_storage,
        load_sweep,
        shown_storage,
    )

    storage = storage or default_storage(root)
    spec = SweepSpec("mini_xception", FAKE_SWEEP_SPACE, planned, fixed={"epochs": 5}, seed=7)
    create_sweep(name, spec, storage)
    study, spec = load_sweep(name, storage)
    runs = []
    for _ in range(trials):
        trial = study.ask(distributions(spec.space))
        accuracy = value(trial.params)
        run_dir = fake_run(root, f"{name}-t{trial.number:03d}", epochs_done=3 if accuracy is None else 5)
        RunFolder(run_dir).write_sweep_tag(name, trial.number, shown_storage(storage))
        trial.set_user_attr(RUN_ATTR, run_dir.name)
        trial.set_user_attr(HOST_ATTR, socket.gethostname())
        if accuracy is None:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            RunFolder(run_dir).write_status(best_val_accuracy=accuracy)
            study.tell(trial, accuracy)
        runs.append(run_dir)
    return runs
