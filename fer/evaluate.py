"""Evaluate a model on a split: accuracy, confusion matrix, per-class report, misclassified faces.

CLI: ``python -m fer.evaluate --model PATH --data DIR --split private`` prints JSON;
``python -m fer.evaluate --run RUN [--tta MODE] [--detach]`` evaluates a run's model on its own data
and writes its evaluation folder.

An evaluation of a run is a job, whether it runs in a terminal or in the background (the Evaluate
page's button and ``--detach`` start it as a process of its own, in its own process group, as
training workers are started): it holds ``.job.lock`` in the evaluation's folder while it lives and
records its state and progress (batches done of all) in ``job.json`` there (``fer.run_folder``
names the files). ``stop_job`` asks it to stop (a ``stop-requested`` file and SIGTERM to the lock's
holder); it stops after the batch in progress. A job whose process died without recording an end
reads ``interrupted``, never running for ever.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fer import CLASSES, PROJECT_ROOT
from fer.data import Split
from fer.run_folder import METRICS, MISCLASSIFIED, PREDICTIONS, RunFolder, file_lock, lock_held
from fer.workers import pid_running

SPLIT_ALIASES = {"private": "test", "privatetest": "test", "test": "test",
                 "public": "val", "publictest": "val", "val": "val", "validation": "val",
                 "train": "train", "training": "train"}


def metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows = true class, counts) and scikit-learn's report."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    predicted = probabilities.argmax(axis=1)
    index = list(range(len(CLASSES)))
    report = classification_report(labels, predicted, labels=index, target_names=list(CLASSES),
                                    output_dict=True, zero_division=0)
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=index).tolist(),
        "report": report,
    }


def write_evaluation(eval_dir: Path, splits: dict[str, Split], probabilities: dict[str, np.ndarray],
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write an evaluation folder: metrics, per-face predictions and the misclassified faces of
    the test split (``fer.run_folder`` names the files)."""
    import pandas as pd

    from fer.files import write_json_atomic

    eval_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"classes": list(CLASSES), **(extra or {}), "splits": {}}
    frames = []
    for name, split in splits.items():
        probs = probabilities[name]
        result["splits"][name] = metrics(split.labels, probs)
        frame = pd.DataFrame({"split": name, "name": split.names,
                              "true": [CLASSES[i] for i in split.labels],
                              "predicted": [CLASSES[i] for i in probs.argmax(axis=1)],
                              "confidence": probs.max(axis=1)})
        for i, cls in enumerate(CLASSES):
            frame[f"p_{cls}"] = probs[:, i]
        frames.append(frame)
    pd.concat(frames).to_csv(eval_dir / PREDICTIONS, index=False, float_format="%.5f")
    if "test" in splits:
        split, probs = splits["test"], probabilities["test"]
        predicted = probs.argmax(axis=1)
        wrong = np.flatnonzero(predicted != split.labels)
        tmp = eval_dir / f".{MISCLASSIFIED}.tmp.npz"
        np.savez_compressed(tmp, images=split.images[wrong], true=split.labels[wrong],
                            predicted=predicted[wrong], confidence=probs[wrong].max(axis=1),
                            names=np.array([split.names[i] for i in wrong], dtype=str))
        tmp.replace(eval_dir / MISCLASSIFIED)
    write_json_atomic(eval_dir / METRICS, result)
    return result


def eval_dir(run_dir: Path, tta: str = "none") -> Path:
    """Where a run's evaluation with test-time augmentation ``tta`` lives (the mode checked)."""
    from fer.tta import tta_mode

    return RunFolder(run_dir).eval_dir(tta_mode(tta))


# Faces per batch of a job's predictions (each face is seen once per TTA view): the unit of its
# progress, and how long a stop may wait.
JOB_BATCH = 256


