"""A real full disk and a real read-only experiments folder, on small tmpfs mounts.

Mounting needs root (or CAP_SYS_ADMIN); where that is not allowed these tests skip, and
tests/test_reliability_faults.py still covers both through injected OSErrors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_driver import no_exception, open_page, texts
from helpers import wait_until

from fer.config import TrainConfig
from fer.run_folder import RunFolder
from fer.runs import create_run, experiments_dir
from fer.workers import effective_state, is_alive, launch, stop


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount_read_only(path: Path) -> None:
    result = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def fill(folder: Path) -> None:
    """Write until the file system is full."""
    chunk = b"\0" * 65536
    with contextlib.suppress(OSError), open(folder / "filler", "wb", buffering=0) as handle:
        while True:
            handle.write(chunk)


def config(data: Path, epochs: int) -> TrainConfig:
    return TrainConfig.for_architecture("mini_xception", data=str(data), epochs=epochs, batch_size=4,
                                        augment=False, lr_schedule="none", early_stopping_patience=0)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_an_epochs_best_model_is_saved_before_its_history_row_announces_it(tmp_path):
    """history.csv's row is the epoch's announcement: the network is on disk before it, and the
    resume point (BackupAndRestore) comes last. A full disk during the save then leaves no row
    without its model (the disk-full test below relies on it, not on timing)."""
    import keras

    from fer.recipe import callbacks

    names = [type(callback).__name__ for callback in callbacks(
        RunFolder(tmp_path), TrainConfig.for_architecture("mini_xception"), lambda: None, 10, None)]
    assert names.index("NetworkCheckpoint") < names.index("CSVLogger") < names.index("BestSoFar")
    assert names[-1] == keras.callbacks.BackupAndRestore.__name__


def test_disk_full_mid_run_fails_that_run_with_a_clear_error_and_another_run_finishes(tmp_path, tiny_data):
    with tmpfs(tmp_path / "small-disk", "8m") as disk:
        full = create_run(config(tiny_data, epochs=500), disk / "experiments")
        other = create_run(config(tiny_data, epochs=2))
        launch(full)
        launch(other)
        try:
            wait_until(lambda: len(RunFolder(full).read_history()) >= 1, 300, "a first epoch", poll=0.5,
                       log=full / "train.log")
            fill(disk)
            wait_until(lambda: RunFolder(full).read_status().get("state") != "running", 60, "the run to fail",
                       poll=0.5, log=full / "train.log")
            status = RunFolder(full).read_status()
            assert status["state"] == "failed", status
            assert os.strerror(errno.ENOSPC) in status["error"], status["error"]
            assert effective_state(full) == "failed"
            # nothing lost
            assert len(RunFolder(full).read_history()) >= 1 and (full / "model.keras").is_file()

            wait_until(lambda: effective_state(other) not in ("queued", "running"), 300,
                       "the other run to end", poll=0.5, log=other / "train.log")
            assert effective_state(other) == "finished", RunFolder(other).read_status().get("error")

            app = open_page("runs", {"run": [other.name]})
            no_exception(app)
            assert list(app.dataframe[0].value["state"]) == ["finished"]
            from fer.runs import load_run
            assert os.strerror(errno.ENOSPC) in load_run(full).status["error"]
        finally:
            for run in (full, other):
                pid = RunFolder(run).read_status().get("pid")
                if pid and is_alive(run):
                    os.killpg(pid, signal.SIGKILL)
            (disk / "filler").unlink(missing_ok=True)
            wait_until(lambda: not is_alive(full), 30, "the worker to exit")


def test_read_only_experiments_folder_refuses_new_runs_and_resume_with_a_message(tmp_path, tiny_data,
                                                                                  monkeypatch):
    with tmpfs(tmp_path / "ro-disk", "4m") as disk:
        root = disk / "experiments"
        stopped = create_run(config(tiny_data, epochs=3), root, run_id="stopped-run")
        RunFolder(stopped).write_status(state="stopped")
        crashed = create_run(config(tiny_data, epochs=3), root, run_id="crashed-run")
        RunFolder(crashed).write_status(state="running", pid=os.getpid())  # its worker died with the disk
        remount_read_only(disk)
        monkeypatch.setenv("FER_EXPERIMENTS", str(root))
        assert experiments_dir() == root

        app = open_page("runs", {"run": ["stopped-run", "crashed-run"]})
        no_exception(app)
        assert sorted(app.dataframe[0].value["state"]) == ["interrupted", "stopped"]
        assert any("not writable" in text for text in texts(app.error))  # the crashed run says why
        assert stop(crashed) is False
        next(b for b in app.button if b.key == "resume.stopped-run").click().run()
        no_exception(app)
        assert any("Read-only file system" in text for text in texts(app.error))
        assert RunFolder(stopped).read_status()["state"] == "stopped"

        train = open_page("train")
        train.text_input(key="train.data").set_value(str(tiny_data)).run()
        next(b for b in train.button if b.label == "Launch training").click().run()
        no_exception(train)
        assert "Read-only file system" in train.error[0].value
        assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == \
            ["crashed-run", "stopped-run"]
