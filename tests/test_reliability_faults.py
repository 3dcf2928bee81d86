"""Reliability of the run store and the worker under faults, without training a model.

Pins: concurrent status writes lose nothing; stop() never writes status.json and works before the
worker is up; stale pids and zombies read as interrupted; stop lands within seconds while data
loads; changed hyperparameters cannot resume a saved training state; a full disk or a dataset that
disappears fails the run with a message naming the problem and the path; run ids never collide.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_runs import hold_run_lock, release
from helpers import wait_until

import fer.run_folder
import fer.runs
from fer import PROJECT_ROOT
from fer.config import TrainConfig
from fer.files import read_json
from fer.run_folder import RunError, RunFolder, config_changes
from fer.runs import create_run
from fer.workers import effective_state, launch, resume, stop


def tiny_config(data: Path | str = "", **overrides) -> TrainConfig:
    return TrainConfig.for_architecture("mini_xception", **{"data": str(data), "epochs": 2, "batch_size": 4,
                                                            **overrides})


@pytest.fixture
def run(tmp_path):
    return create_run(tiny_config(), tmp_path / "runs", run_id="r1")


@pytest.fixture
def sleeper():
    """A live process in its own session, standing in for a worker (what stop() signals)."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


# ---- status.json: one writer at a time, and stop() is not one of them -------------------------