def predict_in_batches(predictor, splits: dict[str, Split], tta: str, batch: int = JOB_BATCH,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Probabilities per split, ``batch`` faces at a time; ``progress(done, total)`` is called
    before the first batch and after each (it may raise to stop)."""
    total = sum(math.ceil(len(split.images) / batch) for split in splits.values())
    done = 0
    if progress:
        progress(done, total)
    result = {}
    for name, split in splits.items():
        parts = [np.zeros((0, len(CLASSES)), dtype=np.float32)]
        for start in range(0, len(split.images), batch):
            parts.append(predictor.predict_faces(split.images[start:start + batch], tta=tta))
            done += 1
            if progress:
                progress(done, total)
        result[name] = np.concatenate(parts)
    return result


def evaluate_run(run_dir: Path, dataset=None, tta: str = "none",
                 progress: Callable[[int, int], None] | None = None,
                 batch: int = JOB_BATCH) -> dict[str, float]:
    """Evaluate a run's best model on its validation and test splits and write ``eval/``
    (``eval-<mode>/`` with a test-time augmentation mode).

    Works for stopped runs and the shipped model folder too (the best epoch's model.keras is
    kept); ``dataset`` defaults to the run's own data settings. With ``progress``, faces are
    predicted ``batch`` at a time and ``progress(done, total)`` follows the batches. Returns the
    accuracies; recording them in the run's status is the caller's (the worker's) business.
    """
    from fer.data import load_dataset
    from fer.ensemble import data_config, is_ensemble
    from fer.predict import Predictor

    predictor = Predictor.load(run_dir)  # before the dataset: a bad model fails fast
    if dataset is None:
        config = data_config(run_dir) if is_ensemble(run_dir) else RunFolder(run_dir).read_config()
        dataset = load_dataset(config.data or None, config.validation_split, config.seed,
                               config.max_train_samples)
    splits = {"val": dataset.val, "test": dataset.test}
    if progress is None:
        probabilities = {name: predictor.predict_faces(split.images, tta=tta)
                         for name, split in splits.items()}
    else:
        probabilities = predict_in_batches(predictor, splits, tta, batch, progress)
    result = write_evaluation(eval_dir(run_dir, tta), splits, probabilities,
                              {"val_description": dataset.val_description,
                               "test_description": dataset.test_description,
                               "tta": tta})
    return {"val_accuracy": result["splits"]["val"]["accuracy"],
            "test_accuracy": result["splits"]["test"]["accuracy"]}


# A model that gives one class to at least this share of a split's faces has learned nothing
# useful yet (FER2013's largest class, happy, is a quarter of each test split).
ONE_CLASS_SHARE = 0.9


def one_class_warning(metrics: dict[str, Any]) -> str | None:
    """A warning with a hint when the evaluated model predicts (nearly) one class for every face,
    read from the confusion matrix of the test split (else validation) of a checked metrics.json
    (``read_evaluation``); None when its predictions are spread over the classes."""
    splits = metrics.get("splits", {})
    split = "test" if "test" in splits else "val" if "val" in splits else None
    if split is None:
        return None
    predicted = np.asarray(splits[split]["confusion_matrix"], dtype=np.int64).sum(axis=0)
    total = int(predicted.sum())
    if total == 0 or predicted.max() < ONE_CLASS_SHARE * total:
        return None
    classes = metrics.get("classes", CLASSES)
    top = int(predicted.argmax())
    name = classes[top] if top < len(classes) else str(top)
    return (f"The model predicts '{name}' for {predicted[top] / total:.0%} of the {total:,} "
            f"{'test' if split == 'test' else 'validation'} faces: it has not learned the expressions "
            "yet. Train longer (more epochs or training images, e.g. the Quick trial preset) or lower "
            "the learning rate.")


# The largest misclassified.npz that is read (all 7,178 FER2013 test faces take about 17 MB), and the
# most its arrays may hold once unpacked (checked from the file's headers before anything is read).
MISCLASSIFIED_MAX_BYTES = 256 << 20
MISCLASSIFIED_MAX_UNPACKED = 256 << 20


def read_evaluation(run_dir: Path, tta: str = "none") -> dict[str, Any] | None:
    """The evaluation's metrics.json, checked; None when there is none or it is damaged."""
    return read_evaluation_checked(run_dir, tta)[0]


def read_evaluation_checked(run_dir: Path, tta: str = "none") -> tuple[dict[str, Any] | None, list[str]]:
    """(metrics.json checked against fer.schemas.METRICS_SCHEMA, its problems): (None, []) when
    the model has no such evaluation, (None, problems) when its file is damaged."""
    from fer.schemas import METRICS_SCHEMA, load_checked

    metrics, problems = load_checked(eval_dir(run_dir, tta) / METRICS, METRICS_SCHEMA)
    if problems or metrics is None:
        return None, problems
    classes = metrics.get("classes", CLASSES)
    for split, result in metrics["splits"].items():
        matrix = result["confusion_matrix"]
        if len(matrix) != len(classes) or any(len(row) != len(classes) for row in matrix):
            problems.append(f"{METRICS}: splits.{split}.confusion_matrix is not "
                            f"{len(classes)} x {len(classes)} (one row and column per class)")
    return (None, problems) if problems else (metrics, [])


def read_misclassified(run_dir: Path, tta: str = "none") -> dict[str, np.ndarray] | None:
    """The misclassified test faces of an evaluation; None when missing or damaged."""
    from fer.files import FileProblem, is_regular_file

    path = eval_dir(run_dir, tta) / MISCLASSIFIED
    try:
        if not is_regular_file(path):
            return None
        if path.stat().st_size > MISCLASSIFIED_MAX_BYTES:
            raise FileProblem(f"{MISCLASSIFIED} is too large")
        if npz_unpacked_bytes(path) > MISCLASSIFIED_MAX_UNPACKED:
            raise FileProblem(f"{MISCLASSIFIED} would unpack to too much")
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return None
    return arrays if _valid_misclassified(arrays) else None


def npz_unpacked_bytes(path: Path) -> int:
    """What the arrays of the .npz at ``path`` hold once loaded, by their headers alone (nothing is
    inflated beyond each .npy header): the larger of the members' declared sizes and the bytes
    their declared shapes and dtypes need. A ValueError for a member that is not a plain array."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > 16:
            raise ValueError("too many arrays")
        for info in members:
            with archive.open(info) as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=10_000)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=10_000)
            if dtype.hasobject:
                raise ValueError("an array of objects")
            needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
            total += max(needed, info.file_size)
    return total


def _valid_misclassified(arrays: dict[str, np.ndarray]) -> bool:
    """Faces (n, 48, 48) with n true and predicted class indices and n confidences."""
    try:
        images, true = arrays["images"], arrays["true"]
        predicted, confidence = arrays["predicted"], arrays["confidence"]
    except KeyError:
        return False
    n = len(true)
    if images.ndim not in (3, 4) or len(images) != n or images.shape[1:3] != (48, 48):
        return False
    if len(predicted) != n or len(confidence) != n or not n:
        return n == 0 and len(predicted) == len(confidence) == len(images) == 0
    if not (np.issubdtype(true.dtype, np.integer) and np.issubdtype(predicted.dtype, np.integer)):
        return False
    return bool(true.min() >= 0 and predicted.min() >= 0 and max(true.max(), predicted.max()) < len(CLASSES)
                and np.isfinite(confidence.astype(float)).all())


# ---- evaluations as jobs -------------------------------------------------------------------------

JOB_ACTIVE_STATES = ("queued", "running")
# How long a started job (its pid alive, loading Python) may take to take its lock before it reads
# as interrupted.
JOB_START_GRACE_S = 120
# A job's exit codes, as a training worker's: finished, failed, refused (bad input), stopped.
JOB_EXIT = {"finished": 0, "failed": 1, "refused": 2, "stopped": 3}


class EvaluationJobError(ValueError):
    """An evaluation job that cannot be started (one is already running)."""


class JobStopped(Exception):
    """Raised in a job at a safe point after a stop was requested."""


def job_command(run_dir: Path, tta: str, batch: int = JOB_BATCH) -> list[str]:
    return [sys.executable, "-m", "fer.evaluate", "--run", str(run_dir), "--tta", tta,
            "--batch-size", str(batch)]


def job_state(run_dir: Path, tta: str = "none", job: dict[str, Any] | None = None) -> str:
    """The state of the model's evaluation job for ``tta``: "" when there has been none; a job
    recorded as queued or running whose process is gone reads "stopped" when a stop was asked
    for, else "interrupted"."""
    from fer.tta import tta_mode

    folder, mode = RunFolder(run_dir), tta_mode(tta)
    job = folder.read_eval_job(mode) if job is None else job
    state = job.get("state", "")
    if state not in JOB_ACTIVE_STATES or lock_held(folder.eval_job_lock(mode)):
        return state
    pid = job.get("pid")
    if state == "queued" and (pid is None or pid_running(pid)) and \
            time.time() - (job.get("queued") or 0) < JOB_START_GRACE_S:
        return "queued"  # being started, or Python is still loading before the job takes its lock
    return "stopped" if folder.eval_stop_requested(mode) else "interrupted"


def read_job(run_dir: Path, tta: str = "none") -> dict[str, Any]:
    """job.json's values with the effective ``state`` ({} when the model has no job for ``tta``)."""
    from fer.tta import tta_mode

    mode = tta_mode(tta)
    job = RunFolder(run_dir).read_eval_job(mode)
    return {**job, "state": job_state(run_dir, mode, job)} if job else {}


def start_job(run_dir: Path, tta: str = "none", batch: int = JOB_BATCH) -> int:
    """Start evaluating the model of ``run_dir`` with ``tta`` in a background process (its own
    session and process group); returns its pid.

    A missing or damaged model file is refused here (ModelError), before any process starts;
    data problems end the job as failed, with the reason in job.json. Holding the evaluation's
    launch lock, it refuses (EvaluationJobError) while a job for the same model and mode is queued
    or running, so two clicks, or two server processes, never start two jobs.
    """
    from fer.predict import resolve_model_path
    from fer.tta import tta_mode

    run_dir, mode = Path(os.path.abspath(run_dir)), tta_mode(tta)
    folder = RunFolder(run_dir)
    resolve_model_path(run_dir)  # ModelError: no process for a model that cannot load
    folder.eval_dir(mode).mkdir(parents=True, exist_ok=True)
    with file_lock(folder.eval_launch_lock(mode)):
        state = job_state(run_dir, mode)
        if state in JOB_ACTIVE_STATES:
            raise EvaluationJobError(f"{run_dir.name} is already being evaluated with this "
                                     "test-time augmentation")
        folder.clear_eval_stop(mode)  # an old request must not stop the new job
        folder.write_eval_job(mode, replace=True, state="queued", queued=time.time(),
                              batch=0, batches=None)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            with open(folder.eval_log_file(mode), "ab") as log:
                process = subprocess.Popen(job_command(run_dir, mode, batch), cwd=PROJECT_ROOT,
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, env=env)
        except OSError as exc:
            folder.write_eval_job(mode, state="failed", error=f"could not start: {exc}", ended=time.time())
            raise
        folder.write_eval_job(mode, pid=process.pid)
    # Reap the child when it exits so no zombie is left behind in a long-lived server.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


def stop_job(run_dir: Path, tta: str = "none", wait: float = 0.0) -> bool:
    """Ask the evaluation job of ``tta`` to stop: a stop-requested file, then SIGTERM to the process
    holding its lock (and its process group). True if a job was asked to stop; with ``wait``,
    waits that many seconds for it to end."""
    from fer.tta import tta_mode
    from fer.workers import lock_file_holder, send_stop

    run_dir, mode = Path(run_dir), tta_mode(tta)
    folder = RunFolder(run_dir)
    if not folder.eval_dir(mode).is_dir():
        return False
    with file_lock(folder.eval_launch_lock(mode)):
        job = folder.read_eval_job(mode)
        if job_state(run_dir, mode, job) not in JOB_ACTIVE_STATES:
            return False
        folder.request_eval_stop(mode)  # read by a job that has not taken its lock yet
        holder = lock_file_holder(folder.eval_job_lock(mode), job.get("pid"), "fer.evaluate")
        if holder is not None and holder != os.getpid():
            send_stop(holder)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and lock_held(folder.eval_job_lock(mode)):
        time.sleep(0.1)
    return True


class _JobStop:
    """SIGTERM/SIGINT set the flag; while loading it stops the job at once, while predicting at
    the end of the batch in progress (``check``), and never while the results are written."""

    def __init__(self, folder: RunFolder, mode: str) -> None:
        self.folder, self.mode = folder, mode
        self.requested = False
        self.at_once = True

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.at_once:
            self.at_once = False
            raise JobStopped()

    def check(self) -> None:
        if self.requested or self.folder.eval_stop_requested(self.mode):
            self.at_once = False
            raise JobStopped()


def run_job(run_dir: Path, tta: str = "none", batch: int = JOB_BATCH) -> int:
    """Evaluate a run's model as a job (in this process): hold the evaluation's lock, record the
    state and progress in job.json, stop on request. Returns the exit code (JOB_EXIT)."""
    from fer.config import ConfigError
    from fer.data import DataError
    from fer.predict import ModelError
    from fer.tta import tta_mode

    run_dir, mode = Path(os.path.abspath(run_dir)), tta_mode(tta)
    folder = RunFolder(run_dir)
    if not run_dir.is_dir():
        print(f"error: {run_dir} is not a folder", file=sys.stderr)
        return JOB_EXIT["refused"]
    stop = _JobStop(folder, mode)
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    lock = None
    try:
        try:
            folder.eval_dir(mode).mkdir(parents=True, exist_ok=True)
            lock = _acquire(folder.eval_job_lock(mode))
            if lock is None:
                print(f"error: {run_dir.name} is already being evaluated with tta {mode}", file=sys.stderr)
                return JOB_EXIT["refused"]
            folder.write_eval_job(mode, state="running", pid=os.getpid(), started=time.time(), ended=None,
                                  error=None, phase="loading the model and the data")
            stop.check()  # stopped between the start and here
        except JobStopped:
            _end_job(folder, mode, "stopped", None)
            return JOB_EXIT["stopped"]
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return JOB_EXIT["refused"]

        def progress(done: int, total: int) -> None:
            if done == 0:
                stop.at_once = False
                folder.write_eval_job(mode, phase="predicting", predicting=time.time(), batch=0,
                                      batches=total)
            else:
                folder.write_eval_job(mode, batch=done)
            stop.check()
            if done == total:
                folder.write_eval_job(mode, phase="writing the results")

        state, error, code = "failed", "the evaluation ended unexpectedly", JOB_EXIT["failed"]
        try:
            summary = evaluate_run(run_dir, tta=mode, progress=progress, batch=batch)
            if mode == "none" and folder.status_file.is_file():
                folder.write_status(**summary)  # the results the worker would have recorded
            state, error, code = "finished", None, JOB_EXIT["finished"]
            print(json.dumps({"run": str(run_dir), "tta": mode, "eval_dir": str(eval_dir(run_dir, mode)),
                              **summary}, indent=2), flush=True)
        except JobStopped:
            state, error, code = "stopped", None, JOB_EXIT["stopped"]
            print("[fer] evaluation stopped", flush=True)
        except (DataError, ModelError, ConfigError, ValueError, OSError) as exc:
            state, error, code = "failed", str(exc), JOB_EXIT["refused"]
            print(f"error: {exc}", file=sys.stderr, flush=True)
        except MemoryError:
            error = "out of memory: try a smaller --batch-size"
        except Exception as exc:  # noqa: BLE001 - any failure must end as a 'failed' job
            error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        _end_job(folder, mode, state, error)
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if lock is not None:
            os.close(lock)


def _acquire(path: Path, timeout: float = 3.0) -> int | None:
    """An exclusive flock on ``path`` (kept until closed or the process exits), None if taken."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:  # a reader's momentary shared lock, or another job
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def _end_job(folder: RunFolder, mode: str, state: str, error: str | None) -> None:
    try:
        folder.write_eval_job(mode, state=state, error=error, ended=time.time(), phase=None)
    except OSError as exc:
        print(f"[fer] could not record the end of the evaluation ({exc}); it will show as interrupted",
              file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from fer.tta import TTA_MODES

    parser = argparse.ArgumentParser(prog="python -m fer.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="",
                        help="a model.keras file or run folder (default: the shipped model)")
    parser.add_argument("--run", default="", help="evaluate this run folder's best model on its own data "
                        "and write its eval/ folder (for stopped runs)")
    parser.add_argument("--data", default="",
                        help="dataset folder, .tar.gz or fer2013.csv "
                             "(default: FER_DATA or data/ in the project)")
    parser.add_argument("--split", default="private", help="private (test), public (val) or train")
    parser.add_argument("--tta", default="none", choices=list(TTA_MODES),
                        help="test-time augmentation: "
                        + "; ".join(f"{k} = {v}" for k, v in TTA_MODES.items()))
    parser.add_argument("--output", default="", help="also write the JSON to this file")
    parser.add_argument("--detach", action="store_true",
                        help="with --run: evaluate in the background and return (the Evaluate page "
                             "shows its progress and can stop it)")
    parser.add_argument("--batch-size", type=int, default=JOB_BATCH,
                        help=f"with --run: faces per batch, the unit of progress (default {JOB_BATCH})")
    args = parser.parse_args(argv)

    from fer.data import DataError, load_dataset
    from fer.predict import ModelError, Predictor

    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.detach and not args.run:
        parser.error("--detach needs --run")
    if args.run:
        if args.detach:
            try:
                pid = start_job(Path(args.run), args.tta, args.batch_size)
            except (ModelError, EvaluationJobError, ValueError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"evaluating in the background (pid {pid}); log: "
                  f"{RunFolder(args.run).eval_log_file(args.tta)}")
            return 0
        return run_job(Path(args.run), args.tta, args.batch_size)
    split_name = SPLIT_ALIASES.get(args.split.lower())
    if split_name is None:
        parser.error(f"--split {args.split!r} is unknown; use private, public or train")
    try:
        # A missing, damaged or non-regular model file, or one whose outputs are not probabilities
        # (NaN weights), is a ModelError: one line on stderr and exit code 2, as for bad data.
        predictor = Predictor.load(args.model or None)
        dataset = load_dataset(args.data or None)
    except (DataError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    split = dataset.split(split_name)
    probs = predictor.predict_faces(split.images, tta=args.tta)
    result = {"model": str(predictor.path), "data": str(dataset.source), "split": split_name,
              "split_description": {"val": dataset.val_description, "test": dataset.test_description,
                                    "train": "train/"}[split_name],
              "tta": args.tta, **metrics(split.labels, probs)}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
