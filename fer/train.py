"""The training worker process and its CLI (the recipe it trains with: ``fer.recipe``).

    python -m fer.train --run-dir experiments/<id>        # train a prepared run (what the UI starts)
    python -m fer.train --architecture mini_xception --epochs 30 --data path/to/fer2013
                                                          # create a run from flags and train it here
    python -m fer.train --architecture mini_xception --detach   # the same, in the background
    python -m fer.train --preset quick_trial              # a real model in a few minutes on a CPU

The worker writes status.json in a ``finally`` block, so every run ends as finished, failed or
stopped; SIGTERM (sent by ``fer.workers.stop`` with a ``stop-requested`` file) stops it cleanly at the
next batch of training or validation (an epoch whose validation is cut short is trained again), or
at once while it loads data or evaluates, and a later start resumes from the last completed epoch
with the optimizer state (Keras BackupAndRestore). A call into the backend cannot be interrupted;
when one keeps the worker from stopping for ``STOP_GRACE_S``, a watchdog thread records the run as
stopped and ends the process (never while an epoch is being saved). status.json's ``training_s`` adds up the
training time of every worker of the run.

A worker that crashes inside native code (a segmentation fault in a backend or in HDF5 when the
disk fills while a checkpoint is written) cannot write its own status: the worker process forks
before it imports a backend, and the parent, which only waits, records such a crash as a failed
run with the signal, the phase it happened in and, when the run's disk is full, that reason. A
worker the kernel's out-of-memory killer ends (SIGKILL, counted in /proc/vmstat) is recorded as
failed for lack of memory; any other SIGKILL leaves the run "interrupted", as a killed machine does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fer.architectures import ARCHITECTURES
from fer.backends import BackendError
from fer.config import PARAMETERS, PRESETS, ConfigError, TrainConfig
from fer.data import DataError, resolve_location
from fer.devices import (
    DeviceError,
    make_deterministic,
    mixed_precision_note,
    mixed_precision_policy,
    open_devices,
    prepare_process,
    training_scope,
)
from fer.recipe import FilesLock
from fer.run_folder import ACTIVE_STATES, RunError, RunFolder, check_resumable_config
from fer.runs import create_run, run_path
from fer.signals import StopSignals
from fer.workers import acquire_lock, launch

# How often a worker looks for a stop request on disk (a signal stops it at once).
STOP_FILE_CHECK_S = 0.5
# How long a stop may wait for the worker to reach its next safe point (a batch end) before the
# watchdog ends the process: Stop promises 5 s, and a busy CPU makes one call into the backend
# (the first epoch's tracing and compiling, a validation call) take longer than that.
STOP_GRACE_S = 2.0


class RunStopped(Exception):
    """Raised at a safe point after a stop was requested."""


class _StopFlag:
    """SIGTERM/SIGINT set the flag. Inside ``model.fit`` the run stops at the next batch (so the
    epoch's files stay consistent); outside it (loading data, building, evaluating) at once."""

    def __init__(self, folder: RunFolder | None = None) -> None:
        self.folder = folder
        self.requested = False
        self.in_fit = False
        self.training_done = False  # fit has ended: a stop now skips the evaluation
        # Held while the run's files are written during training (``fer.recipe.callbacks``).
        self.files_lock = FilesLock()
        self._next_file_check = 0.0

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        if not self.in_fit:
            raise RunStopped()

    def check(self) -> None:
        # The stop-requested file backs up the signal (e.g. one sent before the handler existed).
        now = time.monotonic()
        if not self.requested and self.folder is not None and now >= self._next_file_check:
            self._next_file_check = now + STOP_FILE_CHECK_S
            self.requested = self.folder.stop_requested() is not None
        if self.requested:
            raise RunStopped()


class _StopWatchdog(threading.Thread):
    """Ends a worker that a stop cannot reach in time.

    Python runs a signal handler only between bytecodes, so while the main thread is inside one
    long call into TensorFlow or JAX (tracing or compiling a step on a busy CPU) the stop waits for
    it. This thread learns of the signal at once (``signal.set_wakeup_fd``) or of the stop file
    within ``STOP_FILE_CHECK_S``; if the worker has not ended ``STOP_GRACE_S`` later, it takes the
    files lock (so an epoch's save is never cut short), records the run as stopped with ``end``
    and exits the process. The interrupted epoch is not recorded, as with a stop at a batch end;
    the run resumes from its last completed epoch. After training (the final evaluation) it does
    nothing: there the signal handler stops the worker.
    """

    def __init__(self, folder: RunFolder, stop: _StopFlag, end: Callable[[dict[str, Any]], bool]) -> None:
        super().__init__(name="stop-watchdog", daemon=True)
        self.folder, self.stop, self.end = folder, stop, end
        self.signals = StopSignals()

    def start(self) -> None:
        self.signals.install()
        super().start()

    def run(self) -> None:
        while not self.signals.wait(STOP_FILE_CHECK_S):
            with contextlib.suppress(OSError):
                if self.folder.stop_requested() is not None:
                    break
        asked = time.monotonic()
        print(f"[fer] stop requested at {time.strftime('%H:%M:%S')} "
              f"(phase: {self.folder.read_progress().get('phase', '?')})", flush=True)
        time.sleep(max(0.0, asked + STOP_GRACE_S - time.monotonic()))
        if self.stop.training_done:
            return
        with self.stop.files_lock:  # never held by anyone again: the process ends here
            if self.stop.training_done:
                return  # training ended meanwhile: the signal handler stops the evaluation
            status = _stopped_status(self.folder, self.stop)
            if not self.end(status):
                return  # the worker is already writing its final status itself
            print(f"[fer] stopped {time.monotonic() - asked:.1f} s after the request, before the worker "
                  "could stop by itself; the run resumes from its last completed epoch", flush=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)


def _stopped_status(folder: RunFolder, stop: _StopFlag) -> dict[str, Any]:
    status = {"state": "stopped", "error": None, "stop_requested": folder.stop_requested() or time.time()}
    if stop.training_done:
        status.update(state="finished", note=(
            "stopped during the evaluation: training is complete and model.keras holds the best "
            f"epoch; evaluate it with: python -m fer.evaluate --run {folder.path}"))
    return status


def train_run(folder: RunFolder, stop: _StopFlag) -> dict[str, Any]:
    """Train (or resume) the run in ``folder``; returns the evaluation summary."""
    from fer.data import load_dataset

    config = folder.read_config()
    if folder.completed_epochs():
        # Resuming: the saved weights and optimizer state belong to the settings they were made with.
        check_resumable_config(folder.path)
    else:
        folder.write_checkpoint_config(config)
    folder.write_status(phase="loading data")
    folder.write_progress(phase="loading data")
    print(f"[fer] loading dataset {config.data or '(default location)'}", flush=True)
    dataset = load_dataset(config.data or None, config.validation_split, config.seed,
                           config.max_train_samples)
    for warning in dataset.warnings:
        print(f"[fer] warning: {warning}", flush=True)
    folder.write_status(data_source=str(dataset.source), train_size=len(dataset.train),
                        val_size=len(dataset.val), test_size=len(dataset.test),
                        val_description=dataset.val_description,
                        test_description=dataset.test_description)
    if config.batch_size > len(dataset.train):
        raise ConfigError([f"batch_size={config.batch_size} is larger than the training set "
                           f"({len(dataset.train)} images)"])
    stop.check()

    folder.write_status(phase="building model")
    prepare_process(config)
    import keras

    from fer.models import VGG16_WEIGHTS
    from fer.pipeline import evaluation_batches, training_batches
    from fer.recipe import callbacks, class_weights, training_model, validation_batch_size

    device = open_devices(config)
    folder.write_status(backend=keras.backend.backend(), device=device)
    print(f"[fer] Keras {keras.__version__} on {keras.backend.backend()}, {device}", flush=True)
    make_deterministic(config)
    if config.mixed_precision:
        # bfloat16 needs no loss scaling; TensorFlow GPUs want float16, CPUs bfloat16 where they
        # have instructions for it (fer.devices.mixed_precision_policy).
        gpu = not device.endswith(" x cpu")
        policy = mixed_precision_policy(keras.backend.backend(), gpu)
        print(f"[fer] mixed precision: {mixed_precision_note(keras.backend.backend(), gpu)}", flush=True)
        if policy:
            keras.mixed_precision.set_global_policy(policy)
    if config.architecture == "vgg16_transfer" and not VGG16_WEIGHTS.is_file():
        print(f"[fer] note: no ImageNet weights at {VGG16_WEIGHTS}; nothing is frozen and VGG16 "
              "trains from scratch", flush=True)
    done = folder.completed_epochs()
    train_data = training_batches(
        dataset.train.images, dataset.train.labels, config.batch_size, config.seed, first_epoch=done,
        class_weights=class_weights(dataset.train.labels) if config.class_weights else None)
    steps = len(train_data)
    val_data = evaluation_batches(dataset.val.images, dataset.val.labels,
                                  validation_batch_size(config, steps), multiple_of=config.devices)
    with training_scope(config):
        model = training_model(config, steps)

    folder.keep_history(done)
    history = folder.read_history()
    best_so_far = float(history["val_accuracy"].max()) if not history.empty else None
    if done:
        print(f"[fer] resuming after epoch {done}", flush=True)
        if not zipfile.is_zipfile(folder.model_file):
            # Left by an older version killed mid-save (saves are atomic now): without this, no
            # epoch below the recorded best would replace it and the run would end unusable.
            print("[fer] note: model.keras is missing or damaged; it will hold the best network "
                  "of the epochs trained from here on", flush=True)
            best_so_far = None
    folder.write_status(phase="training", epochs_done=done)
    stop.check()
    stop.in_fit = True
    with training_scope(config):
        model.fit(train_data, validation_data=val_data, epochs=config.epochs, verbose=2,
                  callbacks=callbacks(folder, config, stop.check, steps, best_so_far, stop.files_lock))
    # Training is complete and Keras has deleted the resume backup: a stop from here on ends the
    # run as finished (its best model is saved) and skips the evaluation instead of waiting for it.
    stop.in_fit = False
    stop.training_done = True
    stop.files_lock.end_save()  # held since the last epoch's save began
    stop.check()

    folder.write_status(phase="evaluating")
    folder.update_progress(phase="evaluating")
    from fer.evaluate import evaluate_run, one_class_warning, read_evaluation

    summary = evaluate_run(folder.path, dataset)
    evaluation = read_evaluation(folder.path)
    hint = one_class_warning(evaluation) if evaluation else None
    if hint:
        print(f"[fer] warning: {hint}", flush=True)
    return summary


# How long a new worker waits for the run's lock: a stopped worker writes its final status and
# then takes a few seconds to exit, and a Resume clicked in that window must still start.
LOCK_WAIT = 30.0


def run_worker(run_dir: Path, watchdog: bool = False) -> int:
    """Entry point of a worker process. Exit codes: 0 finished, 1 failed, 2 refused, 3 stopped.

    ``watchdog`` (a worker process of its own: it may end the process, see ``_StopWatchdog``)."""
    run_dir = Path(os.path.abspath(run_dir))  # not resolved: a run folder may be a link
    folder = RunFolder(run_dir)
    if not _is_run(folder):
        return 2
    stop = _StopFlag(folder)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        lock = acquire_lock(run_dir, timeout=LOCK_WAIT)
    except RunStopped:
        print("[fer] stopped before training started", flush=True)
        return 3  # the status stays 'queued'; with the stop-requested file the run reads 'stopped'
    if lock is None:
        print(f"error: run {run_dir.name} is already being trained by another process", file=sys.stderr)
        return 2
    status: dict[str, Any] = {"state": "failed", "error": "the worker ended unexpectedly"}
    # The time of the earlier workers of this run (before a resume); this worker adds its own.
    trained_before = folder.training_seconds() or 0.0
    started = time.time()
    ending = threading.Lock()  # the final status is written once: by this thread or the watchdog

    def end(final: dict[str, Any]) -> bool:
        if not ending.acquire(blocking=False):
            return False
        final["training_s"] = trained_before + max(0.0, time.time() - started)
        _write_final_status(folder, final)
        os.close(lock)  # this run's slot is free: start the next run waiting in the queue
        _start_next(run_dir.parent)
        return True

    ended = False

    def finish(final: dict[str, Any]) -> None:
        nonlocal ended
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not end(final):
            # The stop watchdog is recording the run as stopped and ends the process.
            threading.Event().wait()
        ended = True

    if watchdog:
        _StopWatchdog(folder, stop, end).start()
    try:
        folder.write_status(state="running", pid=os.getpid(), started=started, ended=None,
                            error=None, stop_requested=None, note=None, training_s=trained_before)
        folder.write_progress(phase="starting")  # not the last worker's final phase
        stop.check()  # stopped between the launch and here
        summary = train_run(folder, stop)
        status = {"state": "finished", "error": None, **summary}
        print(f"[fer] finished: {summary}", flush=True)
    except RunStopped:
        status = _stopped_status(folder, stop)
        print(f"[fer] {status['state']} at {time.strftime('%H:%M:%S')} (stop requested)", flush=True)
        # Recorded here, while the exception is alive: leaving this block drops its traceback and
        # with it fit's data pipelines and threads, which takes seconds (tens on a busy CPU).
        finish(status)
        if watchdog:  # a worker process of its own: nothing is left to do
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)
    except (ConfigError, DataError, RunError, BackendError, DeviceError) as exc:
        status = {"state": "failed", "error": str(exc)}
        print(f"[fer] error: {exc}", flush=True)
    except MemoryError:
        status = {"state": "failed", "error": "out of memory: try a smaller batch size or model"}
    except OSError as exc:
        status = {"state": "failed", "error": f"{exc.strerror or exc}: {exc.filename or ''}".strip(": ")}
        with contextlib.suppress(OSError):  # the log may sit on the disk that is full
            traceback.print_exc()
    except Exception as exc:  # noqa: BLE001 - any failure must end as a 'failed' status
        status = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            traceback.print_exc()
    finally:
        if not ended:
            finish(status)
    return {"finished": 0, "stopped": 3}.get(status["state"], 1)