def test_concurrent_status_writes_lose_no_update(run):
    """Worker, launch and UI threads merging into status.json at once never drop each other's keys."""
    def writer(name: str) -> None:
        for i in range(40):
            RunFolder(run).write_status(**{f"{name}{i}": i})

    threads = [threading.Thread(target=writer, args=(f"t{n}_",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = RunFolder(run).read_status()
    assert all(status.get(f"t{n}_{i}") == i for n in range(4) for i in range(40))
    assert status["state"] == "created"


def test_status_writes_from_another_process_are_not_lost(run):
    """The lock holds between processes too: a second process writing at the same time loses nothing."""
    code = ("import sys; from fer.run_folder import RunFolder\n"
            "for i in range(40): RunFolder(sys.argv[1]).write_status(**{f'child{i}': i})")
    child = subprocess.Popen([sys.executable, "-c", code, str(run)], cwd=PROJECT_ROOT)
    for i in range(40):
        RunFolder(run).write_status(**{f"parent{i}": i})
    assert child.wait(timeout=60) == 0
    status = RunFolder(run).read_status()
    assert all(status.get(f"parent{i}") == i and status.get(f"child{i}") == i for i in range(40))


def test_stop_never_writes_status_json(run, monkeypatch):
    """stop() leaves a stop-requested file and signals; the worker alone records the outcome, so a
    final state it writes at the same moment can never be overwritten by a stale copy."""
    RunFolder(run).write_status(state="running")
    worker = hold_run_lock(run)
    try:
        before = (run / "status.json").read_bytes()
        monkeypatch.setattr(RunFolder, "write_status", lambda *a, **k: pytest.fail("stop wrote status.json"))
        assert stop(run) is True
        requested = read_json(RunFolder(run).stop_file)["requested"]
        stop(run)  # a second click: harmless, whether or not the worker has exited yet
        assert worker.wait(timeout=5) == -signal.SIGTERM
        assert stop(run) is False
        assert (run / "status.json").read_bytes() == before
        assert read_json(RunFolder(run).stop_file)["requested"] == requested <= time.time()
    finally:
        release(worker)


def test_worker_gone_after_a_stop_request_reads_stopped_not_interrupted(run, sleeper):
    """A worker stopped before it could record anything (started, not yet holding its lock) shows
    as stopped. Its pid is not signalled (it is not verified yet): the worker reads the stop
    request as soon as it holds the lock; here it dies first."""
    RunFolder(run).write_status(state="queued", queued=time.time(), pid=sleeper.pid)
    assert effective_state(run) == "queued"
    assert stop(run, wait=0) is True
    assert RunFolder(run).stop_requested() is not None
    time.sleep(0.5)
    assert sleeper.poll() is None  # not signalled
    sleeper.kill()
    sleeper.wait(timeout=5)
    assert effective_state(run) == "stopped"
    assert stop(run) is False  # nothing left to stop
    assert effective_state(run) == "stopped"


def test_launch_clears_an_old_stop_request(run, monkeypatch):
    """A stop meant for an earlier worker never stops the next one."""
    RunFolder(run).stop_file.write_text('{"requested": 1}')
    monkeypatch.setattr(fer.workers, "worker_command", lambda run_dir: ["sleep", "30"])
    pid = launch(run)
    try:
        assert not RunFolder(run).stop_file.exists()
        assert RunFolder(run).read_status()["pid"] == pid and effective_state(run) == "queued"
    finally:
        os.killpg(pid, signal.SIGKILL)


def test_launch_of_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        launch(tmp_path)


def test_stop_of_a_deleted_run_folder_is_a_no_op(tmp_path):
    assert stop(tmp_path / "gone") is False


# ---- stale pids and zombies -------------------------------------------------------------------

def test_running_with_a_live_but_unrelated_pid_is_interrupted(run):
    """A reused pid (here: the test process itself) does not make a dead worker look alive."""
    RunFolder(run).write_status(state="running", pid=os.getpid())
    assert effective_state(run) == "interrupted"


def test_queued_with_a_zombie_pid_is_interrupted(run):
    """A worker that died before taking its lock and was never reaped (a zombie) is not 'queued'."""
    child = subprocess.Popen(["true"])
    try:
        wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                   10, "the child to become a zombie")
        RunFolder(run).write_status(state="queued", queued=time.time(), pid=child.pid)
        assert effective_state(run) == "interrupted"
        assert stop(run) is False
    finally:
        child.wait()


# ---- stop while the worker loads data ---------------------------------------------------------

def test_stop_while_loading_data_ends_stopped_within_5_seconds(tmp_path, restore_signals, monkeypatch):
    """Loading FER2013 takes a while; a stop then must not wait for it to finish."""
    import fer.data
    from fer.train import run_worker

    def endless_loading(*args, **kwargs):
        while True:
            time.sleep(0.05)

    monkeypatch.setattr(fer.data, "load_dataset", endless_loading)
    run = create_run(tiny_config(tmp_path), tmp_path / "runs")
    signalled: list[float] = []

    def stop_when_loading():
        wait_until(lambda: RunFolder(run).read_status().get("phase") == "loading data", 30,
                   "the data loading")
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)  # what fer.workers.stop sends

    threading.Thread(target=stop_when_loading, daemon=True).start()
    assert run_worker(run) == 3
    assert time.monotonic() - signalled[0] < 5
    status = RunFolder(run).read_status()
    assert (status["state"], status["error"], status["phase"]) == ("stopped", None, None)
    assert read_json(run / "progress.json")["phase"] == "stopped"


def test_worker_honours_a_stop_file_written_before_it_started(tmp_path, restore_signals):
    """A stop that arrived while the run was queued (no signal handler yet) still stops it."""
    from fer.train import run_worker

    run = create_run(tiny_config(tmp_path), tmp_path / "runs")
    RunFolder(run).stop_file.write_text('{"requested": 1}')
    assert run_worker(run) == 3
    assert RunFolder(run).read_status()["state"] == "stopped"


# ---- resume with changed hyperparameters ------------------------------------------------------

def saved_training_state(run: Path, epochs: int = 2) -> None:
    """What a stopped worker leaves: a backup after ``epochs`` epochs and the config it used."""
    (run / "backup").mkdir()
    (run / "backup" / "training_metadata.json").write_text(f'{{"epoch": {epochs}, "batch": -1}}')
    shutil.copy(run / "config.json", RunFolder(run).checkpoint_config_file)


def test_resume_with_changed_hyperparameters_is_refused_with_the_changes(run, monkeypatch):
    """The saved weights and optimizer belong to their settings: resume names what changed and
    how to go on, and starts nothing."""
    saved_training_state(run)
    RunFolder(run).write_status(state="stopped")
    tiny_config(batch_size=16, learning_rate=0.01).save(run / "config.json")
    monkeypatch.setattr(fer.workers, "worker_command", lambda run_dir: pytest.fail("a worker was started"))
    with pytest.raises(RunError) as info:
        resume(run)
    message = str(info.value)
    assert "batch_size: 4 -> 16" in message and "learning_rate: 0.001 -> 0.01" in message
    assert "create a new run" in message
    assert RunFolder(run).read_status()["state"] == "stopped"


def test_resume_with_the_same_hyperparameters_is_allowed(run):
    saved_training_state(run)
    assert config_changes(run) == []
    # Without a saved training state a run starts afresh, so its settings may change freely.
    (run / "backup" / "training_metadata.json").unlink()
    tiny_config(batch_size=16).save(run / "config.json")
    assert config_changes(run) == []


def test_worker_refuses_to_resume_with_changed_hyperparameters(tmp_path, restore_signals):
    """Even a worker started by hand (`python -m fer.train --run-dir`) fails with the explanation."""
    from fer.train import run_worker

    run = create_run(tiny_config(tmp_path), tmp_path / "runs")
    saved_training_state(run)
    tiny_config(tmp_path, dropout=0.5).save(run / "config.json")
    assert run_worker(run) == 1
    status = RunFolder(run).read_status()
    assert status["state"] == "failed" and f"dropout: {tiny_config().dropout!r} -> 0.5" in status["error"]


def test_first_start_records_the_config_its_checkpoints_belong_to(tmp_path, restore_signals):
    from fer.train import run_worker

    run = create_run(tiny_config(tmp_path / "no-data"), tmp_path / "runs")
    run_worker(run)  # fails on the missing data, after recording the config
    assert read_json(RunFolder(run).checkpoint_config_file) == read_json(run / "config.json")


# ---- disk full, dataset gone ------------------------------------------------------------------

def test_disk_full_fails_the_run_with_the_reason_and_the_path(tmp_path, tiny_data, restore_signals,
                                                              monkeypatch, capsys):
    """ENOSPC on a write of the worker ends the run as failed, saying so and where."""
    import fer.run_folder
    import fer.train

    original = fer.run_folder.write_json_atomic

    def full_disk(path, value):
        if Path(path).name == "progress.json" and value.get("phase") == "loading data":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(path, value)

    monkeypatch.setattr(fer.run_folder, "write_json_atomic", full_disk)
    run = create_run(tiny_config(tiny_data), tmp_path / "runs")
    assert fer.train.run_worker(run) == 1
    status = RunFolder(run).read_status()
    assert status["state"] == "failed"
    assert status["error"] == f"No space left on device: {run / 'progress.json'}"
    assert effective_state(run) == "failed"


def test_status_is_rewritten_in_place_when_no_new_file_fits(run, monkeypatch):
    """On a full disk the atomic write cannot create its temporary file; the final status still lands."""
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fer.run_folder, "write_json_atomic", no_space)
    RunFolder(run).write_status(state="failed", error="No space left on device: somewhere")
    status = RunFolder(run).read_status()
    assert status["state"] == "failed" and status["error"].startswith("No space left")


