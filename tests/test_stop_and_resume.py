"""Stopping, killing and resuming real background workers (fer.workers.launch / stop / resume)."""

from __future__ import annotations

import os
import signal
import time
import zipfile
from pathlib import Path

import pytest
from helpers import wait_until

from fer.backends import BACKENDS
from fer.config import TrainConfig
from fer.run_folder import RunError, RunFolder
from fer.runs import create_run
from fer.workers import effective_state, is_alive, launch, resume, stop

pytestmark = pytest.mark.slow

# Enough epochs that the stop lands long before the end; 7 steps of 4 images each (tiny_data).
EPOCHS = 20


@pytest.fixture
def launch_tiny(tmp_path, tiny_data):
    """Launches a tiny 20-epoch run; a worker a failed test leaves behind is killed afterwards."""
    runs: list[Path] = []

    def start(backend: str = "tensorflow") -> Path:
        config = TrainConfig.for_architecture("mini_xception", data=str(tiny_data), epochs=EPOCHS,
                                              batch_size=4, augment=False, lr_schedule="none",
                                              early_stopping_patience=0, backend=backend)
        run = create_run(config, tmp_path / "runs")
        runs.append(run)
        launch(run)
        return run

    yield start
    for run in runs:
        pid = RunFolder(run).read_status().get("pid")
        if pid and is_alive(run):
            os.killpg(pid, signal.SIGKILL)


def epochs_logged(run: Path) -> list[int]:
    history = RunFolder(run).read_history()
    return [] if history.empty else history["epoch"].tolist()


def raw_history_epochs(run: Path) -> list[int]:
    """Epoch column of history.csv as written (0-based), duplicates included."""
    lines = (run / "history.csv").read_text().splitlines()
    return [int(line.split(",")[0]) for line in lines[1:]]