# Signals of a native crash: the worker could not record it, its supervising parent does.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE})
# Below this much free space on the run's disk, a crash is reported as a full disk.
DISK_FULL_BYTES = 1 << 20


def supervised_worker(run_dir: Path) -> int:
    """``run_worker`` in a child process, this process only waiting for it (see the module's
    docstring); SIGTERM and SIGINT are passed on to it. Exit codes as ``run_worker``'s; a crash
    gives 1. Where there is no fork (Windows) the worker runs here, unsupervised."""
    if not hasattr(os, "fork"):
        return run_worker(run_dir, watchdog=True)
    if not _is_run(RunFolder(Path(os.path.abspath(run_dir)))):
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    oom_kills = oom_kill_count()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            _tie_to_parent(parent)
            code = run_worker(run_dir, watchdog=True)
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    _, wait_status = os.waitpid(child, 0)  # retried after a signal (PEP 475)
    if not os.WIFSIGNALED(wait_status):
        return os.waitstatus_to_exitcode(wait_status)
    signum = os.WTERMSIG(wait_status)
    out_of_memory = signum == signal.SIGKILL and oom_kills is not None and (oom_kill_count() or 0) > oom_kills
    if signum in CRASH_SIGNALS or out_of_memory:
        _record_crash(Path(os.path.abspath(run_dir)), child, signum, out_of_memory)
    return 1