def test_dataset_deleted_while_loading_fails_with_a_message_naming_it(tmp_path, tiny_data, restore_signals,
                                                                      monkeypatch):
    """Images vanishing between listing and reading: a failed run naming the folder, not a
    misleading 'batch size larger than the training set (0 images)'."""
    import fer.data
    from fer.train import run_worker

    data = shutil.copytree(tiny_data, tmp_path / "data")
    read_images = fer.data._read_images

    def delete_then_read(items, root, warnings):
        shutil.rmtree(data, ignore_errors=True)
        return read_images(items, root, warnings)

    monkeypatch.setattr(fer.data, "_read_images", delete_then_read)
    run = create_run(tiny_config(data), tmp_path / "runs")
    assert run_worker(run) == 1
    error = RunFolder(run).read_status()["error"]
    assert "none of the 28 images" in error and str(data / "train") in error


def test_a_pipe_as_dataset_is_a_data_error(tmp_path):
    """A path that is neither a folder nor a file (a FIFO would block the worker forever)."""
    from fer.data import DataError, resolve_location

    fifo = tmp_path / "fer2013.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="neither a folder nor a regular file"):
        resolve_location(fifo)
    with pytest.raises(DataError, match="NUL"):
        resolve_location("data\0/x")


# ---- run ids ----------------------------------------------------------------------------------

def test_runs_created_at_the_same_moment_from_many_threads_get_distinct_folders(tmp_path):
    """Two Launch clicks in the same second (or eight) never share a run folder."""
    paths: list[Path] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        paths.append(create_run(tiny_config(), tmp_path))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(paths)) == 8
    assert all(RunFolder(path).read_status()["state"] == "created" for path in paths)


def test_a_colliding_run_id_is_retried_not_reused(tmp_path, monkeypatch):
    """Same second and the same random part: the second run still gets its own folder."""
    tokens = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(fer.runs.secrets, "token_hex", lambda n: next(tokens))
    monkeypatch.setattr(fer.runs.time, "strftime", lambda fmt: "20250101-000000")
    first, second = create_run(tiny_config(), tmp_path), create_run(tiny_config(), tmp_path)
    assert first.name.endswith("-aaaaaa") and second.name.endswith("-bbbbbb")


def test_runs_cli_refuses_ids_that_escape_the_experiments_folder(tmp_path, capsys):
    """`python -m fer.runs stop ../x` is an error message and exit code 2, never a path outside."""
    for bad in ("../x", "/etc", "a\0b", "x" * 500):
        assert fer.runs.main(["--experiments", str(tmp_path), "stop", bad]) == 2
        assert "invalid run id" in capsys.readouterr().err
