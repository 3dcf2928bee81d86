"""Process helpers for tests that start training workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fer import PROJECT_ROOT


def worker_env(**extra: str) -> dict[str, str]:
    """The current environment (FER_CACHE / FER_EXPERIMENTS already point at tmp folders), quiet TF."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run_cli(args: list[str | Path], timeout: float, **env: str) -> subprocess.CompletedProcess:
    """``python -m <args>`` in the project root, with stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=PROJECT_ROOT, env=worker_env(**env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def wait_until(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.05,
               log: Path | None = None) -> object:
    """Poll ``condition`` until it is truthy; fail with ``what`` (and the log tail) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(poll)