def oom_kill_count() -> int | None:
    """How many processes the kernel's out-of-memory killer has ended since boot (Linux 4.13+;
    None elsewhere). Another process killed at the same moment would count too: rare enough."""
    try:
        with open("/proc/vmstat") as vmstat:
            for line in vmstat:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _is_run(folder: RunFolder) -> bool:
    if folder.is_run():
        return True
    print(f"error: {folder.path} is not a run folder (no {folder.config_file.name})", file=sys.stderr)
    return False


def _tie_to_parent(parent: int) -> None:
    """In the worker (the child): lead a process group of its own, so that signalling the group
    of the pid in status.json reaches it, as for any worker; on Linux, die with the supervising
    parent (a kill of the parent's group must not leave the worker training on). A crash leaves
    no core file (gigabytes for a backend's process) in the folder it was started from."""
    import resource

    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _record_crash(run_dir: Path, child: int, signum: int, out_of_memory: bool = False) -> None:
    """The run as failed after its worker ``child`` died of ``signum`` (``out_of_memory``: killed
    by the kernel for lack of memory), unless it recorded an outcome itself (or another worker owns
    the run by now)."""
    folder = RunFolder(run_dir)
    status = folder.read_status()
    if status.get("state") not in ACTIVE_STATES or status.get("pid") not in (child, os.getpid()):
        return
    name = signal.Signals(signum).name
    phase = folder.read_progress().get("phase") or status.get("phase")
    if out_of_memory:
        error = "the worker ran out of memory: the kernel's out-of-memory killer ended it"
    else:
        error = f"the worker crashed ({name}, {signal.strsignal(signum) or 'signal'})"
    if phase:
        error += f" while {phase}"
    if out_of_memory:
        error += ("; a smaller batch size, fewer runs at once (Runs at once) or closing other "
                  "programs leaves it more")
    with contextlib.suppress(OSError):
        if shutil.disk_usage(run_dir).free < DISK_FULL_BYTES:
            error += f"; {os.strerror(errno.ENOSPC)} on the disk that holds the run"
    final: dict[str, Any] = {"state": "failed", "error": error}
    if status.get("started") is not None:  # its time up to the crash counts
        final["training_s"] = folder.training_seconds(status, live=True)
    _write_final_status(folder, final)
    with contextlib.suppress(OSError):
        print(f"[fer] error: {error}; the run resumes from its last completed epoch", flush=True)
    _start_next(run_dir.parent)


