"""The run store: one folder per run under ``experiments/``; the folder is the source of truth
(its layout and files: ``fer.run_folder``).

A worker holds an exclusive ``flock`` on the run's ``.lock`` while it lives. The kernel drops that
lock when the process dies in any way (``kill -9`` included), so "is this run alive?" never trusts
a pid. ``stop()`` never writes status.json: it leaves a stop request and signals the worker, which
records the outcome itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer import EXPERIMENTS_DIR, PROJECT_ROOT
from fer.config import ConfigError, TrainConfig
from fer.run_folder import RunFolder, describe_model, file_lock

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("finished", "failed", "stopped", "interrupted")
# States a run can be started or resumed from ("created": never started).
RESUMABLE_STATES = ("stopped", "failed", "interrupted", "created")


class RunError(ValueError):
    """A run operation that cannot be done (unknown run, already running, ...)."""


def experiments_dir() -> Path:
    """``FER_EXPERIMENTS`` overrides the default ``experiments/`` folder of the project."""
    return Path(os.environ.get("FER_EXPERIMENTS") or EXPERIMENTS_DIR)


def run_path(run_id: str, root: Path | None = None) -> Path:
    """The folder of ``run_id``; refuses ids that could point outside the experiments folder."""
    root = Path(root or experiments_dir()).resolve()
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id) or ".." in run_id:
        raise RunError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    path = (root / run_id).resolve()
    if path.parent != root:
        raise RunError(f"invalid run id {run_id!r}")
    return path


def new_run_id(config: TrainConfig) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{config.architecture}-{secrets.token_hex(3)}"


def create_run(config: TrainConfig, root: Path | None = None, run_id: str | None = None) -> Path:
    """Make a new run folder with its config and a 'created' status; ids never collide."""
    root = Path(root or experiments_dir())
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        path = run_path(run_id or new_run_id(config), root)
        try:
            path.mkdir()
        except FileExistsError:
            if run_id:
                raise RunError(f"a run named {run_id!r} already exists") from None
            continue
        folder = RunFolder(path)
        folder.write_config(config)
        folder.write_status(state="created", created=time.time())
        return path
    raise RunError("could not find a free run id")


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
        if (_pid_running(pid) or pid is None) and time.time() - queued < (120 if pid else 10):
            return "queued"
    return "stopped" if folder.stop_requested() is not None else "interrupted"


# ---- processes ------------------------------------------------------------------------------

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


def config_changes(run_dir: Path) -> list[str]:
    """Hyperparameters in config.json that differ from those its saved training state was made
    with ("name: old -> new"); [] when there is nothing to resume or nothing changed."""
    folder = RunFolder(run_dir)
    saved = folder.read_checkpoint_config()
    if saved is None or folder.completed_epochs() == 0:
        return []
    try:
        before = TrainConfig.from_dict(saved).to_dict()
        after = folder.read_config().to_dict()
    except ConfigError:
        return []  # an invalid config.json fails the worker with its own message
    return [f"{key}: {before[key]!r} -> {after[key]!r}" for key in after if before[key] != after[key]]


def check_resumable_config(run_dir: Path) -> None:
    """Refuse to continue a saved training state with changed hyperparameters."""
    changes = config_changes(run_dir)
    if changes:
        raise RunError(
            f"the hyperparameters of run {Path(run_dir).name} changed since its training state was "
            f"saved ({'; '.join(changes)}); a run resumes only with the settings it was trained with. "
            f"Restore them in config.json, or create a new run with the new settings")


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


# ---- reading runs ---------------------------------------------------------------------------

@dataclass
class RunSummary:
    run_id: str
    path: Path
    state: str
    config: dict[str, Any]
    status: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.config.get("architecture", "?"))

    @property
    def duration_s(self) -> float | None:
        """Seconds from the worker's start to its end (to now while it is active)."""
        started, ended = self.status.get("started"), self.status.get("ended")
        if started and self.state in ACTIVE_STATES:
            ended = time.time()
        return ended - started if started and ended else None


def load_run(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    status = folder.read_status()
    config = folder.read_config_values()
    if config is None:
        config = {}
        status["error"] = status.get("error") or f"{folder.config_file.name} is missing or not valid JSON"
    state = effective_state(run_dir, status)
    if state in ("interrupted", *ACTIVE_STATES) and not os.access(run_dir, os.W_OK):
        # The worker cannot record its own failure there (read-only file system or permissions).
        status["error"] = status.get("error") or (
            f"the run folder {run_dir} is not writable (read-only file system or permissions), so "
            "its worker cannot save progress or results")
    return RunSummary(run_dir.name, run_dir, state, config, status)


def list_runs(root: Path | None = None) -> list[RunSummary]:
    """All runs, newest first. Folders that are not runs are ignored."""
    root = Path(root or experiments_dir())
    if not root.is_dir():
        return []
    runs = [load_run(d) for d in root.iterdir()
            if d.is_dir() and RUN_ID_PATTERN.match(d.name) and RunFolder(d).config_file.exists()]
    return sorted(runs, key=lambda r: r.status.get("created", 0), reverse=True)


def available_models() -> list[tuple[str, Path]]:
    """(label, path) for the shipped default model and every run with a model.keras."""
    from fer import DEFAULT_MODEL_DIR

    models: list[tuple[str, Path]] = []
    default = RunFolder(DEFAULT_MODEL_DIR).model_file
    if default.is_file():
        models.append((describe_model(default), default))
    for run in list_runs():
        path = RunFolder(run.path).model_file
        if path.is_file():
            models.append((f"{describe_model(path)} [{run.state}]", path))
    return models


def dump_status(run_dir: Path) -> str:
    return json.dumps({**RunFolder(run_dir).read_status(), "state": effective_state(run_dir)}, indent=2)


def main(argv: list[str] | None = None) -> int:
    """``python -m fer.runs``: list, inspect, stop, resume or delete runs from a shell."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fer.runs", description=main.__doc__)
    parser.add_argument("--experiments", help="the experiments folder (default: experiments/)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="a table of all runs")
    for name, text in (("status", "print a run's status as JSON"), ("stop", "stop a training run"),
                       ("resume", "resume a stopped, failed or interrupted run"),
                       ("delete", "delete a run folder")):
        command = sub.add_parser(name, help=text)
        command.add_argument("run_id")
        if name == "stop":
            command.add_argument("--wait", type=float, default=10.0, help="seconds to wait for it to exit")
    args = parser.parse_args(argv)
    root = Path(args.experiments) if args.experiments else None
    try:
        if args.command == "list":
            import pandas as pd

            from fer.ui import run_row

            rows = [run_row(run) for run in list_runs(root)]
            print(pd.DataFrame(rows).to_string(index=False) if rows else "no runs")
            return 0
        run_dir = run_path(args.run_id, root)
        if not RunFolder(run_dir).is_run():
            raise RunError(f"no run {args.run_id!r} in {run_dir.parent}")
        if args.command == "status":
            print(dump_status(run_dir))
        elif args.command == "stop":
            print("stopping" if stop(run_dir, wait=args.wait) else "not running", "->",
                  effective_state(run_dir))
        elif args.command == "resume":
            print(f"resumed (pid {resume(run_dir)})")
        elif args.command == "delete":
            delete(run_dir)
            print(f"deleted {run_dir}")
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
