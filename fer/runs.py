"""The run store: one folder per run under ``experiments/``; the folder is the source of truth.

A run folder holds ``config.json``, ``status.json``, ``history.csv`` (one row per epoch),
``progress.json`` (current epoch/batch), ``model.keras`` (best epoch), ``backup/`` (resumable
training state), ``eval/`` (test-set evaluation) and ``train.log`` (the worker's output).

A worker holds an exclusive ``flock`` on ``.lock`` while it lives. The kernel drops that lock when
the process dies in any way (``kill -9`` included), so "is this run alive?" never trusts a pid.

status.json is changed only under a second lock (``.status.lock``), so concurrent writers (the
worker, a launch) never lose each other's changes. ``stop()`` never writes status.json: it leaves a
``stop-requested`` file and signals the worker, which records the outcome itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer import EXPERIMENTS_DIR, PROJECT_ROOT
from fer.config import ConfigError, TrainConfig
from fer.files import read_json, write_json_atomic

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("finished", "failed", "stopped", "interrupted")
# States a run can be started or resumed from ("created": never started).
RESUMABLE_STATES = ("stopped", "failed", "interrupted", "created")
STOP_FILE = "stop-requested"  # written by stop(); the worker stops at its next safe point
# The hyperparameters the resumable training state in backup/ was made with.
CHECKPOINT_CONFIG = "checkpoint-config.json"


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
        config.save(path / "config.json")
        write_status(path, state="created", created=time.time())
        return path
    raise RunError("could not find a free run id")


# ---- status ---------------------------------------------------------------------------------

def read_status(run_dir: Path) -> dict[str, Any]:
    status = read_json(Path(run_dir) / "status.json")
    return status if isinstance(status, dict) else {}


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (between processes and between threads alike)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:  # a read-only folder: nobody can write there, but stop() must still signal
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def write_status(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into status.json and return the new status.

    The read-modify-write holds ``.status.lock``, so two writers never drop each other's changes,
    and the file is replaced atomically, so readers never see half of it. When the disk is full
    the atomic write cannot make its temporary file; the status is then rewritten in place (it
    fits in the blocks the file already has), so a run can still record why it failed.
    """
    run_dir = Path(run_dir)
    with _file_lock(run_dir / ".status.lock"):
        status = read_status(run_dir)
        status.update(changes)
        try:
            write_json_atomic(run_dir / "status.json", status)
        except OSError as exc:
            if not _rewrite_in_place(run_dir / "status.json", json.dumps(status, indent=2) + "\n"):
                raise exc from None
    return status


def _rewrite_in_place(path: Path, text: str) -> bool:
    """Overwrite an existing file without allocating a new one; False if that failed too."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        data = text.encode()
        if os.pwrite(fd, data, 0) != len(data):
            return False
        os.ftruncate(fd, len(data))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / ".lock"


def is_alive(run_dir: Path) -> bool:
    """True while a worker process holds this run's lock."""
    try:
        fd = os.open(_lock_path(run_dir), os.O_RDONLY)
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
    fd = os.open(_lock_path(run_dir), os.O_RDWR | os.O_CREAT, 0o644)
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


def stop_requested(run_dir: Path) -> float | None:
    """When stop() was last asked for this run's current worker (None if it was not)."""
    request = read_json(Path(run_dir) / STOP_FILE)
    if isinstance(request, dict) and isinstance(request.get("requested"), (int, float)):
        return float(request["requested"])
    return time.time() if (Path(run_dir) / STOP_FILE).exists() else None


def effective_state(run_dir: Path, status: dict[str, Any] | None = None) -> str:
    """The state to show: an active run whose worker is gone is 'interrupted' (or 'stopped' when
    a stop was requested, e.g. a worker stopped before it could install its signal handler)."""
    status = read_status(run_dir) if status is None else status
    state = status.get("state", "unknown")
    if state not in ACTIVE_STATES or is_alive(run_dir):
        return state
    if state == "queued":
        # Between launch and the worker taking its lock; after that, a dead pid means it ended.
        pid, queued = status.get("pid"), status.get("queued") or 0
        if (_pid_running(pid) or pid is None) and time.time() - queued < (120 if pid else 10):
            return "queued"
    return "stopped" if stop_requested(run_dir) is not None else "interrupted"


# ---- processes ------------------------------------------------------------------------------

def worker_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "fer.train", "--run-dir", str(run_dir)]


