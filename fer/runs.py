"""The run store: one folder per run under ``experiments/``, the folder its source of truth.

Run ids, creating runs, listing them with their state, the models they hold, and the
``python -m fer.runs`` command. A folder's layout and files: ``fer.run_folder``; worker
processes (launch, stop, resume, delete): ``fer.workers``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer import EXPERIMENTS_DIR
from fer.config import TrainConfig
from fer.run_folder import ACTIVE_STATES, RunError, RunFolder, describe_model
from fer.workers import delete, effective_state, resume, stop

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Attempts at a fresh random run id before giving up (a collision needs the same second and token).
RUN_ID_ATTEMPTS = 20


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
    for _ in range(RUN_ID_ATTEMPTS):
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
