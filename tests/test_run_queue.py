"""The run queue: launches beyond the concurrency limit wait and start in launch order, one slot at
a time; a killed dispatcher or dashboard loses no queued run; Stop on a queued run removes it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from app_driver import no_exception, open_page
from fake_runs import fake_run, hold_run_lock, release
from helpers import wait_until

import fer.queue
from fer.config import TrainConfig
from fer.queue import (
    DISPATCHER_LOCK,
    QueueError,
    dispatcher_alive,
    env_max_runs,
    max_runs,
    queue_positions,
    set_max_runs,
)
from fer.run_folder import RunFolder
from fer.runs import create_run, experiments_dir, load_run
from fer.workers import effective_state, is_alive, launch, resume, stop

FINAL = ("finished", "failed", "stopped", "interrupted")


@pytest.fixture
def root(monkeypatch) -> Path:
    monkeypatch.setenv("FER_MAX_RUNS", "1")
    path = experiments_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def quick_run(root: Path, name: str, tmp_path: Path) -> Path:
    """A run whose worker starts, fails at once (its dataset does not exist) and frees its slot."""
    config = TrainConfig.for_architecture("mini_xception", data=str(tmp_path / "no-such-data"), epochs=1)
    return create_run(config, root, name)


@pytest.fixture
def busy(root):
    """The one slot is taken by a run whose (stand-in) worker holds its lock."""
    run = fake_run(root, "busy", state="running", evaluation=False)
    worker = hold_run_lock(run)
    yield run, worker
    release(worker)


def free_slot(busy) -> None:
    run, worker = busy
    release(worker)
    RunFolder(run).write_status(state="stopped")


@pytest.mark.timeout(240)
def test_five_launches_with_limit_one_run_one_at_a_time_in_launch_order(root, tmp_path):
    runs = [quick_run(root, f"q{i}", tmp_path) for i in range(5)]
    pids = [launch(run) for run in runs]
    assert pids[0] is not None and pids[1:] == [None] * 4  # the first starts at once
    assert queue_positions(root) == {"q1": 1, "q2": 2, "q3": 3, "q4": 4}
    wait_until(lambda: all(effective_state(run) in FINAL for run in runs), 200, "all five runs to end",
               poll=0.2)
    statuses = [RunFolder(run).read_status() for run in runs]
    assert [s["state"] for s in statuses] == ["failed"] * 5
    assert all("does not exist" in s["error"] for s in statuses)
    for before, after in zip(statuses, statuses[1:], strict=False):
        assert after["started"] >= before["ended"], "two runs trained at once, or out of order"


def kill_dispatchers(root: Path, quiet_s: float = 5.0) -> None:
    """Kill the dispatcher, and any that a second launch started as well (the later one takes
    over the lock only once the first is gone), until none holds the lock for ``quiet_s``."""
    deadline, quiet_since = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        if dispatcher_alive(root):
            quiet_since = None
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int((root / DISPATCHER_LOCK).read_text()), signal.SIGKILL)
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > quiet_s:
            return
        time.sleep(0.1)
    raise AssertionError("a dispatcher kept coming back")


@pytest.mark.timeout(240)
def test_a_killed_dispatcher_and_dashboard_lose_no_queued_run(root, tmp_path, busy):
    waiting = [quick_run(root, f"w{i}", tmp_path) for i in range(2)]
    assert [launch(run) for run in waiting] == [None, None]
    wait_until(lambda: dispatcher_alive(root), 30, "the dispatcher to start")
    kill_dispatchers(root)
    free_slot(busy)
    time.sleep(2)
    assert [effective_state(run) for run in waiting] == ["queued", "queued"]  # nobody started them

    app = open_page("runs")  # a dashboard (re)opened: it restarts the dispatcher
    no_exception(app)
    wait_until(lambda: all(effective_state(run) in FINAL for run in waiting), 120, "the queued runs to run",
               poll=0.2)
    first, second = (RunFolder(run).read_status() for run in waiting)
    assert (first["state"], second["state"]) == ("failed", "failed")
    assert second["started"] >= first["ended"]


def test_stop_on_a_queued_run_removes_it_from_the_queue_and_resume_queues_it_again(root, tmp_path, busy):
    first, second = (quick_run(root, name, tmp_path) for name in ("first", "second"))
    launch(first)
    launch(second)
    assert queue_positions(root) == {"first": 1, "second": 2}
    assert stop(first) is True
    status = RunFolder(first).read_status()
    assert status["state"] == "stopped" and "removed from the queue" in status["note"]
    assert queue_positions(root) == {"second": 1}
    app = open_page("runs", {"run": "second"})
    no_exception(app)
    assert app.dataframe[0].value.set_index("run").loc["second", "state"] == "queued #1"
    assert resume(first) is None  # back in the queue, behind "second"
    assert queue_positions(root) == {"second": 1, "first": 2}
    for run in (first, second):
        stop(run)


def test_a_dispatcher_log_over_its_limit_is_moved_aside_when_a_dispatcher_starts(root, tmp_path, busy):
    log = root / fer.queue.DISPATCHER_LOG
    old = b"[fer] started an old run\n" * (fer.queue.DISPATCHER_LOG_MAX_BYTES // 25 + 1)
    log.write_bytes(old)
    run = quick_run(root, "waiting", tmp_path)
    launch(run)
    wait_until(lambda: dispatcher_alive(root), 30, "the dispatcher to start")
    assert (root / (fer.queue.DISPATCHER_LOG + ".1")).read_bytes() == old
    assert log.stat().st_size < len(old)
    stop(run)


def test_raising_the_limit_starts_waiting_runs(root, tmp_path, busy, monkeypatch):
    run = quick_run(root, "waiting", tmp_path)
    assert launch(run) is None
    monkeypatch.delenv("FER_MAX_RUNS")
    set_max_runs(root, 2)
    assert json.loads((root / "queue.json").read_text()) == {"max_runs": 2}
    assert max_runs(root) == 2
    assert RunFolder(run).read_status().get("pid") is not None  # started at once
    wait_until(lambda: effective_state(run) in FINAL, 60, "the run to end", poll=0.2)


def test_the_sidebar_sets_runs_at_once(root, monkeypatch):
    monkeypatch.delenv("FER_MAX_RUNS")
    app = open_page("runs")
    no_exception(app)
    app.number_input(key="queue.max_runs").set_value(3).run()
    no_exception(app)
    assert max_runs(root) == 3
    monkeypatch.setenv("FER_MAX_RUNS", "2")
    app = open_page("runs")
    assert any("FER_MAX_RUNS" in caption.value for caption in app.sidebar.caption)
    assert not [box for box in app.number_input if box.key == "queue.max_runs"]


@pytest.mark.parametrize(("value", "message"), [("many", "not a whole number"), ("0", "out of range")])
def test_a_bad_fer_max_runs_is_explained_and_ignored(root, monkeypatch, value, message):
    monkeypatch.setenv("FER_MAX_RUNS", value)
    with pytest.raises(QueueError, match=message):
        env_max_runs()
    app = open_page("runs")
    no_exception(app)
    assert any(message in warning.value for warning in app.sidebar.warning)


def test_default_is_one_run_per_gpu_or_one(monkeypatch, tmp_path):
    monkeypatch.delenv("FER_MAX_RUNS", raising=False)
    fer.queue.gpu_count.cache_clear()
    monkeypatch.setattr(fer.queue.shutil, "which", lambda name: None)
    assert max_runs(tmp_path) == 1
    fer.queue.gpu_count.cache_clear()
    fake_smi = tmp_path / "nvidia-smi"
    fake_smi.write_text("#!/bin/sh\necho 'GPU 0: H100 (UUID: a)'\necho 'GPU 1: H100 (UUID: b)'\n")
    fake_smi.chmod(0o755)
    monkeypatch.setattr(fer.queue.shutil, "which", lambda name: str(fake_smi))
    assert max_runs(tmp_path) == 2
    fer.queue.gpu_count.cache_clear()


def worker_processes(root: Path) -> list[str]:
    """The command lines of the training workers of runs in ``root`` (a worker's supervising
    parent, with the same command line, counts once with it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "fer.train" in args and any(arg.startswith(str(root)) for arg in args):
            found.append(" ".join(args))
    return sorted(set(found))


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ten_launches_train_one_at_a_time_and_all_stop_within_5_seconds(root, tiny_data):
    """Ten launches in a row on a 1-slot machine start one worker; stopping all ten takes each
    at most 5 s (the queued ones leave the queue at once)."""
    config = TrainConfig.for_architecture("mini_xception", data=str(tiny_data), epochs=500, batch_size=4,
                                          augment=False, lr_schedule="none", early_stopping_patience=0)
    runs = [create_run(config, root, f"r{i}") for i in range(10)]
    try:
        for run in runs:
            launch(run)
        wait_until(lambda: load_run(runs[0]).state == "running" and RunFolder(runs[0]).read_history().size,
                   240, "the first run's first epoch", poll=0.5, log=runs[0] / "train.log")
        assert [load_run(run).state for run in runs[1:]] == ["queued"] * 9
        assert len(worker_processes(root)) == 1, worker_processes(root)
        for run in reversed(runs):  # the queued ones first, so none starts while the first stops
            started = time.monotonic()
            assert stop(run, wait=5) is True
            assert time.monotonic() - started < 5
            assert effective_state(run) == "stopped"
        wait_until(lambda: all(effective_state(run) == "stopped" for run in runs), 10, "all stopped")
    finally:  # a failed assertion must not leave a 500-epoch worker behind
        for run in runs:
            pid = RunFolder(run).read_status().get("pid")
            if pid and is_alive(run):
                os.killpg(pid, signal.SIGKILL)
