"""The run queue: launches beyond the concurrency limit wait their turn, in launch order.

The queue is the run folders themselves: a run whose status.json says ``queued`` with no worker
pid is waiting. ``dispatch`` starts waiting runs, oldest first, while fewer than ``max_runs``
workers train in this experiments folder; it runs under ``.queue.lock``, so any number of callers
(a launch, a worker that just ended, the dispatcher process) never start more than the limit.

While runs wait, a dispatcher process (``python -m fer.queue``, one per experiments folder, guarded
by ``.dispatcher.lock``) starts them as slots free up, and exits when the queue is empty. It is
started by whoever leaves a run waiting, and by the dashboard whenever it sees waiting runs and no
dispatcher: a killed dispatcher, dashboard or worker loses no queued run.

The limit: ``FER_MAX_RUNS`` if set, else the dashboard's setting (``queue.json`` in the
experiments folder), else one run per GPU (one run on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from fer import PROJECT_ROOT
from fer.files import read_json, write_json_atomic
from fer.run_folder import RunFolder, file_lock, lock_held
from fer.workers import effective_state, start_worker

QUEUE_LOCK = ".queue.lock"
DISPATCHER_LOCK = ".dispatcher.lock"
DISPATCHER_LOG = ".dispatcher.log"
# Beyond this, a starting dispatcher moves the log to .dispatcher.log.1 (replacing the older one).
DISPATCHER_LOG_MAX_BYTES = 1 << 20
SETTINGS_FILE = "queue.json"
# How often the dispatcher looks for a free slot (a run ending frees one).
DISPATCH_INTERVAL_S = 1.0
MAX_RUNS_LIMIT = 64


class QueueError(ValueError):
    """A queue setting that cannot be used."""


# ---- the limit ---------------------------------------------------------------------------------

@functools.cache
def gpu_count() -> int:
    """NVIDIA GPUs on this machine (``nvidia-smi -L``), without loading a framework."""
    tool = shutil.which("nvidia-smi")
    if not tool:
        return 0
    try:
        listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def default_max_runs() -> int:
    return max(1, gpu_count())


def env_max_runs() -> int | None:
    """FER_MAX_RUNS as a number (QueueError when it is set to something else)."""
    value = os.environ.get("FER_MAX_RUNS", "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise QueueError(f"FER_MAX_RUNS={value!r} is not a whole number") from None
    if not 1 <= number <= MAX_RUNS_LIMIT:
        raise QueueError(f"FER_MAX_RUNS={number} is out of range; use 1 to {MAX_RUNS_LIMIT}")
    return number


def saved_max_runs(root: Path) -> int | None:
    settings = read_json(Path(root) / SETTINGS_FILE)
    value = settings.get("max_runs") if isinstance(settings, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RUNS_LIMIT:
        return value
    return None


def max_runs(root: Path) -> int:
    """How many runs of ``root`` may train at once."""
    try:
        from_env = env_max_runs()
    except QueueError:
        from_env = None  # the dashboard shows the problem; the queue keeps working
    return from_env or saved_max_runs(root) or default_max_runs()


def set_max_runs(root: Path, value: int) -> None:
    """The dashboard's setting (FER_MAX_RUNS, when set, overrides it); starts what now fits."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RUNS_LIMIT:
        raise QueueError(f"runs at once must be a whole number from 1 to {MAX_RUNS_LIMIT}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / SETTINGS_FILE, {"max_runs": value})
    dispatch(root)
    ensure_dispatcher(root)


# ---- the queue ---------------------------------------------------------------------------------

def _scan(root: Path) -> list[tuple[Path, dict, str]]:
    from fer.runs import run_folders

    entries = []
    for path in run_folders(root):
        status, problems = RunFolder(path).read_status_checked()
        # A damaged status.json never starts a worker (the Runs page shows the run as damaged).
        entries.append((path, status, "damaged" if problems else effective_state(path, status)))
    return entries


def _is_waiting(status: dict, state: str) -> bool:
    return state == "queued" and not status.get("pid")


def _occupies_slot(status: dict, state: str) -> bool:
    """Training, or started and not yet holding its lock (loading Python)."""
    return state == "running" or (state == "queued" and bool(status.get("pid")))


def _waiting(entries: list[tuple[Path, dict, str]]) -> list[Path]:
    """The waiting runs among ``entries``, in launch order (the order they start in)."""
    waiting = [(status.get("queued") or 0, path.name, path) for path, status, state in entries
               if _is_waiting(status, state)]
    return [path for _, _, path in sorted(waiting)]


def waiting_runs(root: Path) -> list[Path]:
    """The runs waiting for a slot, in the order they will start."""
    return _waiting(_scan(root))


def queue_positions(root: Path) -> dict[str, int]:
    """run id -> its place in the queue (1 starts next)."""
    return {path.name: number for number, path in enumerate(waiting_runs(root), start=1)}


def dispatch(root: Path) -> list[Path]:
    """Start waiting runs, oldest first, while slots are free; returns the runs started."""
    root = Path(root)
    if not root.is_dir():
        return []
    with file_lock(root / QUEUE_LOCK):
        return _start_waiting(root)[0]


def _start_waiting(root: Path) -> tuple[list[Path], int]:
    """(the runs started, how many still wait); the caller holds the queue lock."""
    entries = _scan(root)
    free = max_runs(root) - sum(_occupies_slot(status, state) for _, status, state in entries)
    waiting = _waiting(entries)
    started = []
    for path in waiting:
        if free <= 0:
            break
        try:
            pid = start_worker(path)
        except OSError as exc:
            RunFolder(path).write_status(state="failed", error=f"could not start its worker: {exc}")
            continue
        if pid is not None:
            started.append(path)
            free -= 1
    return started, len(waiting) - len(started)


# ---- the dispatcher process --------------------------------------------------------------------

def dispatcher_alive(root: Path) -> bool:
    return lock_held(Path(root) / DISPATCHER_LOCK)


def ensure_dispatcher(root: Path) -> bool:
    """Start the dispatcher process if runs wait and none is running; True if one was started."""
    root = Path(root)
    if dispatcher_alive(root) or not waiting_runs(root):
        return False
    log_path = root / DISPATCHER_LOG
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > DISPATCHER_LOG_MAX_BYTES:
            os.replace(log_path, log_path.with_name(DISPATCHER_LOG + ".1"))
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fer.queue", "--experiments", str(root)], cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    threading.Thread(target=process.wait, daemon=True).start()  # no zombie in a long-lived server
    return True


def run_dispatcher(root: Path, interval: float = DISPATCH_INTERVAL_S) -> int:
    """Start waiting runs as slots free up, until none waits. Only one per experiments folder."""
    root = Path(root)
    fd = os.open(root / DISPATCHER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return 0  # another dispatcher serves this folder
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for people and tests; liveness is the lock
    try:
        while True:
            with file_lock(root / QUEUE_LOCK):
                started, still_waiting = _start_waiting(root)
                for path in started:
                    print(f"[fer] started {path.name}", flush=True)
                if not still_waiting:
                    # Released while holding the queue lock: a run queued after this check finds
                    # no dispatcher and starts a new one.
                    os.close(fd)
                    fd = -1
                    return 0
            time.sleep(interval)
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """``python -m fer.queue``: start the runs waiting in an experiments folder as slots free up."""
    from fer.runs import experiments_dir

    parser = argparse.ArgumentParser(prog="python -m fer.queue", description=main.__doc__)
    parser.add_argument("--experiments", help="the experiments folder (default: experiments/)")
    args = parser.parse_args(argv)
    return run_dispatcher(Path(args.experiments) if args.experiments else experiments_dir())


if __name__ == "__main__":
    sys.exit(main())
