"""Worker processes of runs: liveness, launching, stopping, resuming and deleting.

A worker holds an exclusive ``flock`` on the run's lock file while it lives. The kernel drops that
lock when the process dies in any way (``kill -9`` included), so "is this run alive?" never trusts
a pid. ``stop()`` never writes status.json: it leaves a stop request and signals the worker, which
records the outcome itself.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fer import PROJECT_ROOT
from fer.run_folder import (
    ACTIVE_STATES,
    RESUMABLE_STATES,
    RunError,
    RunFolder,
    check_resumable_config,
    file_lock,
)

# How long a launched worker may take to take its run's lock before the run reads as interrupted:
# with a pid that is still alive (loading Python and the framework), and before the pid is known.
QUEUED_GRACE_S = 120
QUEUED_GRACE_NO_PID_S = 10


def is_alive(run_dir: Path) -> bool:
    """True while a worker process holds this run's lock."""
    try:
        fd = os.open(RunFolder(run_dir).worker_lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def acquire_lock(run_dir: Path, timeout: float = 3.0) -> int | None:
    """The worker's exclusive lock (kept until the process exits), or None if another holds it."""
    fd = os.open(RunFolder(run_dir).worker_lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            # A reader's momentary shared lock, or another worker: wait a little.
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def _pid_running(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def effective_state(run_dir: Path, status: dict[str, Any] | None = None) -> str:
    """The state to show: an active run whose worker is gone is 'interrupted' (or 'stopped' when
    a stop was requested, e.g. a worker stopped before it could install its signal handler)."""
    folder = RunFolder(run_dir)
    status = folder.read_status() if status is None else status
    state = status.get("state", "unknown")
    if state not in ACTIVE_STATES or is_alive(run_dir):
        return state
    if state == "queued":
        # Between launch and the worker taking its lock; after that, a dead pid means it ended.
        pid, queued = status.get("pid"), status.get("queued") or 0
        if ((_pid_running(pid) or pid is None)
                and time.time() - queued < (QUEUED_GRACE_S if pid else QUEUED_GRACE_NO_PID_S)):
            return "queued"
    return "stopped" if folder.stop_requested() is not None else "interrupted"


def worker_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "fer.train", "--run-dir", str(run_dir)]


def launch(run_dir: Path) -> int:
    """Start the training worker for ``run_dir`` as a background process in its own session.

    Refuses when the run is already queued or running, so a double click starts one worker; the
    check and the start hold ``.launch.lock``, so this holds across threads and server processes.
    """
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise RunError(f"{run_dir} is not a run folder (no {folder.config_file.name})")
    with file_lock(folder.launch_lock):
        state = effective_state(run_dir)
        if state in ACTIVE_STATES:
            raise RunError(f"run {run_dir.name} is already {state}")
        if state == "finished":
            raise RunError(f"run {run_dir.name} has finished; create a new run to train again")
        folder.clear_stop_request()  # an old request must not stop the new worker
        folder.write_status(state="queued", queued=time.time(), error=None, pid=None)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(folder.log_file, "ab") as log:
            process = subprocess.Popen(
                worker_command(run_dir), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, env=env,
            )
        folder.write_status(pid=process.pid)
    # Reap the child when it exits so no zombie is left behind in a long-lived server.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


def stop(run_dir: Path, wait: float = 0.0) -> bool:
    """Ask the run's worker to stop: a ``stop-requested`` file, then SIGTERM to its process group.

    Idempotent, and it never writes status.json (the worker does, so nothing races). The worker
    stops at the next batch, or at once while it loads data or evaluates. Returns True if a live
    worker was asked to stop. With ``wait`` > 0, waits that many seconds for it to exit.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    folder = RunFolder(run_dir)
    with file_lock(folder.launch_lock):  # a launch in progress has written its pid
        status = folder.read_status()
        pid = status.get("pid")
        if effective_state(run_dir, status) not in ACTIVE_STATES or not _pid_running(pid):
            return False
        if folder.stop_requested() is None:
            folder.request_stop(pid)
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            # A worker started in a terminal (python -m fer.train without --detach) leads no process
            # group of its own: signal the process; it also reads the stop file within a second.
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return False
        except PermissionError:
            return False
    deadline = time.monotonic() + wait
    while wait > 0 and time.monotonic() < deadline and is_alive(run_dir):
        time.sleep(0.1)
    return True


def resume(run_dir: Path) -> int:
    """Continue a stopped, failed or interrupted run from its last completed epoch."""
    run_dir = Path(run_dir)
    state = effective_state(run_dir)
    if state not in RESUMABLE_STATES:
        raise RunError(f"run {run_dir.name} is {state}; only stopped, failed or interrupted runs can resume")
    check_resumable_config(run_dir)
    if state == "interrupted":
        RunFolder(run_dir).write_status(state="interrupted", error="the worker process died unexpectedly")
    return launch(run_dir)


def delete(run_dir: Path) -> None:
    """Remove a run folder; refuses while the run is training."""
    run_dir = Path(run_dir)
    if effective_state(run_dir) in ACTIVE_STATES:
        raise RunError(f"run {run_dir.name} is still training; stop it first")
    shutil.rmtree(run_dir)
