"""A run folder's layout and file formats: the only module that knows its file names (and long
because every file of a run has its reader and writer here, and nowhere else).

    experiments/<run-id>/
        config.json              the run's TrainConfig
        checkpoint-config.json   the TrainConfig the resumable state in backup/ was made with
        status.json              state, pid, times, data sizes, results (changed under .status.lock)
        progress.json            the worker's live position: epoch, batch, phase, optimizer step
        history.csv              one row per completed epoch (Keras' CSVLogger): HISTORY_COLUMNS
        notes.json               the user's tags and notes (fer.schemas.NOTES_SCHEMA)
        model.keras              the network of the best epoch on validation accuracy
        .model.saving.keras      a new best network while it is written; then it replaces model.keras
        backup/                  Keras BackupAndRestore: the resume point
        eval/, eval-<tta>/       an evaluation: metrics.json, predictions.csv, misclassified.npz
                                 and, for an evaluation run in the background (fer.evaluate),
                                 job.json (state, batches done), evaluate.log, stop-requested;
                                 .job.lock held by the live job; .job.launch.lock
        export/                  exports of model.keras (fer.export): model.keras, saved_model/ and
                                 saved_model.zip, model.tflite, model.onnx; job.json (state,
                                 results), export.log; .job.lock held by the live export
        sweep.json               for a sweep's trial: its study, trial number and storage
        train.log                the worker's output
        stop-requested           a stop request for the current worker
        .lock                    held (flock) by the live worker; .status.lock, .launch.lock

Epochs are counted from 1 everywhere outside this module; history.csv keeps Keras' 0-based
numbers on disk, and only ``read_history``/``keep_history`` convert.

status.json is changed only under ``.status.lock``, so concurrent writers (the worker, a launch)
never lose each other's changes, and replaced atomically, so readers never see half of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer.config import ConfigError, TrainConfig
from fer.files import is_regular_file, load_json, read_bytes, read_json, read_tail, write_json_atomic
from fer.schemas import (
    EVAL_JOB_SCHEMA,
    EVAL_JOB_TIMES,
    EXPORT_JOB_SCHEMA,
    EXPORT_JOB_TIMES,
    MAX_TAGS,
    NOTES_MAX_BYTES,
    NOTES_MAX_CHARS,
    NOTES_SCHEMA,
    PROGRESS_SCHEMA,
    STATUS_SCHEMA,
    STATUS_TIMES,
    SWEEP_SCHEMA,
    TAG_MAX_CHARS,
    checked,
    load_checked,
    short,
)

# The states status.json records. "created": never started; "interrupted" is never written by a
# worker: it is what an active state reads as once its worker is gone (fer.workers.effective_state).
ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("finished", "failed", "stopped", "interrupted")
RESUMABLE_STATES = ("stopped", "failed", "interrupted", "created")

# The end of a worker's log that the pages show: enough for a traceback, never the whole file.
LOG_TAIL_BYTES = 20_000
# history.csv holds one short line per epoch: a file larger than this is not a history.
HISTORY_MAX_BYTES = 8 << 20
# The columns the worker writes to history.csv (fer.recipe), in CSVLogger's order: "seconds" is an
# epoch's duration, "time" when it ended (seconds since 1970; absent in histories of older runs).
HISTORY_COLUMNS = ("epoch", "accuracy", "learning_rate", "loss", "seconds", "time", "val_accuracy",
                   "val_loss")
# The files of one evaluation (eval/ or eval-<tta>/).
METRICS, PREDICTIONS, MISCLASSIFIED = "metrics.json", "predictions.csv", "misclassified.npz"


class RunError(ValueError):
    """A run operation that cannot be done (unknown run, already running, ...)."""


@dataclass(frozen=True)
class RunNotes:
    """A user's tags and notes on a run (notes.json)."""

    tags: tuple[str, ...] = ()
    text: str = ""


def clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags as they are stored: spaces trimmed and collapsed, empty ones and repeats (in any letter
    case) dropped. RunError when one is too long or holds a control character, or when too many."""
    kept: dict[str, str] = {}
    for tag in tags:
        tag = " ".join(str(tag).split())
        if not tag:
            continue
        if len(tag) > TAG_MAX_CHARS:
            raise RunError(f"the tag {short(tag)} is {len(tag)} characters long; a tag has at most "
                           f"{TAG_MAX_CHARS}")
        if any(ord(char) < 32 or ord(char) == 127 for char in tag):
            raise RunError(f"the tag {short(tag)} holds a control character")
        kept.setdefault(tag.casefold(), tag)
    if len(kept) > MAX_TAGS:
        raise RunError(f"{len(kept)} tags given; a run has at most {MAX_TAGS}")
    return tuple(kept.values())


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (between processes and between threads alike)."""
    # Never through a link, never blocking (the lock file may have been replaced by a named pipe).
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except OSError:
        try:  # a read-only folder: nobody can write there, but stop() must still signal
            fd = os.open(path, os.O_RDONLY | flags)
        except OSError:
            yield
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def lock_held(path: Path) -> bool:
    """True while some process holds an exclusive flock on ``path`` (a regular file); never
    blocks, and a momentary shared lock is all it takes."""
    if not is_regular_file(path):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: where each file is and how it is read and written."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ---- where things are ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint_config_file(self) -> Path:
        return self.path / "checkpoint-config.json"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def progress_file(self) -> Path:
        return self.path / "progress.json"

    @property
    def history_file(self) -> Path:
        return self.path / "history.csv"

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    @property
    def model_staging_file(self) -> Path:
        """Where a new best network is written before it replaces ``model_file`` (same folder,
        so the replacement is one rename)."""
        return self.path / ".model.saving.keras"

    @property
    def backup_dir(self) -> Path:
        return self.path / "backup"

    @property
    def log_file(self) -> Path:
        return self.path / "train.log"

    @property
    def stop_file(self) -> Path:
        return self.path / "stop-requested"

    @property
    def sweep_file(self) -> Path:
        return self.path / "sweep.json"

    @property
    def notes_file(self) -> Path:
        return self.path / "notes.json"

    @property
    def worker_lock(self) -> Path:
        return self.path / ".lock"

    @property
    def launch_lock(self) -> Path:
        return self.path / ".launch.lock"

    def eval_dir(self, tta: str = "none") -> Path:
        """``eval/``, or ``eval-<mode>/`` for an evaluation with test-time augmentation."""
        return self.path / ("eval" if tta == "none" else f"eval-{tta}")

    def is_run(self) -> bool:
        return self.config_file.is_file()

    # ---- config ------------------------------------------------------------------------------

    def read_config(self) -> TrainConfig:
        """The validated config (raises ConfigError with the problems)."""
        return TrainConfig.load(self.config_file)

    def read_config_values(self) -> dict[str, Any] | None:
        """config.json as plain values, unvalidated (None when missing or not a JSON object)."""
        values = read_json(self.config_file)
        return values if isinstance(values, dict) else None

    def read_config_checked(self) -> tuple[dict[str, Any], list[str]]:
        """(config.json's values to show, its problems). The values are the validated config's;
        with problems, only the plain values (text, numbers, booleans) of the file are kept."""
        try:
            values = load_json(self.config_file)
        except FileNotFoundError:
            return {}, [f"{self.config_file.name} is missing"]
        except OSError as exc:
            return {}, [str(exc)]
        if not isinstance(values, dict):
            return {}, [f"{self.config_file.name} holds {type(values).__name__}, not a JSON object"]
        try:
            return TrainConfig.from_dict(values).to_dict(), []
        except ConfigError as exc:
            plain = {key: value for key, value in values.items()
                     if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 200}
            return plain, [f"{self.config_file.name}: {problem}" for problem in exc.problems]

    def write_config(self, config: TrainConfig) -> None:
        config.save(self.config_file)

    def read_checkpoint_config(self) -> dict[str, Any] | None:
        values = read_json(self.checkpoint_config_file)
        return values if isinstance(values, dict) else None

    def write_checkpoint_config(self, config: TrainConfig) -> None:
        config.save(self.checkpoint_config_file)

    # ---- status ------------------------------------------------------------------------------

    def read_status(self) -> dict[str, Any]:
        """status.json's valid values (a value of the wrong type or range is left out)."""
        return self.read_status_checked()[0]

    def read_status_checked(self) -> tuple[dict[str, Any], list[str]]:
        """(status.json's valid values, the problems of the others) (fer.schemas.STATUS_SCHEMA)."""
        status, problems = load_checked(self.status_file, STATUS_SCHEMA, STATUS_TIMES)
        if status is None and not problems:
            problems = [f"{self.status_file.name} is missing"]
        return status or {}, problems

    def write_status(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into status.json and return the new status.

        When the disk is full the atomic write cannot make its temporary file; the status is then
        rewritten in place (it fits in the blocks the file already has), so a run can still
        record why it failed.
        """
        with file_lock(self.path / ".status.lock"):
            status = self.read_status()
            status.update(changes)
            try:
                write_json_atomic(self.status_file, status)
            except OSError as exc:
                if not _rewrite_in_place(self.status_file, json.dumps(status, indent=2) + "\n"):
                    raise exc from None
        return status

    def training_seconds(self, status: dict[str, Any] | None = None, live: bool = False) -> float | None:
        """Seconds the run's workers have trained, over every start and resume (None before its
        first start). ``live``: a worker is training now (its time counts up to now).

        status.json's ``training_s`` holds the time of the workers that ended; the worker that
        starts last sets it and adds its own time when it ends. A worker killed before it could
        end counts until its last progress write; runs from before ``training_s`` count their
        last worker only (``ended - started``).
        """
        status = self.read_status() if status is None else status
        before, started, ended = status.get("training_s"), status.get("started"), status.get("ended")
        if started is None:
            return before
        if live:
            return (before or 0.0) + max(0.0, time.time() - started)
        if ended is not None and ended >= started:
            return before if before is not None else ended - started
        updated = self.read_progress().get("updated")  # the worker was killed: its last sign of life
        return (before or 0.0) + max(0.0, updated - started) if updated is not None else before

    # ---- progress ----------------------------------------------------------------------------

    def read_progress(self) -> dict[str, Any]:
        """progress.json's valid values ({} when it is missing or damaged)."""
        progress, _ = load_checked(self.progress_file, PROGRESS_SCHEMA)
        return progress or {}

    def write_progress(self, **values: Any) -> None:
        """Replace progress.json with ``values`` and the time of writing."""
        write_json_atomic(self.progress_file, {**values, "updated": time.time()})

    def update_progress(self, **changes: Any) -> None:
        """Merge ``changes`` into progress.json (the worker is its only writer)."""
        self.write_progress(**{**self.read_progress(), **changes})

    def end_progress(self, phase: str) -> None:
        """The run's last phase in progress.json; removed when it cannot be written, so a stale
        live phase never stays behind."""
        try:
            self.update_progress(phase=phase)
        except OSError:
            with contextlib.suppress(OSError):
                self.progress_file.unlink(missing_ok=True)

    # ---- history -----------------------------------------------------------------------------

    def read_history(self):
        """history.csv as a DataFrame with epochs counted from 1, keeping only complete, numeric
        rows (the last line may be half-written, and a hand-edited file may hold garbage)."""
        import pandas as pd

        try:
            lines = read_bytes(self.history_file, HISTORY_MAX_BYTES).decode(errors="replace").splitlines()
        except OSError:
            return pd.DataFrame()
        if not lines:
            return pd.DataFrame()
        header = lines[0].split(",")
        if len(set(header)) != len(header):
            return pd.DataFrame()  # not a CSVLogger file
        epoch_column = header.index("epoch") if "epoch" in header else None
        good = [line for line in lines[1:] if _is_numeric_row(line, len(header), epoch_column)]
        frame = pd.read_csv(io.StringIO("\n".join([lines[0], *good])))
        if "epoch" in frame.columns:
            frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
            frame["epoch"] = frame["epoch"].astype(int) + 1
        return frame.reset_index(drop=True)

    def keep_history(self, epochs: int) -> None:
        """Drop the rows of epochs after ``epochs`` (those the resumable state does not hold), so
        a resumed run never logs an epoch twice."""
        if epochs == 0:
            self.history_file.unlink(missing_ok=True)
            return
        history = self.read_history()
        if history.empty:
            return
        history = history[history["epoch"] <= epochs].copy()
        history["epoch"] -= 1  # back to Keras' numbering on disk
        # The resumed worker appends rows of HISTORY_COLUMNS in CSVLogger's order (the epoch, then
        # sorted names) under this header: a history from an older version gets the columns it
        # lacks, empty ("nan"), so the new rows line up with the header.
        for column in HISTORY_COLUMNS:
            if column not in history.columns:
                history[column] = float("nan")
        history = history[["epoch", *sorted(set(history.columns) - {"epoch"})]]
        history.to_csv(self.history_file, index=False, na_rep="nan")

    # ---- resumable state and stop requests ---------------------------------------------------

    def completed_epochs(self) -> int:
        """Epochs saved in the resumable training state (Keras BackupAndRestore); 0 without one."""
        meta = read_json(self.backup_dir / "training_metadata.json")
        try:
            return max(0, int(meta.get("epoch", 0))) if isinstance(meta, dict) else 0
        except (TypeError, ValueError):
            return 0

    def stop_requested(self) -> float | None:
        """When a stop was last asked for this run's current worker (None if it was not)."""
        request = read_json(self.stop_file)
        if isinstance(request, dict) and isinstance(request.get("requested"), (int, float)):
            return float(request["requested"])
        return time.time() if self.stop_file.exists() else None

    def request_stop(self, pid: int | None) -> None:
        write_json_atomic(self.stop_file, {"requested": time.time(), "pid": pid})

    def clear_stop_request(self) -> None:
        self.stop_file.unlink(missing_ok=True)

    # ---- sweeps --------------------------------------------------------------------------------

    def write_sweep_tag(self, study: str, trial: int, storage: str) -> None:
        """Mark the run as trial ``trial`` of a sweep (fer.sweep)."""
        write_json_atomic(self.sweep_file, {"study": study, "trial": trial, "storage": storage})

    def read_sweep_tag(self) -> dict[str, Any] | None:
        """{"study", "trial", "storage"} for a sweep's trial; None otherwise (or when damaged)."""
        tag, problems = load_checked(self.sweep_file, SWEEP_SCHEMA)
        return tag if tag is not None and not problems and "study" in tag else None

    # ---- evaluations run in the background (fer.evaluate) ----------------------------------------

    def eval_job_file(self, tta: str = "none") -> Path:
        return self.eval_dir(tta) / "job.json"

    def eval_job_lock(self, tta: str = "none") -> Path:
        """Held (flock) by the live evaluation job of ``tta``."""
        return self.eval_dir(tta) / ".job.lock"

    def eval_launch_lock(self, tta: str = "none") -> Path:
        return self.eval_dir(tta) / ".job.launch.lock"

    def eval_log_file(self, tta: str = "none") -> Path:
        return self.eval_dir(tta) / "evaluate.log"

    def eval_stop_file(self, tta: str = "none") -> Path:
        return self.eval_dir(tta) / "stop-requested"

    def read_eval_job(self, tta: str = "none") -> dict[str, Any]:
        """job.json's valid values ({} when there is none or it is damaged)."""
        job, _ = load_checked(self.eval_job_file(tta), EVAL_JOB_SCHEMA, EVAL_JOB_TIMES)
        return job or {}

    def write_eval_job(self, tta: str = "none", replace: bool = False, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into job.json (or replace it with them) atomically; returns the job."""
        with file_lock(self.eval_dir(tta) / ".job.status.lock"):
            job = {} if replace else self.read_eval_job(tta)
            job.update(changes, updated=time.time())
            write_json_atomic(self.eval_job_file(tta), job)
        return job

    def eval_stop_requested(self, tta: str = "none") -> bool:
        return self.eval_stop_file(tta).exists()

    def request_eval_stop(self, tta: str = "none") -> None:
        write_json_atomic(self.eval_stop_file(tta), {"requested": time.time()})

    def clear_eval_stop(self, tta: str = "none") -> None:
        self.eval_stop_file(tta).unlink(missing_ok=True)

    # ---- tags and notes ------------------------------------------------------------------------

    def read_notes_checked(self) -> tuple[RunNotes, list[str]]:
        """(the run's tags and notes, the problems of notes.json); no notes when it is missing, and
        only its valid parts when it is damaged."""
        try:
            raw = load_json(self.notes_file, NOTES_MAX_BYTES)
        except FileNotFoundError:
            return RunNotes(), []
        except OSError as exc:
            return RunNotes(), [str(exc)]
        values, problems = checked(raw, NOTES_SCHEMA, self.notes_file.name)
        values = values or {}
        return RunNotes(tuple(values.get("tags", ())), values.get("notes", "")), problems

    def read_notes(self) -> RunNotes:
        return self.read_notes_checked()[0]

    def write_notes(self, tags: Iterable[str], text: str) -> RunNotes:
        """Replace the run's tags and notes (``clean_tags``; the text at most NOTES_MAX_CHARS
        characters, RunError otherwise); what was written."""
        text = "\n".join(line.rstrip() for line in str(text).replace("\r\n", "\n").split("\n")).strip()
        if len(text) > NOTES_MAX_CHARS:
            raise RunError(f"the notes are {len(text):,} characters long; at most {NOTES_MAX_CHARS:,} "
                           "are kept")
        notes = RunNotes(clean_tags(tags), text)
        write_json_atomic(self.notes_file, {"tags": list(notes.tags), "notes": notes.text,
                                            "updated": time.time()})
        return notes

    # ---- log -----------------------------------------------------------------------------------

    def read_log_tail(self, lines: int = 30) -> str:
        try:
            text = read_tail(self.log_file, LOG_TAIL_BYTES).decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class ExportFolder:
    """A model's export folder (``<run>/export/``; fer.export places the shipped model's in the
    cache): the job file the exporter writes and the page reads, its lock and its log."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of_run(cls, run_dir: Path) -> ExportFolder:
        return cls(Path(run_dir) / "export")

    @property
    def job_file(self) -> Path:
        return self.path / "job.json"

    @property
    def lock(self) -> Path:
        """Held (flock) by the live export process."""
        return self.path / ".job.lock"

    @property
    def launch_lock(self) -> Path:
        return self.path / ".job.launch.lock"

    @property
    def log_file(self) -> Path:
        return self.path / "export.log"

    def read_job(self) -> dict[str, Any]:
        """job.json's valid values ({} when there is none or it is damaged)."""
        job, _ = load_checked(self.job_file, EXPORT_JOB_SCHEMA, EXPORT_JOB_TIMES)
        return job or {}

    def write_job(self, replace: bool = False, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into job.json (or replace it with them) atomically; returns the job."""
        self.path.mkdir(parents=True, exist_ok=True)
        with file_lock(self.path / ".job.status.lock"):
            job = {} if replace else self.read_job()
            job.update(changes, updated=time.time())
            write_json_atomic(self.job_file, job)
        return job

    def write_result(self, fmt: str, result: dict[str, Any]) -> dict[str, Any]:
        """Record one format's result in job.json, keeping the others'."""
        with file_lock(self.path / ".job.status.lock"):
            job = self.read_job()
            job["results"] = {**job.get("results", {}), fmt: result}
            job["updated"] = time.time()
            write_json_atomic(self.job_file, job)
        return job


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


def describe_model(model_file: Path) -> str:
    """"<run> (<architecture>, <test accuracy>)" for the model.keras of a run or model folder (an
    ensemble's ensemble.json: "<name> (ensemble of N: <architectures>, <test accuracy>)")."""
    from fer import DEFAULT_MODEL_DIR

    folder = RunFolder(Path(model_file).parent)
    config = folder.read_config_values() or {}
    metrics = read_json(folder.eval_dir() / METRICS)
    splits = metrics.get("splits") if isinstance(metrics, dict) else None
    test = splits.get("test") if isinstance(splits, dict) else None
    accuracy = test.get("accuracy") if isinstance(test, dict) else None
    name = "shipped default" if folder.path == DEFAULT_MODEL_DIR else folder.name
    details = [str(config.get("architecture", "?"))]
    if Path(model_file).name == "ensemble.json":
        from fer.ensemble import summary

        details = [summary(folder.path)]
    if isinstance(accuracy, (int, float)):
        details.append(f"{accuracy:.1%} test accuracy")
    return f"{name} ({', '.join(details)})"


def _is_numeric_row(line: str, width: int, epoch_column: int | None) -> bool:
    """A complete row of numbers (a diverged run logs nan losses) with a whole epoch number."""
    cells = line.split(",")
    if len(cells) != width:
        return False
    try:
        numbers = [float(cell) for cell in cells]
    except ValueError:
        return False
    if epoch_column is None:
        return True
    epoch = numbers[epoch_column]
    return math.isfinite(epoch) and epoch == int(epoch) and 0 <= epoch < 1e9


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
