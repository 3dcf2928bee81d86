"""Export a model as .keras, TensorFlow SavedModel, LiteRT (.tflite) or ONNX, each verified by
loading it back with its own runtime and comparing its predictions with the Keras model's.

Conversions use Keras' ``model.export`` (SavedModel; LiteRT through TensorFlow's converter; ONNX
through tf2onnx) and so need TensorFlow, whatever backend trained the model: a .keras file loads
on any backend. The .keras export is an inference copy (no optimizer state) and works without
TensorFlow. Exports run on the CPU in a process of their own, so the dashboard stays usable:

    python -m fer.export --run <run id, run folder or "default"> --format onnx|tflite|savedmodel|keras|all
                         [--out DIR] [--faces N]

Without ``--out`` the files go to the model's export folder (``<run>/export/``, the one the pages
show) and job.json there follows the export; with ``--out`` they go to DIR.

``stop_export`` (the pages' Stop button) ends such a job within a second, even inside a
conversion: the formats already exported and checked stay, the one in progress is dropped (each is
written to a staging folder and moved in with a rename), and the job reads "stopped".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer import IMAGE_SIZE, PROJECT_ROOT
from fer.run_folder import ExportFolder, RunError, file_lock, lock_held
from fer.signals import STOP_SIGNALS, StopSignals
from fer.workers import lock_file_holder, pid_running, send_stop

ACTIVE = ("queued", "running")
# How long a started export process may take to take its lock before it reads as failed.
START_GRACE_S = 120
# The largest difference between an export's probabilities and the Keras model's that still counts
# as the same model (float32 conversions differ by about 1e-6).
VERIFY_TOLERANCE = 1e-3
# Real test faces the exports are checked on (an even sample of PrivateTest), and how many go
# through a runtime at once.
VERIFY_FACES = 1000
VERIFY_BATCH = 256
SYNTHETIC_NOTE = "synthetic faces (FER2013 was not found: set FER_DATA to verify on real faces)"


@dataclass(frozen=True)
class ExportFormat:
    name: str
    title: str
    file: str  # what the export writes (a folder for SavedModel)
    download: str  # the single file offered for download
    runtime: str  # what loads it back for the check
    needs_tensorflow: bool = True


FORMATS: dict[str, ExportFormat] = {
    "keras": ExportFormat("keras", "Keras (.keras)", "model.keras", "model.keras",
                          "keras.saving.load_model", needs_tensorflow=False),
    "savedmodel": ExportFormat("savedmodel", "TensorFlow SavedModel (.zip)", "saved_model",
                               "saved_model.zip", "tf.saved_model.load"),
    "tflite": ExportFormat("tflite", "LiteRT (.tflite)", "model.tflite", "model.tflite",
                           "LiteRT Interpreter"),
    "onnx": ExportFormat("onnx", "ONNX (.onnx)", "model.onnx", "model.onnx", "ONNX Runtime"),
}
ALL = "all"


class ExportError(ValueError):
    """An export that cannot be done (no model, no TensorFlow, one already running, bad folder)."""


Progress = Callable[[str, int, int], None]  # (phase, step, steps)
Runner = Callable[[np.ndarray], np.ndarray]  # a batch of faces (n, 48, 48, 1) -> probabilities (n, 7)


# ---- where exports live, and their state (no framework import) ---------------------------------

def export_folder(model_dir: Path) -> ExportFolder:
    """``<run>/export/``; the shipped model's exports go to the cache (the package stays as shipped)."""
    import fer
    from fer.data import cache_dir

    model_dir = Path(model_dir)
    if model_dir.resolve() == Path(fer.DEFAULT_MODEL_DIR).resolve():
        return ExportFolder(cache_dir() / "exports" / "default_model")
    return ExportFolder.of_run(model_dir)


def parse_formats(value: str) -> list[str]:
    """The formats of ``--format``: one name or "all"."""
    if value == ALL:
        return list(FORMATS)
    if value not in FORMATS:
        raise ExportError(f"--format {value!r} is unknown; use {', '.join(FORMATS)} or {ALL}")
    return [value]


def model_stamp(model_file: Path) -> str:
    """Size and modification time of a model file: an export made from another stamp is stale."""
    try:
        info = os.stat(model_file)
    except OSError:
        return ""
    return f"{info.st_size}:{info.st_mtime_ns}"


