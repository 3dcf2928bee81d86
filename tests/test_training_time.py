"""The training time of a run counts every worker that trained it (start and resumes), not the
time it spent stopped or queued, and runs from before that record still read."""

from __future__ import annotations

import json
import time

import pytest

from fer.config import TrainConfig
from fer.run_folder import RunFolder
from fer.runs import create_run, load_run
from fer.train import run_worker


def test_old_runs_count_their_last_worker_and_a_killed_worker_counts_to_its_last_progress(tmp_path):
    folder = RunFolder(tmp_path)
    # An old run: no training_s, one worker from start to end.
    assert folder.training_seconds({"started": 1000.0, "ended": 1270.0}) == 270.0
    assert folder.training_seconds({"created": 1000.0}) is None
    # A worker killed with kill -9 never wrote its end: its last progress write counts.
    (tmp_path / "progress.json").write_text(json.dumps({"phase": "training", "updated": 1100.0}))
    assert folder.training_seconds({"started": 1000.0, "ended": None, "training_s": 60.0}) == 160.0
    # Live: the earlier workers and this one up to now.
    live = folder.training_seconds({"started": time.time() - 30, "training_s": 60.0}, live=True)
    assert 89 < live < 100


@pytest.mark.slow
def test_a_stopped_then_resumed_run_adds_the_time_of_each_worker(tmp_path, tiny_data, restore_signals):
    config = TrainConfig.for_architecture("mini_xception", data=str(tiny_data), epochs=1, batch_size=4,
                                          augment=False, lr_schedule="none")
    run = create_run(config, tmp_path / "runs")
    folder = RunFolder(run)
    folder.request_stop(None)  # the first worker stops as soon as it starts
    assert run_worker(run) == 3
    first = folder.read_status()
    assert first["state"] == "stopped" and 0 <= first["training_s"] <= first["ended"] - first["started"] + 1
    # As if the first worker had trained for five minutes; the queue time between does not count.
    folder.write_status(training_s=300.0)
    folder.clear_stop_request()
    assert run_worker(run) == 0
    status = folder.read_status()
    second = status["ended"] - status["started"]
    assert status["state"] == "finished"
    assert status["training_s"] == pytest.approx(300.0 + second, abs=1.0)
    assert load_run(run).duration_s == status["training_s"]