def _start_next(root: Path) -> None:
    from fer.queue import dispatch

    try:
        dispatch(root)
    except Exception as exc:  # noqa: BLE001 - the run has ended; the dispatcher starts it later
        print(f"[fer] could not start the next queued run: {exc}", file=sys.stderr, flush=True)


def _write_final_status(folder: RunFolder, status: dict[str, Any]) -> None:
    """The run's outcome (and results) in status.json, recorded once, and progress.json no longer
    showing a live phase."""
    try:
        folder.write_status(**status, phase=None, ended=time.time())
    except OSError as exc:
        print(f"[fer] could not write {folder.status_file.name} ({exc}); the run will show as "
              "interrupted", file=sys.stderr, flush=True)
    folder.end_progress(status["state"])


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyperparameters (create a new run; defaults per architecture)")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        parameter = PARAMETERS[field.name]
        text = parameter.full_help.replace("%", "%%")
        choices = list(ARCHITECTURES) if field.name == "architecture" else list(parameter.choices) or None
        if field.type == "bool":
            group.add_argument(flag, dest=field.name, default=None, help=text,
                               action=argparse.BooleanOptionalAction)
        else:
            kind = {"int": int, "float": float}.get(field.type, str)
            group.add_argument(flag, dest=field.name, type=kind, default=None, help=text,
                               choices=choices)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer.train", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--run-dir", help="train (or resume) this prepared run folder")
    parser.add_argument("--experiments", help="where new runs are created (default: experiments/)")
    parser.add_argument("--name", help="run id for a new run (default: time-architecture-random)")
    parser.add_argument("--detach", action="store_true", help="train in the background and return")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="start from a preset's settings (quick_trial: mini_xception, 15,000 "
                             "faces, 6 epochs); other flags change them")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    if args.run_dir:
        return supervised_worker(Path(args.run_dir))
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
              if getattr(args, f.name) is not None}
    try:
        if args.preset:
            config = TrainConfig.for_preset(args.preset, **values)
        else:
            config = TrainConfig.for_architecture(values.pop("architecture", "mini_xception"), **values)
        if args.name:
            run_path(args.name, Path(args.experiments) if args.experiments else None)
        # The dataset is checked before a run folder exists: a wrong path leaves nothing behind.
        resolve_location(config.data or None)
        run_dir = create_run(config, Path(args.experiments) if args.experiments else None, args.name)
    except (ConfigError, RunError, DataError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"run: {run_dir}", flush=True)
    if args.detach:
        pid = launch(run_dir)
        log = RunFolder(run_dir).log_file
        if pid is None:
            from fer.queue import max_runs, queue_positions

            print(f"queued at position {queue_positions(run_dir.parent).get(run_dir.name, '?')}: "
                  f"{max_runs(run_dir.parent)} run(s) train at once here (FER_MAX_RUNS); it starts "
                  f"when one ends; log: {log}")
        else:
            print(f"training in the background (pid {pid}); log: {log}")
        return 0
    return supervised_worker(run_dir)


if __name__ == "__main__":
    code = main()
    # The run's files are written and its lock is released: leave without Python's shutdown, which
    # tears TensorFlow down for seconds (tens on a busy CPU) and keeps the memory that long.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