def job_state(folder: ExportFolder, job: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(the state to show, job.json): an active job whose process is gone reads "failed"."""
    job = folder.read_job() if job is None else job
    state = job.get("state", "none")
    if state not in ACTIVE or lock_held(folder.lock):
        return state, job
    # Queued: the process is starting (its pid is written just after it is spawned).
    pid = job.get("pid")
    starting = time.time() - (job.get("queued") or 0) < START_GRACE_S
    if state == "queued" and starting and (pid is None or pid_running(pid)):
        return state, job
    return "failed", {**job, "error": job.get("error") or "the export process ended unexpectedly; "
                      "its log says why"}


def start_export(model_dir: Path, formats: list[str]) -> int:
    """Start exporting ``model_dir``'s model.keras to ``formats`` in a background process writing
    to its export folder; returns the pid. Refuses while an export of the model runs."""
    from fer.predict import ModelError, resolve_model_path

    model_dir = Path(model_dir)
    try:
        resolve_model_path(model_dir)
    except ModelError as exc:
        raise ExportError(str(exc)) from None
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    folder = export_folder(model_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    with file_lock(folder.launch_lock):
        state, _ = job_state(folder)
        if state in ACTIVE or lock_held(folder.lock):
            # lock_held: an export from the command line (python -m fer.export --run) holds the
            # folder's lock before its job file says so; a second one would be dropped silently.
            raise ExportError("an export of this model is already running; wait for it to finish")
        folder.write_job(state="queued", queued=time.time(), pid=None, formats=formats, error=None,
                         phase="starting", step=0, steps=None, started=None, ended=None,
                         stop_requested=None)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-m", "fer.export", "--run", str(model_dir.resolve()),
                   "--format", ",".join(formats)]
        try:
            with open(folder.log_file, "ab") as log:
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True, env=env)
        except OSError as exc:
            folder.write_job(state="failed", ended=time.time(), phase=None,
                             error=f"the export process could not start: {exc.strerror or exc}")
            raise ExportError(f"the export process could not start: {exc.strerror or exc}") from None
        folder.write_job(pid=process.pid, queued=time.time())
    # Reap the child when it exits so no zombie is left behind in a long-lived server.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


def stop_export(model_dir: Path, wait: float = 0.0) -> bool:
    """Ask the running (or starting) export of ``model_dir`` to stop: ``stop_requested`` in its
    job.json, then SIGTERM to the process holding its lock. True if an export was asked to stop;
    with ``wait``, waits that many seconds for it to end."""
    folder = export_folder(Path(model_dir))
    if not folder.path.is_dir():
        return False
    with file_lock(folder.launch_lock):
        state, job = job_state(folder)
        if state not in ACTIVE:
            return False
        folder.write_job(stop_requested=time.time())  # read by a process not holding its lock yet
        holder = lock_file_holder(folder.lock, job.get("pid"), "fer.export")
        if holder is not None and holder != os.getpid():
            send_stop(holder)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and lock_held(folder.lock):
        time.sleep(0.1)
    return True


class _StopOnSignal(threading.Thread):
    """Ends the export process when SIGTERM or SIGINT arrives, whatever the main thread is doing
    (a conversion is one long call that a Python signal handler would wait for): it records the
    job as stopped and exits, but never while a finished format is moved into place (``moving``)."""

    def __init__(self, folder: ExportFolder) -> None:
        super().__init__(name="export-stop", daemon=True)
        self.folder = folder
        self.moving = threading.Lock()
        self.signals = StopSignals()

    def start(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda *_: None)  # the thread below does the work
        self.signals.install()
        super().start()

    def run(self) -> None:
        self.signals.wait()
        with self.moving:  # held for good: the process ends here
            _remove_leftovers(self.folder.path)  # the format being converted: never moved in
            _record_stop(self.folder)
            print("[fer] export stopped", flush=True)
            os._exit(3)


def _record_stop(folder: ExportFolder) -> None:
    with contextlib.suppress(OSError):
        folder.write_job(state="stopped", ended=time.time(), phase=None, error=None)


# ---- test faces ------------------------------------------------------------------------------

def synthetic_faces(count: int) -> np.ndarray:
    """``count`` deterministic 48x48 grayscale images: smooth random shading plus fine noise, so
    every layer of a model sees varied input."""
    from PIL import Image

    rng = np.random.default_rng(0)
    faces = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8), mode="L")
        smooth = np.asarray(coarse.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC), np.float32)
        faces[i] = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    return faces


def verification_faces(model_dir: Path, count: int = VERIFY_FACES) -> tuple[np.ndarray, str]:
    """(faces, where they come from): an even sample of ``count`` test faces (PrivateTest) of the
    model's dataset, or of the default dataset (FER_DATA or data/); synthetic faces when there is
    none. ``count`` 0 takes every test face."""
    from fer.data import DataError, load_dataset
    from fer.ensemble import is_ensemble, read_manifest
    from fer.run_folder import RunFolder

    settings = (read_manifest(model_dir).get("data") or {}) if is_ensemble(model_dir) else \
        (RunFolder(model_dir).read_config_values() or {})
    configured = settings.get("data") or None
    locations = [configured, None] if isinstance(configured, str) else [None]
    for location in locations:
        try:
            dataset = load_dataset(location)
        except (DataError, OSError):
            continue
        test = dataset.test
        take = len(test) if count <= 0 else min(count, len(test))
        index = np.unique(np.linspace(0, len(test) - 1, take).round().astype(int))
        return test.images[index], f"{len(index)} real test faces: {dataset.test_description}"
    count = count if count > 0 else VERIFY_FACES
    return synthetic_faces(count), f"{count} {SYNTHETIC_NOTE}"


# ---- exporting and checking (in the export process) -----------------------------------------

def _in_batches(run: Callable[[np.ndarray], np.ndarray], faces: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(run(faces[i:i + VERIFY_BATCH]), dtype=np.float32)
                           for i in range(0, len(faces), VERIFY_BATCH)])


def float32_model(model):
    """The model with every layer computing in float32: a mixed-precision model is rebuilt from
    its config with float32 layers and given the same weights (ONNX export wants float32)."""
    def plain(value):
        if isinstance(value, dict):
            if str(value.get("config", {}).get("name", "")).startswith("mixed_"):
                return "float32"  # a DTypePolicy such as mixed_float16
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    config = model.get_config()
    float32_config = plain(config)
    if float32_config == config:
        return model
    rebuilt = model.__class__.from_config(float32_config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _write_keras(model, path: Path) -> None:
    model.save(path)


def _keras_runner(path: Path) -> Runner:
    import keras

    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    return lambda batch: loaded(batch, training=False)


def _write_savedmodel(model, path: Path) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)
    _zip_folder(path, path.parent / FORMATS["savedmodel"].download)


def _savedmodel_runner(path: Path) -> Runner:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return lambda batch: loaded.serve(tf.constant(batch)).numpy()


def _write_tflite(model, path: Path) -> None:
    model.export(str(path), format="litert", verbose=False)


def _tflite_interpreter(path: Path):
    """LiteRT's own interpreter (ai-edge-litert), else TensorFlow's copy of it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806 - a class
    return Interpreter(model_path=str(path))


def _tflite_runner(path: Path) -> Runner:
    interpreter = _tflite_interpreter(path)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    shape: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        if list(batch.shape) != shape:  # the batch size is dynamic: resize only when it changes
            interpreter.resize_tensor_input(source["index"], list(batch.shape))
            interpreter.allocate_tensors()
            shape[:] = batch.shape
        interpreter.set_tensor(source["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"]).copy()

    return run


def _write_onnx(model, path: Path) -> None:
    import logging

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    model.export(str(path), format="onnx", verbose=False)


def _onnx_runner(path: Path) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


WRITERS = {"keras": _write_keras, "savedmodel": _write_savedmodel, "tflite": _write_tflite,
           "onnx": _write_onnx}
RUNNERS: dict[str, Callable[[Path], Runner]] = {
    "keras": _keras_runner, "savedmodel": _savedmodel_runner, "tflite": _tflite_runner,
    "onnx": _onnx_runner}


def load_export(fmt: str, path: Path) -> Runner:
    """An exported file (or SavedModel folder) loaded with its own runtime: a function from a batch
    of faces (n, 48, 48, 1) float32, raw 0-255 pixels, to probabilities (n, 7)."""
    return RUNNERS[fmt](Path(path))


def _zip_folder(folder: Path, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, Path(folder.name) / path.relative_to(folder))


def _move_into(staging: Path, out_dir: Path, fmt: ExportFormat) -> None:
    """Replace ``out_dir``'s files of ``fmt`` with the staged ones, each with one rename."""
    if fmt.download != fmt.file:
        os.replace(staging / fmt.download, out_dir / fmt.download)
    target = out_dir / fmt.file
    if (staging / fmt.file).is_dir():
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".old-{fmt.name}-"))
            os.replace(target, old / fmt.file)
        os.replace(staging / fmt.file, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging / fmt.file, target)


