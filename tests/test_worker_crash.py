"""A worker that dies inside native code, and a disk too full for an epoch's save.

A crash (segmentation fault in a backend or in HDF5) leaves the worker no chance to write its own
status: its supervising parent records it. A disk that cannot hold the next save fails the run
before anything is written, with the sizes."""

from __future__ import annotations

import errno
import os
import shutil
import signal
from collections import namedtuple
from pathlib import Path

import pytest
from helpers import wait_until

import fer.recipe
import fer.train
from fer.config import TrainConfig
from fer.run_folder import RunFolder
from fer.runs import create_run
from fer.train import run_worker
from fer.workers import effective_state, is_alive, launch, pid_running

Usage = namedtuple("Usage", "total used free")


def config(data: Path, epochs: int) -> TrainConfig:
    return TrainConfig.for_architecture("mini_xception", data=str(data), epochs=epochs, batch_size=4,
                                        augment=False, lr_schedule="none", early_stopping_patience=0)


@pytest.mark.timeout(420)
def test_a_crashed_worker_is_recorded_as_failed_and_the_run_resumes(tmp_path, tiny_data, monkeypatch):
    run = create_run(config(tiny_data, epochs=300), tmp_path / "runs")
    queued = create_run(config(tiny_data, epochs=1), tmp_path / "runs")
    monkeypatch.setenv("FER_MAX_RUNS", "1")
    try:
        launch(run)
        launch(queued)  # waits for the crashed run's slot
        assert effective_state(queued) == "queued"
        folder = RunFolder(run)
        wait_until(lambda: len(folder.read_history()) >= 2, 300, "two epochs", poll=0.2, log=folder.log_file)
        worker = folder.read_status()["pid"]
        os.kill(worker, signal.SIGSEGV)
        wait_until(lambda: folder.read_status().get("state") != "running", 30, "the crash to be recorded",
                   poll=0.2, log=folder.log_file)
        status = folder.read_status()
        assert status["state"] == "failed", status
        assert status["error"].startswith("the worker crashed (SIGSEGV, Segmentation fault) while "), status
        assert os.strerror(errno.ENOSPC) not in status["error"]  # this disk has room
        assert status["ended"] >= status["started"] and status["training_s"] > 0
        assert effective_state(run) == "failed" and not is_alive(run)
        assert "[fer] error: the worker crashed (SIGSEGV" in folder.log_file.read_text()
        assert not list(Path.cwd().glob("core*")) and not list(run.glob("core*"))
        # Its slot went to the queued run, and the crashed one resumes from its last saved epoch.
        wait_until(lambda: effective_state(queued) == "finished", 300, "the queued run", poll=0.2,
                   log=RunFolder(queued).log_file)
        done = folder.completed_epochs()
        assert done >= 1
        launch(run)
        wait_until(lambda: folder.completed_epochs() > done, 300, "an epoch after the resume", poll=0.2,
                   log=folder.log_file)
        assert f"resuming after epoch {done}" in folder.log_file.read_text()
        epochs = folder.read_history()["epoch"].tolist()
        assert epochs == list(range(1, len(epochs) + 1))  # no epoch lost or repeated
    finally:
        for each in (run, queued):
            pid = RunFolder(each).read_status().get("pid")
            if pid and is_alive(each):
                os.killpg(pid, signal.SIGKILL)


def test_a_kill_of_the_workers_supervisor_ends_the_worker_too(tmp_path, tiny_data):
    run = create_run(config(tiny_data, epochs=300), tmp_path / "runs")
    folder = RunFolder(run)
    supervisor = launch(run)
    try:
        wait_until(lambda: folder.read_status().get("pid") not in (None, supervisor)
                   and folder.read_status().get("state") == "running", 120, "the worker", log=folder.log_file)
        worker = folder.read_status()["pid"]
        assert os.getpgid(worker) == worker  # stop() signals the worker's own group
        os.kill(supervisor, signal.SIGKILL)
        wait_until(lambda: not is_alive(run), 30, "the worker to die with its supervisor")
        assert effective_state(run) == "interrupted"  # a kill is not a crash: the run resumes
    finally:
        pid = folder.read_status().get("pid")
        if pid and is_alive(run):
            os.killpg(pid, signal.SIGKILL)


