"""The run store: one folder per run under ``experiments/``, the folder its source of truth.

Run ids, creating runs, listing them with their state, the models they hold, and the
``python -m fer.runs`` command. A folder's layout and files: ``fer.run_folder``; worker
processes (launch, stop, resume, delete): ``fer.workers``.

A run folder may be a symbolic link to a folder elsewhere (a run moved to a bigger disk): it is
listed, watched, resumed and evaluated like any other, and deleting it removes the link only (the
folder it points to is kept). A link that leads nowhere readable is not a run. A run whose files
hold values of the wrong type or range is listed as ``damaged``, with its problems.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fer import EXPERIMENTS_DIR
from fer.config import TrainConfig
from fer.files import is_regular_file
from fer.run_folder import ACTIVE_STATES, RunError, RunFolder, describe_model
from fer.workers import delete, effective_state, is_alive, resume, stop

# Matched whole (fullmatch): "$" alone would accept a trailing newline.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The state shown for a run whose files are damaged (not written by a worker).
DAMAGED = "damaged"
# Attempts at a fresh random run id before giving up (a collision needs the same second and token).
RUN_ID_ATTEMPTS = 20


def experiments_dir() -> Path:
    """``FER_EXPERIMENTS`` overrides the default ``experiments/`` folder of the project."""
    return Path(os.environ.get("FER_EXPERIMENTS") or EXPERIMENTS_DIR)


def run_path(run_id: str, root: Path | None = None) -> Path:
    """The folder of ``run_id`` in the experiments folder; refuses ids that could name anything
    else. The folder itself may be a link (see the module's docstring)."""
    root = Path(root or experiments_dir()).resolve()
    if not is_run_id(run_id):
        if isinstance(run_id, str) and run_id.lower().startswith(RESERVED_PREFIXES):
            raise RunError(f"invalid run id {run_id!r}: names starting with "
                           f"{' or '.join(RESERVED_PREFIXES)} are the experiments folder's own files")
        raise RunError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    return root / run_id


# Files the experiments folder keeps beside the runs (the sweeps' SQLite database and the files
# SQLite makes next to it, the default model's choice): no run, ensemble or sweep may take their
# names, or a folder of that name would break every sweep ("disk I/O error") or the choice.
RESERVED_PREFIXES = ("sweeps.db", "default-model.json")


def is_run_id(name: object) -> bool:
    """A name that can be a run id: no path separator, no "..", no control character, none of
    the experiments folder's own files (``RESERVED_PREFIXES``)."""
    return (isinstance(name, str) and RUN_ID_PATTERN.fullmatch(name) is not None and ".." not in name
            and not name.lower().startswith(RESERVED_PREFIXES))


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
        folder.write_config(anchored_data(config))
        folder.write_status(state="created", created=time.time())
        return path
    raise RunError("could not find a free run id")


def anchored_data(config: TrainConfig) -> TrainConfig:
    """``config`` with a relative dataset path that exists from here made absolute: the worker
    runs in the project folder (and a resume may start from anywhere), so "fer2013" typed in
    another folder would not be found there. Any other path stays as typed. An empty dataset
    becomes the one it means now (``fer.data.default_dataset``), so that it stays the same."""
    if not config.data:
        from fer.data import DataError, default_dataset

        try:
            return replace(config, data=str(default_dataset().absolute()))
        except (DataError, OSError):
            return config  # no dataset yet: the worker says so
    try:
        path = Path(config.data).expanduser()
        if path.is_absolute() or not path.exists():
            return config
        return replace(config, data=os.path.abspath(path))  # links kept as typed
    except (OSError, ValueError, RuntimeError):  # ValueError: a NUL; RuntimeError: no home folder
        return config


# ---- reading runs ---------------------------------------------------------------------------

@dataclass
class RunSummary:
    run_id: str
    path: Path
    state: str
    config: dict[str, Any]
    status: dict[str, Any]
    # What is wrong with the run's files (state DAMAGED); [] for a healthy run.
    problems: list[str] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.config.get("architecture", "?"))

    @property
    def duration_s(self) -> float | None:
        """Seconds of training over every start and resume (up to now while a worker trains);
        time spent stopped or waiting in the queue does not count."""
        live = self.state == "running" and self.status.get("ended") is None
        return RunFolder(self.path).training_seconds(self.status, live=live)