def backup_optimizer_step(run: Path) -> int:
    """The optimizer's step counter saved by BackupAndRestore (Keras stores it first)."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(run / "backup" / "latest.weights.h5", "r") as weights:
        return int(weights["optimizer/vars/0"][()])


def wait_for_end(run: Path, timeout: float) -> str:
    wait_until(lambda: (RunFolder(run).read_status().get("state") not in ("queued", "running")
                        and not is_alive(run)),
               timeout, "the worker to end", poll=0.2, log=run / "train.log")
    return effective_state(run)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_then_resume_continues_from_the_last_completed_epoch(launch_tiny, backend):
    """Stop lands within seconds, a second stop is a no-op, and resume fills epochs 1..N exactly once."""
    run = launch_tiny(backend)
    with pytest.raises(RunError, match="already"):
        launch(run)  # a double click starts one worker only
    wait_until(lambda: len(epochs_logged(run)) >= 1, 180, "the first epoch", log=run / "train.log")
    # history.csv is flushed per epoch and progress.json tells the UI where training is.
    assert effective_state(run) == "running"
    progress = RunFolder(run).read_progress()
    assert (progress["epochs"], progress["batches"]) == (EPOCHS, 7) and progress["epoch"] >= 1

    started = time.monotonic()
    assert stop(run, wait=30) is True
    assert not is_alive(run)
    assert time.monotonic() - started < 10
    assert effective_state(run) == "stopped"
    status = RunFolder(run).read_status()
    assert status["error"] is None and status["stop_requested"]

    assert stop(run) is False  # idempotent: nothing to signal, nothing changes
    assert RunFolder(run).read_status() == status and effective_state(run) == "stopped"

    done = epochs_logged(run)
    assert done == list(range(1, len(done) + 1)) and len(done) < EPOCHS, RunFolder(run).read_log_tail()
    assert (run / "model.keras").is_file() and (run / "backup").is_dir()
    # The resume point holds the optimizer too: its step counter is 7 steps per completed epoch.
    assert backup_optimizer_step(run) == 7 * len(done)

    resume(run)
    assert wait_for_end(run, 300) == "finished", RunFolder(run).read_log_tail()
    log = (run / "train.log").read_text()
    assert f"resuming after epoch {len(done)}" in log
    assert f"resumed at epoch {len(done) + 1} with optimizer step {7 * len(done)}" in log
    assert epochs_logged(run) == list(range(1, EPOCHS + 1))
    assert raw_history_epochs(run) == list(range(EPOCHS))
    assert RunFolder(run).read_status()["epochs_done"] == EPOCHS
    assert (run / "eval" / "metrics.json").is_file()


@pytest.mark.timeout(420)
@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_is_interrupted_keeps_its_files_and_resumes(launch_tiny, backend):
    """A worker killed by SIGKILL shows as 'interrupted' (not 'running'); resume picks up its backup."""
    run = launch_tiny(backend)
    # Two logged epochs guarantee a backup of the first (an epoch's backup follows its history row).
    wait_until(lambda: len(epochs_logged(run)) >= 2, 180, "two epochs", log=run / "train.log")
    os.killpg(RunFolder(run).read_status()["pid"], signal.SIGKILL)
    wait_until(lambda: not is_alive(run), 10, "the killed worker to release its lock")

    assert RunFolder(run).read_status()["state"] == "running"  # nobody could write the final state...
    assert effective_state(run) == "interrupted"  # ...but the lock tells the truth
    assert stop(run) is False
    kept = epochs_logged(run)
    # The backup may lag the history by one epoch (killed in between): resume then redoes that epoch.
    assert kept and zipfile.is_zipfile(run / "model.keras")  # saves are atomic: never cut short
    # An empty model.keras, as a version without atomic saves left when killed mid-save: the
    # resumed run must write a new one even though no epoch beats the recorded best.
    (run / "model.keras").write_bytes(b"")

    resume(run)
    assert wait_for_end(run, 300) == "finished", RunFolder(run).read_log_tail()
    log = (run / "train.log").read_text()
    assert "resuming after epoch" in log and "model.keras is missing or damaged" in log
    assert zipfile.is_zipfile(run / "model.keras") and (run / "eval" / "metrics.json").is_file()
    assert epochs_logged(run) == list(range(1, EPOCHS + 1))
    assert raw_history_epochs(run) == list(range(EPOCHS))
    assert RunFolder(run).read_status()["error"] is None


def test_backup_is_written_last_so_a_kill_never_leaves_a_history_gap(tmp_path):
    """BackupAndRestore marks an epoch done; before it, the checkpoint and then the history row
    (which announces the epoch) must exist."""
    keras = pytest.importorskip("keras")
    from fer.recipe import callbacks as run_callbacks

    config = TrainConfig(lr_schedule="plateau", early_stopping_patience=5)
    callbacks = run_callbacks(RunFolder(tmp_path), config, lambda: None, steps=1, best_so_far=None)
    assert type(callbacks[-1]) is keras.callbacks.BackupAndRestore

    def position(kind) -> int:
        return next(i for i, callback in enumerate(callbacks) if isinstance(callback, kind))

    assert position(keras.callbacks.ModelCheckpoint) < position(keras.callbacks.CSVLogger)


def test_best_network_is_replaced_atomically(tmp_path, monkeypatch):
    """A save that dies halfway (here: raises after writing part of the file) leaves the previous
    best network intact; a completed save replaces it and leaves no staging file."""
    keras = pytest.importorskip("keras")
    from fer.recipe import callbacks as run_callbacks

    folder = RunFolder(tmp_path)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    checkpoint = next(callback for callback in run_callbacks(folder, TrainConfig(), lambda: None,
                                                             steps=1, best_so_far=None)
                      if isinstance(callback, keras.callbacks.ModelCheckpoint))
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.5})
    first = folder.model_file.read_bytes()
    assert zipfile.is_zipfile(folder.model_file) and not folder.model_staging_file.exists()

    def dies_halfway(self, filepath, **kwargs):
        Path(filepath).write_bytes(first[:100])
        raise OSError("killed mid-save")

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", dies_halfway)
        with pytest.raises(OSError, match="mid-save"):
            checkpoint.on_epoch_end(1, {"val_accuracy": 0.6})
    assert folder.model_file.read_bytes() == first

    checkpoint.on_epoch_end(2, {"val_accuracy": 0.4})  # not better: nothing written
    assert folder.model_file.read_bytes() == first
    model.layers[0].kernel.assign(model.layers[0].kernel + 1.0)
    checkpoint.on_epoch_end(3, {"val_accuracy": 0.7})
    assert folder.model_file.read_bytes() != first and zipfile.is_zipfile(folder.model_file)
    assert not folder.model_staging_file.exists()


@pytest.mark.timeout(300)
def test_stop_during_evaluation_ends_within_seconds_as_finished_without_evaluation(
        tmp_path, tiny_data, restore_signals, monkeypatch):
    """Keras drops the resume backup when fit ends, so a stop during the evaluation must not leave
    a 'stopped' run whose resume would retrain from scratch: the run ends at once as finished
    (its best model saved), and a note says how to evaluate it later."""
    import threading

    import fer.evaluate
    from fer.train import run_worker

    def endless_evaluation(run_dir, dataset=None):
        while True:  # an evaluation far longer than the 5 s a stop may take
            time.sleep(0.05)

    monkeypatch.setattr(fer.evaluate, "evaluate_run", endless_evaluation)
    config = TrainConfig.for_architecture("mini_xception", data=str(tiny_data), epochs=1, batch_size=4,
                                          augment=False, lr_schedule="none")
    run = create_run(config, tmp_path / "runs")
    signalled: list[float] = []

    def stop_when_evaluating():
        wait_until(lambda: RunFolder(run).read_status().get("phase") == "evaluating", 240, "the evaluation")
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)  # what fer.workers.stop sends

    threading.Thread(target=stop_when_evaluating, daemon=True).start()
    assert run_worker(run) == 0
    assert signalled and time.monotonic() - signalled[0] < 5
    status = RunFolder(run).read_status()
    assert status["state"] == "finished" and status["error"] is None
    assert "python -m fer.evaluate --run" in status["note"]
    assert epochs_logged(run) == [1] and (run / "model.keras").is_file()
    assert not (run / "eval" / "metrics.json").exists()
    assert RunFolder(run).read_progress()["phase"] == "finished"


@pytest.mark.timeout(300)
def test_stop_reaches_a_worker_started_in_a_terminal(tmp_path, tiny_data):
    """``python -m fer.train`` without --detach shares the terminal's process group: Stop still
    reaches it, says so, and the run ends as stopped."""
    import subprocess
    import sys

    from helpers import worker_env

    from fer import PROJECT_ROOT

    root = tmp_path / "runs"
    worker = subprocess.Popen(
        [sys.executable, "-m", "fer.train", "--experiments", str(root), "--name", "terminal",
         "--architecture", "mini_xception", "--data", str(tiny_data), "--epochs", str(EPOCHS),
         "--batch-size", "4", "--no-augment"],
        cwd=PROJECT_ROOT, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = root / "terminal"
        wait_until(lambda: (run / "history.csv").is_file(), 240, "the first epoch", log=run / "train.log")
        assert os.getpgid(worker.pid) != worker.pid  # not a group leader, unlike launched workers
        assert stop(run, wait=20) is True
        assert worker.wait(timeout=30) == 3
        assert effective_state(run) == "stopped"
    finally:
        worker.kill()