def export_one(model, fmt: str, out_dir: Path, faces: np.ndarray, reference: np.ndarray,
               faces_source: str, stamp: str, moving: threading.Lock | None = None) -> dict[str, Any]:
    """Export ``model`` as ``fmt`` into ``out_dir``, check it on ``faces`` against ``reference``
    (the Keras model's probabilities) and return the result; a failure is a result with an error.
    The files are written to a staging folder and moved in only once they load and run."""
    spec = FORMATS[fmt]
    result: dict[str, Any] = {"faces": len(faces), "faces_source": faces_source, "runtime": spec.runtime,
                              "model_stamp": stamp, "verified": False}
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".staging-{fmt}-"))
    try:
        started = time.perf_counter()
        WRITERS[fmt](model, staging / spec.file)
        result["export_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        probabilities = _in_batches(load_export(fmt, staging / spec.file), faces)
        result["verify_s"] = round(time.perf_counter() - started, 2)
        if probabilities.shape != reference.shape:
            raise ExportError(f"the {spec.title} export gives outputs of shape {probabilities.shape}, "
                              f"expected {reference.shape}")
        difference = float(np.abs(probabilities - reference).max())
        agreement = float((probabilities.argmax(axis=1) == reference.argmax(axis=1)).mean())
        result.update(max_abs_diff=difference, agreement=agreement,
                      verified=bool(np.isfinite(difference) and difference <= VERIFY_TOLERANCE))
        if not result["verified"]:
            result["error"] = (f"its probabilities differ from the Keras model's by up to {difference:.2g} "
                               f"(more than {VERIFY_TOLERANCE:g})")
        with moving or contextlib.nullcontext():
            _move_into(staging, out_dir, spec)
        result["bytes"] = (out_dir / spec.download).stat().st_size
    except Exception as exc:  # noqa: BLE001 - converters raise many types; the message is recorded
        traceback.print_exc()
        result["error"] = _first_line(exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result["ended"] = time.time()
    return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:500]}" if text else type(exc).__name__