def test_a_disk_too_full_for_the_next_save_fails_the_run_with_the_sizes(tmp_path, tiny_data, monkeypatch,
                                                                         restore_signals):
    run = create_run(config(tiny_data, epochs=5), tmp_path / "runs")
    folder = RunFolder(run)
    real = shutil.disk_usage

    def usage(path):
        total, used, free = real(path)
        # room for the first epoch's files, none for the second's
        return Usage(total, used, free if folder.completed_epochs() == 0 else 300_000)

    monkeypatch.setattr(fer.recipe.shutil, "disk_usage", usage)
    assert run_worker(run) == 1
    status = folder.read_status()
    assert status["state"] == "failed"
    assert status["error"].startswith(f"{os.strerror(errno.ENOSPC)} (saving epoch 2 needs about "), status
    assert "MB, 0.3 MB are free): " + str(run) in status["error"]
    # Epoch 1 is whole, epoch 2 left no trace: the run resumes after epoch 1.
    assert folder.completed_epochs() == 1 and folder.read_history()["epoch"].tolist() == [1]
    assert (run / "model.keras").is_file()


def test_the_save_estimate_grows_with_the_files_already_there(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1000)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    folder = RunFolder(tmp_path)
    # No files yet: from the variables (11,000 weights, Adam's two slots per weight).
    assert fer.recipe.epoch_save_bytes(folder, model) == pytest.approx(
        2 * 4 * 33_000 + 4 * 11_000 + fer.recipe.SAVE_MARGIN_BYTES, rel=0.01)
    folder.backup_dir.mkdir()
    (folder.backup_dir / "latest.weights.h5").write_bytes(b"\0" * 5_000_000)
    (tmp_path / "model.keras").write_bytes(b"\0" * 2_000_000)
    assert fer.recipe.epoch_save_bytes(folder, model) == 12_000_000 + fer.recipe.SAVE_MARGIN_BYTES


@pytest.mark.parametrize("pid", [None, 0, -1, True, "1", 1.5, [1]])
def test_a_pid_that_is_no_process_id_is_not_running(pid):
    """Status files are read from disk: a damaged pid must never reach os.kill (-1 signals all)."""
    assert pid_running(pid) is False


def test_pid_running_tells_a_finished_child_from_a_running_one():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_running(os.getpid()) and pid_running(child.pid)
        child.kill()
        wait_until(lambda: not pid_running(child.pid), 10, "the killed child to show as ended")
    finally:
        child.kill()
        child.wait()


SUPERVISED = """
import os, sys, time
from pathlib import Path
import fer.train
from fer.run_folder import RunFolder

counter = Path(sys.argv[2])
fer.train.oom_kill_count = lambda: int(counter.read_text())  # the kernel's counter, played by a file

def stand_in(run_dir, watchdog):  # a worker that trains forever
    RunFolder(Path(run_dir)).write_status(state="running", pid=os.getpid(), phase="training",
                                          started=time.time())
    time.sleep(120)
    return 0

fer.train.run_worker = stand_in
sys.exit(fer.train.supervised_worker(Path(sys.argv[1])))
"""


@pytest.mark.parametrize("out_of_memory", [True, False], ids=["oom-killer", "other-kill"])
def test_a_worker_the_out_of_memory_killer_ends_fails_for_lack_of_memory(tmp_path, tiny_data, out_of_memory):
    """SIGKILL after the kernel's OOM-kill counter moved: failed, saying memory ran out and what
    helps. Any other SIGKILL leaves the run 'interrupted' (resumable as it is)."""
    import subprocess
    import sys

    from helpers import worker_env

    from fer import PROJECT_ROOT

    run = create_run(config(tiny_data, epochs=5), tmp_path / "runs")
    folder = RunFolder(run)
    counter = tmp_path / "oom_kill"
    counter.write_text("3")
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISED, str(run), str(counter)],
                                  cwd=PROJECT_ROOT, env=worker_env())
    try:
        wait_until(lambda: folder.read_status().get("pid") not in (None, supervisor.pid), 60, "the worker")
        if out_of_memory:
            counter.write_text("4")
        os.kill(folder.read_status()["pid"], signal.SIGKILL)
        assert supervisor.wait(timeout=30) == 1
    finally:
        supervisor.kill()
    status = folder.read_status()
    if out_of_memory:
        assert status["state"] == "failed" and status["error"] == (
            "the worker ran out of memory: the kernel's out-of-memory killer ended it while training; "
            "a smaller batch size, fewer runs at once (Runs at once) or closing other programs "
            "leaves it more")
    else:
        assert status["state"] == "running" and effective_state(run) == "interrupted"


def test_the_out_of_memory_kill_count_is_read_where_the_kernel_has_one():
    count = fer.train.oom_kill_count()
    assert count is None if not Path("/proc/vmstat").exists() else isinstance(count, int) and count >= 0