def load_run(run_dir: Path) -> RunSummary:
    """The run's state and files, validated: a damaged file makes the run DAMAGED (unless a worker
    is training it: the worker rewrites its status), never an exception."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    status, problems = folder.read_status_checked()
    config, config_problems = folder.read_config_checked()
    problems += config_problems
    state = effective_state(run_dir, status)
    if problems and not is_alive(run_dir):
        state = DAMAGED
    if state in ("interrupted", *ACTIVE_STATES) and not os.access(run_dir, os.W_OK):
        # The worker cannot record its own failure there (read-only file system or permissions).
        status["error"] = status.get("error") or (
            f"the run folder {run_dir} is not writable (read-only file system or permissions), so "
            "its worker cannot save progress or results")
    return RunSummary(run_dir.name, run_dir, state, config, status, problems)


def run_folders(root: Path | None = None) -> list[Path]:
    """The folders (or links to folders) under ``root`` whose name is a run id and that hold a
    config.json (of any kind: a damaged one is listed with its problem)."""
    root = Path(root or experiments_dir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    return [entry for entry in entries
            if is_run_id(entry.name) and _is_dir(entry) and _exists(RunFolder(entry).config_file)]


# States that change only when status.json or config.json changes (an active state also changes
# when its worker dies, and a queued one with the time): their summaries can be reused.
SETTLED_STATES = ("created", "finished", "failed", "stopped", "interrupted", DAMAGED)
# run folder -> (the signature of its status.json and config.json, its summary), for list_runs.
_SETTLED: dict[Path, tuple[tuple, RunSummary]] = {}


def _signature(run_dir: Path) -> tuple | None:
    """What changes whenever status.json or config.json is written or replaced (None: unreadable)."""
    folder = RunFolder(run_dir)
    try:
        return tuple((info.st_ino, info.st_size, info.st_mtime_ns)
                     for info in (os.stat(folder.status_file), os.stat(folder.config_file)))
    except (OSError, ValueError):
        return None


def _load_settled(run_dir: Path) -> RunSummary:
    """``load_run``, reusing the last summary of a settled run whose files have not changed."""
    signature = _signature(run_dir)
    cached = _SETTLED.get(run_dir)
    if signature is not None and cached is not None and cached[0] == signature:
        return cached[1]
    run = load_run(run_dir)
    if signature is not None and run.state in SETTLED_STATES:
        _SETTLED[run_dir] = (signature, run)
    else:
        _SETTLED.pop(run_dir, None)
    return run


def list_runs(root: Path | None = None, reuse: bool = False) -> list[RunSummary]:
    """All runs, newest first. Folders that are not runs are ignored.

    ``reuse``: for pages that poll, keep the summaries of settled runs (finished, stopped, ...)
    whose status.json and config.json have not changed since the last call, so that polling a
    folder of hundreds of runs reads only the ones that may have changed."""
    folders = run_folders(root)
    runs = [_load_settled(path) if reuse else load_run(path) for path in folders]
    if reuse:
        for gone in set(_SETTLED) - set(folders):
            if gone.parent == Path(root or experiments_dir()):
                _SETTLED.pop(gone, None)
    return sorted(runs, key=lambda r: (r.status.get("created", 0), r.run_id), reverse=True)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a link loop, a name too long, no permission
        return False


def _exists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def available_models() -> list[tuple[str, Path]]:
    """(label, path) for the default model first (the run the user chose, ``fer.default_model``,
    else the shipped one), then the shipped model, every run with a model.keras and every
    ensemble (its ensemble.json)."""
    from fer import DEFAULT_MODEL_DIR
    from fer.default_model import current_default, model_path
    from fer.ensemble import ENSEMBLE_FILE, find_ensembles

    models: list[tuple[str, Path]] = []
    shipped = RunFolder(DEFAULT_MODEL_DIR).model_file
    if is_regular_file(shipped):
        models.append((describe_model(shipped), shipped))
    for run in list_runs():
        path = RunFolder(run.path).model_file
        if run.state != DAMAGED and is_regular_file(path):
            models.append((f"{describe_model(path)} [{run.state}]", path))
    models += [(describe_model(folder / ENSEMBLE_FILE), folder / ENSEMBLE_FILE)
               for folder in find_ensembles()]
    default = current_default()
    if not default.shipped:
        chosen = model_path(default)
        rest = [(label, path) for label, path in models if path != chosen]
        models = [(f"{describe_model(chosen)} · the default model", chosen), *rest]
    return models


def dump_status(run_dir: Path) -> str:
    """status.json's valid values, the state to show and any problems of the run's files."""
    run = load_run(run_dir)
    problems = {"problems": run.problems} if run.problems else {}
    return json.dumps({**run.status, "state": run.state, **problems}, indent=2)


def _problem(run: RunSummary, width: int = 80) -> str:
    text = "; ".join(run.problems) or str(run.status.get("error") or "")
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


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
    default = sub.add_parser("default", help="show the default model, or make a finished run "
                                             "(or an ensemble) the model Predict and Evaluate start from")
    default.add_argument("run_id", nargs="?", help="the run or ensemble to use (omit to show the default)")
    default.add_argument("--restore", action="store_true", help="start from the shipped model again")
    args = parser.parse_args(argv)
    root = Path(args.experiments) if args.experiments else None
    try:
        if args.command == "default":
            return _default_command(args.run_id, args.restore, root)
        if args.command == "list":
            import pandas as pd

            from fer.ui import run_row

            # Why a run failed or is damaged, in a last column (cut to a line's worth).
            rows = [{**run_row(run), "problem": _problem(run)} for run in list_runs(root)]
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


def _default_command(run_id: str | None, restore: bool, root: Path | None) -> int:
    from fer.default_model import DefaultModelError, choose_default, current_default, restore_shipped

    if restore and run_id:
        print("error: give a run id or --restore, not both", file=sys.stderr)
        return 2
    try:
        if restore:
            print("the shipped model is the default again" if restore_shipped(root)
                  else "the shipped model already was the default")
        elif run_id:
            print(f"default model: {choose_default(run_id, root)}")
        else:
            default = current_default(root)
            if default.notice:
                print(default.notice, file=sys.stderr)
            name = "the shipped model" if default.shipped else default.source
            print(f"default model: {name} ({default.folder})")
    except (DefaultModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
