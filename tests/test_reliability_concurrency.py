"""Three runs training at once, their launching server killed, a fresh server session stopping them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_driver import experiments, no_exception, open_page
from helpers import wait_until, worker_env

from fer import PROJECT_ROOT
from fer.config import TrainConfig
from fer.run_folder import HISTORY_COLUMNS, RunFolder
from fer.runs import create_run, experiments_dir
from fer.workers import effective_state, is_alive

pytestmark = pytest.mark.slow

# What a worker may leave in its run folder; anything else would be a file shared or misplaced.
RUN_FILES = {"config.json", "status.json", "history.csv", "progress.json", "model.keras", "backup", "eval",
             "train.log", ".lock", ".status.lock", ".launch.lock", "stop-requested", "checkpoint-config.json"}
HISTORY_HEADER = ",".join(HISTORY_COLUMNS)


@pytest.fixture
def cleanup():
    """Kill the workers a failed test leaves behind."""
    runs: list[Path] = []
    yield runs
    for run in runs:
        pid = RunFolder(run).read_status().get("pid")
        if pid and is_alive(run):
            os.killpg(pid, signal.SIGKILL)


def epochs(run: Path) -> int:
    return len(RunFolder(run).read_history())


@pytest.mark.timeout(540)
def test_three_runs_survive_a_killed_server_and_are_stopped_from_a_fresh_session(
        tmp_path, tiny_data, cleanup, monkeypatch):
    """Three runs created in the same second get their own folders; a server process launches them
    and is killed; the workers go on; their dataset is deleted mid-run (it is in memory); a fresh
    session shows all three running and stops each within 5 s; no history row is lost, doubled or
    written into another run."""
    data = shutil.copytree(tiny_data, tmp_path / "data")
    config = TrainConfig.for_architecture("mini_xception", data=str(data), epochs=500, batch_size=4,
                                          augment=False, lr_schedule="none", early_stopping_patience=0)
    monkeypatch.setenv("FER_MAX_RUNS", "3")  # all three train at once (the queue's limit)
    runs = [create_run(config) for _ in range(3)]
    cleanup.extend(runs)
    assert len({run.name for run in runs}) == 3
    assert len({run.name[:15] for run in runs}) < 3  # at least two were created in the same second

    server = subprocess.run(
        [sys.executable, "-c", "import os, sys\nfrom fer.workers import launch\n"
                               "for run in sys.argv[1:]: launch(run)\nos.kill(os.getpid(), 9)",
         *map(str, runs)], cwd=PROJECT_ROOT, env=worker_env(), timeout=120, check=False)
    assert server.returncode == -signal.SIGKILL
    for run in runs:
        wait_until(lambda run=run: epochs(run) >= 1, 300, f"a first epoch of {run.name}", poll=0.5,
                   log=run / "train.log")
    shutil.rmtree(data)
    done = {run: epochs(run) for run in runs}
    for run in runs:
        wait_until(lambda run=run: epochs(run) > done[run], 120, f"{run.name} to go on without its data",
                   poll=0.5, log=run / "train.log")

    app = open_page("runs", {"run": [run.name for run in runs]})  # a new server session
    no_exception(app)
    table = app.dataframe[0].value.set_index("run")
    assert [table.loc[run.name, "state"] for run in runs] == ["running"] * 3
    for run in runs:
        next(b for b in app.button if b.key == f"stop.{run.name}").click().run()
        clicked = time.monotonic()
        no_exception(app)
        wait_until(lambda run=run: RunFolder(run).read_status().get("state") == "stopped", 5,
                   f"{run.name} to stop", poll=0.1, log=run / "train.log")
        assert time.monotonic() - clicked <= 5
    for run in runs:  # after its final status, a worker may take a few seconds to exit
        wait_until(lambda run=run: not is_alive(run), 30, f"{run.name} to exit", poll=0.2)

    app = open_page("runs", {"run": [run.name for run in runs]})
    no_exception(app)
    assert list(app.dataframe[0].value["state"]) == ["stopped"] * 3
    assert [b.label for b in app.button].count("Resume") == 3
    assert experiments(experiments_dir()) == sorted(run.name for run in runs)
    for run in runs:
        assert effective_state(run) == "stopped" and RunFolder(run).read_status()["error"] is None
        assert {path.name for path in run.iterdir()} <= RUN_FILES
        lines = (run / "history.csv").read_text().splitlines()
        assert lines[0] == HISTORY_HEADER
        assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(len(lines) - 1))
        assert RunFolder(run).read_status()["epochs_done"] == len(lines) - 1