def _activate_backend(formats: list[str]) -> None:
    """TensorFlow for the conversions (a .keras file loads on any backend); the CPU only."""
    from fer.backends import BackendError, activate, default_backend, installed_backends

    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # never compete with training for a GPU
    need_tf = any(FORMATS[fmt].needs_tensorflow for fmt in formats)
    if "tensorflow" in installed_backends():
        backend = "tensorflow"
    elif need_tf:
        titles = ", ".join(FORMATS[fmt].title for fmt in formats if FORMATS[fmt].needs_tensorflow)
        raise ExportError(f"exporting {titles} needs TensorFlow, which is not installed here; "
                          "install it with pip install -r requirements.txt")
    else:
        backend = default_backend()
    try:
        activate(backend)
    except BackendError as exc:
        raise ExportError(str(exc)) from None


def export_model(model_dir: Path, formats: list[str], out_dir: Path, faces: int = VERIFY_FACES,
                 progress: Progress | None = None,
                 on_result: Callable[[str, dict[str, Any]], None] | None = None,
                 moving: threading.Lock | None = None) -> dict[str, Any]:
    """Export ``model_dir``'s model.keras to each of ``formats`` in ``out_dir`` and check each.

    Returns {"model", "out", "faces", "faces_source", "results": {format: result}}; raises
    ExportError (or fer.predict.ModelError) when the model cannot be loaded at all. ``moving`` is
    held while a format's files are moved into ``out_dir`` and its result is reported.
    """
    moving = moving or threading.Lock()
    progress = progress or (lambda phase, step, steps: None)
    steps = 2 + len(formats)
    _activate_backend(formats)
    from fer.predict import Predictor

    progress("loading the model", 0, steps)
    predictor = Predictor.load(model_dir)  # checks the file and that it gives probabilities
    stamp = model_stamp(predictor.path)
    model = float32_model(predictor.model)
    progress("loading test faces", 1, steps)
    face_images, faces_source = verification_faces(Path(model_dir), faces)
    batch = face_images.astype(np.float32)[..., None]
    reference = predictor.predict_faces(face_images)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for number, fmt in enumerate(formats):
        progress(f"exporting and checking {FORMATS[fmt].title}", 2 + number, steps)
        results[fmt] = export_one(model, fmt, out_dir, batch, reference, faces_source, stamp, moving)
        if on_result:
            with moving:
                on_result(fmt, results[fmt])
    progress("done", steps, steps)
    return {"model": str(predictor.path), "out": str(out_dir), "faces": len(batch),
            "faces_source": faces_source, "results": results}


