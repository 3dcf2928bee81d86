"""Worker and CLI failures end cleanly: a 'failed' status with a readable message, or exit code 2."""

from __future__ import annotations

import os
import time

import pytest
from helpers import run_cli

from fer.config import TrainConfig
from fer.run_folder import RunFolder
from fer.runs import create_run
from fer.train import main, run_worker
from fer.workers import acquire_lock


def tiny_config(data, **overrides) -> TrainConfig:
    values = {"data": str(data), "epochs": 1, "batch_size": 8, **overrides}
    return TrainConfig.for_architecture("mini_xception", **values)


def test_data_error_ends_as_failed_with_the_message(tmp_path, restore_signals, capsys):
    """A missing dataset is a 'failed' run whose error names the path; no traceback is printed."""
    run = create_run(tiny_config(tmp_path / "no-such-data"), tmp_path / "runs")
    assert run_worker(run) == 1
    status = RunFolder(run).read_status()
    assert status["state"] == "failed"
    assert "dataset not found" in status["error"] and str(tmp_path / "no-such-data") in status["error"]
    assert status["ended"] >= status["started"] and status["phase"] is None
    output = capsys.readouterr()
    assert "[fer] error: dataset not found" in output.out
    assert "Traceback" not in output.out + output.err


def test_batch_size_larger_than_the_dataset_fails_with_a_clear_message(tmp_path, tiny_data, restore_signals):
    """64 images per batch from 28 training images would give an empty epoch: refuse it by name."""
    run = create_run(tiny_config(tiny_data, batch_size=64), tmp_path / "runs")
    assert run_worker(run) == 1
    status = RunFolder(run).read_status()
    assert status["state"] == "failed"
    assert status["error"] == "batch_size=64 is larger than the training set (28 images)"
    assert status["train_size"] == 28


def test_broken_config_json_ends_as_failed(tmp_path, restore_signals):
    """A hand-edited config.json that is not JSON fails the run with that reason."""
    run = create_run(tiny_config(tmp_path), tmp_path / "runs")
    (run / "config.json").write_text("{not json")
    assert run_worker(run) == 1
    assert "not valid JSON" in RunFolder(run).read_status()["error"]


def test_worker_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    """`--run-dir` on a random folder exits 2 without writing anything there."""
    assert main(["--run-dir", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_worker_refuses_a_run_another_process_trains(tmp_path, restore_signals, capsys, monkeypatch):
    """Two workers on one run folder would corrupt it: the second exits 2 and changes nothing."""
    import fer.train

    monkeypatch.setattr(fer.train, "LOCK_WAIT", 0.2)
    run = create_run(tiny_config(tmp_path), tmp_path / "runs")
    lock = acquire_lock(run)
    try:
        assert run_worker(run) == 2
    finally:
        os.close(lock)
    assert "already being trained" in capsys.readouterr().err
    assert RunFolder(run).read_status()["state"] == "created"


def test_worker_waits_for_a_previous_worker_that_is_still_exiting(tmp_path, restore_signals, monkeypatch):
    """Resume clicked right after Stop: the old worker has written 'stopped' but still holds the
    lock for a moment while it exits; the new worker waits for it instead of refusing."""
    import threading

    import fer.train

    monkeypatch.setattr(fer.train, "LOCK_WAIT", 10.0)
    waited = {}

    def instead_of_training(run_dir, stop):
        waited["seconds"] = time.monotonic() - started
        return {"val_accuracy": 0.5, "test_accuracy": 0.5}

    monkeypatch.setattr(fer.train, "train_run", instead_of_training)
    run = create_run(tiny_config(tmp_path), tmp_path / "runs")
    lock = acquire_lock(run)
    threading.Timer(1.0, os.close, [lock]).start()
    started = time.monotonic()
    assert run_worker(run) == 0
    assert waited["seconds"] >= 0.9
    assert RunFolder(run).read_status()["state"] == "finished"


@pytest.mark.parametrize(("flags", "message"), [
    (["--epochs", "0"], "epochs=0 is out of range"),
    (["--learning-rate", "-1"], "learning_rate=-1.0 is out of range"),
    (["--learning-rate", "nan"], "learning_rate=nan"),
    (["--dropout", "1"], "dropout=1.0 is out of range"),
    (["--batch-size", "0"], "batch_size=0 is out of range"),
    (["--epochs", "ten"], "invalid int value: 'ten'"),
    (["--architecture", "resnet"], "invalid choice: 'resnet'"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["--name", "../escape"], "invalid run id '../escape'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_cli_flag_errors_exit_2_with_a_message_and_create_no_run(tmp_path, capsys, flags, message):
    """Bad flags stop before any run folder exists, with exit code 2 and the reason on stderr."""
    experiments = tmp_path / "runs"
    with pytest.raises(SystemExit) as info:
        main(["--experiments", str(experiments), "--data", str(tmp_path), *flags])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not experiments.exists() or list(experiments.iterdir()) == []


@pytest.mark.timeout(120)
def test_cli_process_exits_2_on_invalid_flags(tmp_path):
    """The real `python -m fer.train` process reports flag errors with exit code 2."""
    result = run_cli(["fer.train", "--experiments", tmp_path, "--epochs", "0"], timeout=100)
    assert result.returncode == 2
    assert "error: epochs=0 is out of range" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("detach", [False, True])
def test_a_missing_dataset_is_refused_before_a_run_exists_with_the_evaluate_exit_code(tmp_path, detach):
    """`fer.train --data <missing>` (with or without --detach) exits 2 with the reason and leaves
    no run folder behind; `fer.evaluate` gives the same error the same exit code."""
    experiments = tmp_path / "runs"
    result = run_cli(["fer.train", "--experiments", experiments, "--name", "bad", "--data",
                      tmp_path / "missing", "--epochs", "1", *(["--detach"] if detach else [])], timeout=100)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: dataset not found" in result.stderr and "Traceback" not in result.stderr
    assert not experiments.exists() or list(experiments.iterdir()) == []
    evaluated = run_cli(["fer.evaluate", "--data", tmp_path / "missing"], timeout=100)
    assert evaluated.returncode == 2 and "dataset not found" in evaluated.stderr
