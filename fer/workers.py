"""Worker processes of runs: liveness, launching, stopping, resuming and deleting.

A worker holds an exclusive ``flock`` on the run's lock file while it lives. The kernel drops that
lock when the process dies in any way (``kill -9`` included), so "is this run alive?" never trusts
a pid, and ``stop()`` signals only the process that holds the lock (``lock_holder``): a pid read
from a file alone is never signalled. ``stop()`` leaves a stop request and signals the worker,
which records the outcome itself; only a run still waiting in the queue (no worker yet) is marked
stopped by ``stop()``.

``launch()`` puts a run in the queue (``fer.queue``), which starts it at once when a slot is free.
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
    lock_held,
)

# How long a started worker (its pid alive, loading Python) may take to take its run's lock
# before the run reads as interrupted.
QUEUED_GRACE_S = 120


def is_alive(run_dir: Path) -> bool:
    """True while a worker process holds this run's lock."""
    return lock_held(RunFolder(run_dir).worker_lock)


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


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the worker holding the run's lock, verified; None when there is none or it
    cannot be verified (then nothing is signalled).

    On Linux the kernel's list of locks (/proc/locks) names the holder of the lock file's inode.
    Elsewhere the pid in status.json counts only while the lock is held and that process is a
    ``fer.train`` worker.
    """
    folder = RunFolder(run_dir)
    if not is_alive(run_dir):
        return None
    try:
        info = os.stat(folder.worker_lock)
    except OSError:
        return None
    holders = _flock_holders(info.st_dev, info.st_ino)
    if holders is not None:
        return holders[0] if len(holders) == 1 else None
    pid = folder.read_status().get("pid")
    return pid if pid and "fer.train" in _command_line(pid) else None


def lock_file_holder(lock: Path, pid: int | None, command: str) -> int | None:
    """The verified pid holding the exclusive flock on ``lock`` (any job's lock, such as a background
    evaluation's), as ``lock_holder`` does for a run: /proc/locks on Linux, elsewhere ``pid`` while
    the lock is held and its command line names ``command``; None when unverified."""
    if not lock_held(lock):
        return None
    try:
        info = os.stat(lock)
    except OSError:
        return None
    holders = _flock_holders(info.st_dev, info.st_ino)
    if holders is not None:
        return holders[0] if len(holders) == 1 else None
    return pid if pid and command in _command_line(pid) else None


def _flock_holders(device: int, inode: int) -> list[int] | None:
    """Pids holding an exclusive flock on the file (None where /proc/locks does not exist)."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    holders = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after the number.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[3] == "WRITE" and fields[5] == wanted:
            holders.append(int(fields[4]))
    return sorted(set(holders))


def _command_line(pid: int) -> str:
    """The process's command line from ``ps`` (only where /proc/locks is missing: macOS, BSD),
    empty for a process that does not exist."""
    try:
        return subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True,
                              text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def pid_running(pid: object) -> bool:
    """The process exists and is not a zombie. ``pid`` is as read from a status file: anything
    but a positive integer is no process. Where there is no /proc (macOS), a finished child of
    this process is reaped to tell it from a running one."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            return os.waitpid(pid, os.WNOHANG)[0] == 0
        except ChildProcessError:  # not a child of this process: it exists
            return True
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
        pid, queued = status.get("pid"), status.get("queued") or 0
        if pid is None:
            return "queued"  # waiting in the queue (fer.queue) for a free slot
        # Started, before the worker takes its lock; after that, a dead pid means it ended.
        if pid_running(pid) and time.time() - queued < QUEUED_GRACE_S:
            return "queued"
    return "stopped" if folder.stop_requested() is not None else "interrupted"


def send_stop(pid: int) -> bool:
    """SIGTERM to the process group ``pid`` leads (a worker or job started in the background), or
    to the process alone (one started in a terminal leads no group of its own; it also reads its
    stop file). False when the process is gone or not ours to signal."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return False
    except PermissionError:
        return False
    return True


def worker_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "fer.train", "--run-dir", str(run_dir)]


def launch(run_dir: Path) -> int | None:
    """Put the run in the queue of its experiments folder, which starts it at once when a slot is
    free (fer.queue). Returns the worker's pid, or None while the run waits for a slot.

    Refuses when the run is already queued or running, so a double click starts one worker; the
    check holds ``.launch.lock``, so this holds across threads and server processes.
    """
    from fer.queue import dispatch, ensure_dispatcher

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
        folder.write_status(state="queued", queued=time.time(), error=None, pid=None, note=None)
    dispatch(run_dir.parent)
    pid = folder.read_status().get("pid")
    if pid is None:
        ensure_dispatcher(run_dir.parent)
    return pid


def start_worker(run_dir: Path) -> int | None:
    """Start the worker of a run waiting in the queue, as a background process in its own
    session; None when the run no longer waits (stopped, or started by someone else)."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    with file_lock(folder.launch_lock):
        status = folder.read_status()
        if effective_state(run_dir, status) != "queued" or status.get("pid"):
            return None
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(folder.log_file, "ab") as log:
            process = subprocess.Popen(
                worker_command(run_dir), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, env=env,
            )
        # The grace for taking the lock counts from the start, not from when the run was queued.
        folder.write_status(pid=process.pid, queued=time.time())
    # Reap the child when it exits so no zombie is left behind in a long-lived server.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


def stop(run_dir: Path, wait: float = 0.0) -> bool:
    """Ask the run's worker to stop: a ``stop-requested`` file, then SIGTERM to the process that
    holds the run's lock (and its process group). A run still waiting in the queue leaves it and
    reads ``stopped``.

    Idempotent. The worker stops at the next batch, or at once while it loads data or evaluates;
    a worker started but not yet holding its lock reads the stop file as soon as it does. Returns
    True if a run was asked to stop. With ``wait`` > 0, waits that many seconds for it to exit.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    folder = RunFolder(run_dir)
    with file_lock(folder.launch_lock):  # a launch in progress has written its pid
        status = folder.read_status()
        if effective_state(run_dir, status) not in ACTIVE_STATES:
            return False
        holder = lock_holder(run_dir)
        if holder is None:
            if status.get("pid") is None:  # waiting in the queue: no worker to ask
                folder.write_status(state="stopped", ended=time.time(),
                                    note="removed from the queue before it started")
                return True
            if not pid_running(status.get("pid")):
                return False
            if folder.stop_requested() is None:
                folder.request_stop(None)  # read by the worker once it holds the lock
            return True
        if holder == os.getpid():
            return False  # the caller itself holds the lock (it is not a worker to stop)
        if folder.stop_requested() is None:
            folder.request_stop(holder)
        if not send_stop(holder):
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


def delete(run_dir: Path) -> Path | None:
    """Remove a run folder; refuses while the run is training or queued. A run folder that is a
    link loses the link only: returns the folder it pointed to, which is kept."""
    run_dir = Path(run_dir)
    if effective_state(run_dir) in ACTIVE_STATES:
        raise RunError(f"run {run_dir.name} is still training or queued; stop it first")
    if run_dir.is_symlink():
        target = run_dir.resolve()
        run_dir.unlink()
        return target
    shutil.rmtree(run_dir)
    return None
