"""CPU and memory of a run's live worker, for the Runs page (psutil; no TensorFlow import).

The process is the one holding the run's lock (``fer.workers.lock_holder``), never a pid read from
a file alone. CPU use is measured between two looks at the same process: the first look at a
worker has no figure yet, the next ones (the page refreshes every second) do.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from fer.workers import lock_holder

# Processes looked at before, by (pid, start time): psutil measures CPU use since the last look.
_SEEN: dict[tuple[int, float], psutil.Process] = {}
_SEEN_LOCK = threading.Lock()
# Forget processes that have ended once this many are remembered.
_SEEN_LIMIT = 64


@dataclass(frozen=True)
class WorkerUsage:
    pid: int
    # Percent of one core since the last look (above 100 on several cores); None on the first look.
    cpu_percent: float | None
    memory_bytes: int  # resident set size
    threads: int
    cores: int  # logical CPUs of the machine


def worker_usage(run_dir: Path) -> WorkerUsage | None:
    """CPU and memory of the worker training ``run_dir``; None when no worker holds its lock or
    the process cannot be read (it just ended, or belongs to another user)."""
    pid = lock_holder(run_dir)
    if pid is None:
        return None
    try:
        fresh = psutil.Process(pid)
        key = (pid, fresh.create_time())
        with _SEEN_LOCK:
            process = _SEEN.get(key)
            first = process is None
            if first:
                _forget_ended()
                process = _SEEN[key] = fresh
            with process.oneshot():
                cpu = process.cpu_percent(interval=None)
                memory = process.memory_info().rss
                threads = process.num_threads()
    except psutil.Error:
        return None
    return WorkerUsage(pid, None if first else cpu, memory, threads, psutil.cpu_count() or 1)


def _forget_ended() -> None:
    if len(_SEEN) >= _SEEN_LIMIT:
        for key in [key for key, process in _SEEN.items() if not process.is_running()]:
            del _SEEN[key]