def launch(run_dir: Path) -> int:
    """Start the training worker for ``run_dir`` as a background process in its own session.

    Refuses when the run is already queued or running, so a double click starts one worker; the
    check and the start hold ``.launch.lock``, so this holds across threads and server processes.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a run folder (no config.json)")
    with _file_lock(run_dir / ".launch.lock"):
        state = effective_state(run_dir)
        if state in ACTIVE_STATES:
            raise RunError(f"run {run_dir.name} is already {state}")
        if state == "finished":
            raise RunError(f"run {run_dir.name} has finished; create a new run to train again")
        (run_dir / STOP_FILE).unlink(missing_ok=True)  # an old request must not stop the new worker
        write_status(run_dir, state="queued", queued=time.time(), error=None, pid=None)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(run_dir / "train.log", "ab") as log:
            process = subprocess.Popen(
                worker_command(run_dir), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, env=env,
            )
        write_status(run_dir, pid=process.pid)
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
    with _file_lock(run_dir / ".launch.lock"):  # a launch in progress has written its pid
        status = read_status(run_dir)
        pid = status.get("pid")
        if effective_state(run_dir, status) not in ACTIVE_STATES or not _pid_running(pid):
            return False
        if stop_requested(run_dir) is None:
            write_json_atomic(run_dir / STOP_FILE, {"requested": time.time(), "pid": pid})
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


def completed_epochs(run_dir: Path) -> int:
    """Epochs saved in the resumable training state (Keras BackupAndRestore); 0 without one."""
    meta = read_json(Path(run_dir) / "backup" / "training_metadata.json")
    try:
        return max(0, int(meta.get("epoch", 0))) if isinstance(meta, dict) else 0
    except (TypeError, ValueError):
        return 0


def config_changes(run_dir: Path) -> list[str]:
    """Hyperparameters in config.json that differ from those its saved training state was made
    with ("name: old -> new"); [] when there is nothing to resume or nothing changed."""
    run_dir = Path(run_dir)
    saved = read_json(run_dir / CHECKPOINT_CONFIG)
    if not isinstance(saved, dict) or completed_epochs(run_dir) == 0:
        return []
    try:
        before = TrainConfig.from_dict(saved).to_dict()
        after = read_config(run_dir).to_dict()
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
        write_status(run_dir, state="interrupted", error="the worker process died unexpectedly")
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
    status = read_status(run_dir)
    config = read_json(run_dir / "config.json")
    if not isinstance(config, dict):
        config = {}
        status["error"] = status.get("error") or "config.json is missing or not valid JSON"
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
            if d.is_dir() and RUN_ID_PATTERN.match(d.name) and (d / "config.json").exists()]
    return sorted(runs, key=lambda r: r.status.get("created", 0), reverse=True)


def read_history(run_dir: Path):
    """history.csv as a DataFrame, keeping only complete, numeric rows (the last line may be
    half-written, and a hand-edited file may hold garbage)."""
    import pandas as pd

    path = Path(run_dir) / "history.csv"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return pd.DataFrame()
    if not lines:
        return pd.DataFrame()
    header = lines[0].split(",")
    good = [line for line in lines[1:] if _is_numeric_row(line, len(header))]
    frame = pd.read_csv(io.StringIO("\n".join([lines[0], *good])))
    if "epoch" in frame.columns:
        frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
        frame["epoch"] = frame["epoch"].astype(int) + 1  # Show epochs counted from 1.
    return frame.reset_index(drop=True)


def _is_numeric_row(line: str, width: int) -> bool:
    cells = line.split(",")
    if len(cells) != width:
        return False
    try:
        [float(cell) for cell in cells]
    except ValueError:
        return False
    return True


def read_progress(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "progress.json") or {}


def read_config(run_dir: Path) -> TrainConfig:
    return TrainConfig.load(Path(run_dir) / "config.json")


def load_config_or_error(run_dir: Path) -> tuple[TrainConfig | None, str | None]:
    try:
        return read_config(run_dir), None
    except ConfigError as exc:
        return None, str(exc)


def read_log_tail(run_dir: Path, lines: int = 30) -> str:
    try:
        with open(Path(run_dir) / "train.log", "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 20_000))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def dump_status(run_dir: Path) -> str:
    return json.dumps({**read_status(run_dir), "state": effective_state(run_dir)}, indent=2)


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
        if not (run_dir / "config.json").is_file():
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