def run_job(model_dir: Path, formats: list[str], faces: int = VERIFY_FACES,
            stoppable: bool = False) -> dict[str, Any]:
    """``export_model`` into the model's export folder, holding its lock and recording progress
    and results in its job.json (what the pages show). ``stoppable`` (a process of its own):
    SIGTERM and SIGINT end the process at once, the job recorded as stopped."""
    import fcntl

    folder = export_folder(model_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ExportError("an export of this model is already running; wait for it to finish") from None
    try:
        _remove_leftovers(folder.path)
        job = folder.read_job()
        if job.get("stop_requested") and job.get("state") in ACTIVE:
            _record_stop(folder)  # stopped before it began
            return {"model": str(model_dir), "out": str(folder.path), "stopped": True, "results": {}}
        stopper = _StopOnSignal(folder)
        if stoppable:
            stopper.start()
        old = job.get("results", {})
        folder.write_job(state="running", pid=os.getpid(), started=time.time(), ended=None, error=None,
                         formats=formats, results={k: v for k, v in old.items() if k not in formats})
        try:
            summary = export_model(
                model_dir, formats, folder.path, faces,
                progress=lambda phase, step, steps: folder.write_job(phase=phase, step=step, steps=steps),
                on_result=folder.write_result, moving=stopper.moving)
        except Exception as exc:  # noqa: BLE001 - recorded for the page, then re-raised for the log
            folder.write_job(state="failed", ended=time.time(), error=_error_text(exc), phase=None)
            raise
        failed = [FORMATS[fmt].title for fmt, result in summary["results"].items() if result.get("error")]
        folder.write_job(state="failed" if failed else "finished", ended=time.time(), phase=None,
                         error=f"not exported: {', '.join(failed)}" if failed else None)
        return summary
    finally:
        os.close(fd)


def _remove_leftovers(out_dir: Path) -> None:
    """Staging folders of an export that was stopped or killed while converting."""
    for path in out_dir.glob(".staging-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in out_dir.glob(".old-*"):
        shutil.rmtree(path, ignore_errors=True)


def _error_text(exc: BaseException) -> str:
    from fer.predict import ModelError

    return str(exc) if isinstance(exc, (ExportError, ModelError)) else _first_line(exc)


# ---- command line ----------------------------------------------------------------------------

def resolve_run(value: str) -> Path:
    """The model folder for ``--run``: "default" (the shipped model), a run id or a folder."""
    import fer
    from fer.runs import is_run_id, run_path

    if value == "default":
        return Path(fer.DEFAULT_MODEL_DIR)
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    if is_run_id(value):
        with contextlib.suppress(RunError):
            candidate = run_path(value)
            if candidate.is_dir():
                return candidate
    raise ExportError(f"--run {value!r} is neither a folder nor a run id of the experiments folder "
                      "(nor \"default\" for the shipped model)")


def _check_out(value: str) -> Path:
    out = Path(value).expanduser()
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {value!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out {value!r} cannot be created: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise ExportError(f"--out {value!r} is not writable")
    return out


def _record_refusal(run: str, error: str) -> None:
    """Fail the job the dashboard queued for this process (it never got to run) with ``error``."""
    with contextlib.suppress(ExportError, OSError):
        folder = export_folder(resolve_run(run))
        job = folder.read_job()
        if job.get("state") == "queued" and job.get("pid") == os.getpid():
            folder.write_job(state="failed", ended=time.time(), error=error, phase=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer.export", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True,
                        help='a run id, a run or model folder, or "default" for the shipped model')
    parser.add_argument("--format", default=ALL,
                        help=f"{', '.join(FORMATS)} or {ALL} (several: comma-separated)")
    parser.add_argument("--out", default="", help="write the files here (default: the model's export "
                        "folder, <run>/export/, which the dashboard shows)")
    parser.add_argument("--faces", type=int, default=VERIFY_FACES,
                        help="test faces to verify each export on (0: every test face)")
    args = parser.parse_args(argv)

    from fer.predict import ModelError, resolve_model_path

    try:
        formats = [fmt for part in args.format.split(",") for fmt in parse_formats(part.strip())]
        formats = list(dict.fromkeys(formats))
        if args.faces < 0:
            raise ExportError(f"--faces {args.faces} is negative; use 0 for every test face or a count")
        model_dir = resolve_run(args.run)
        out = _check_out(args.out) if args.out else None
        resolve_model_path(model_dir)
        if out is not None:
            summary = export_model(model_dir, formats, out, args.faces)
        else:
            summary = run_job(model_dir, formats, args.faces, stoppable=True)
    except (ExportError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _record_refusal(args.run, str(exc))
        return 2
    print(json.dumps(summary, indent=2))
    if summary.get("stopped"):
        return 3
    return 1 if any(result.get("error") for result in summary["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
