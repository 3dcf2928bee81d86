"""A stop that cannot reach the worker's Python code (the main thread is inside one long call into
the backend, which a signal cannot interrupt) still ends the run: the worker's watchdog records it
as stopped and ends the process, but never in the middle of an epoch's save, and Resume works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until, worker_env

from fer import PROJECT_ROOT
from fer.backends import BACKENDS
from fer.config import TrainConfig
from fer.run_folder import RunFolder
from fer.runs import create_run
from fer.workers import effective_state, is_alive, resume, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# The worker as fer.workers.launch starts it, with one more callback that blocks in C when the
# second epoch validates, or in the middle of the first epoch's save (after the progress, before
# history.csv and the backup). It blocks like a TensorFlow or JAX call: libc's read of a pipe,
# restarted after a signal (SA_RESTART), so no Python code runs until a timer thread writes to it.
WORKER = """
import ctypes, os, signal, sys, threading
import fer.recipe as recipe
import fer.train as train

where, seconds = sys.argv[2], int(sys.argv[3])
made = recipe.callbacks

def callbacks(*args, **kwargs):
    import keras

    class Block(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def block(self):
            signal.siginterrupt(signal.SIGTERM, False)
            readable, writable = os.pipe()
            threading.Timer(seconds, os.write, (writable, b"x")).start()
            print("[test] blocked", flush=True)
            ctypes.CDLL(None).read(readable, ctypes.create_string_buffer(1), 1)
            print("[test] unblocked", flush=True)

        def on_test_batch_begin(self, batch, logs=None):
            if where == "validation" and self.epoch == 1 and batch == 0:
                self.block()

        def on_epoch_end(self, epoch, logs=None):
            if where == "saving" and epoch == 0:
                self.block()

    run = made(*args, **kwargs)
    return [Block()] + run if where == "validation" else run[:1] + [Block()] + run[1:]

recipe.callbacks = callbacks
sys.exit(train.main(["--run-dir", sys.argv[1]]))
"""


def start_blocking_worker(tmp_path: Path, tiny_data: Path, backend: str, where: str, seconds: int):
    config = TrainConfig.for_architecture("mini_xception", data=str(tiny_data), epochs=3, batch_size=4,
                                          augment=False, lr_schedule="none", early_stopping_patience=0,
                                          backend=backend)
    run = create_run(config, tmp_path / "runs")
    log = open(RunFolder(run).log_file, "a")  # noqa: SIM115 - the worker's stdout while it lives
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(run), where, str(seconds)],
                              cwd=PROJECT_ROOT, env=worker_env(KERAS_BACKEND=backend), stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    wait_until(lambda: "[test] blocked" in RunFolder(run).log_file.read_text(), 300, "the blocking call",
               log=RunFolder(run).log_file)
    return run, worker


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_inside_a_long_backend_call_ends_the_run_and_it_resumes(tmp_path, tiny_data, backend):
    # Without the watchdog the worker would block for ten minutes before it saw the stop.
    run, worker = start_blocking_worker(tmp_path, tiny_data, backend, "validation", 600)
    try:
        assert stop(run) is True
        assert worker.wait(timeout=60) == 3
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    folder = RunFolder(run)
    log = folder.log_file.read_text()
    assert "[test] unblocked" not in log and "before the worker could stop by itself" in log
    assert effective_state(run) == "stopped" and not is_alive(run)
    assert folder.read_status()["phase"] is None and folder.read_progress()["phase"] == "stopped"
    # The epoch whose validation was cut is not recorded; the run resumes after epoch 1.
    assert folder.completed_epochs() == 1
    assert folder.read_history()["epoch"].tolist() == [1]
    resume(run)
    wait_until(lambda: effective_state(run) == "finished", 300, "the resumed run", log=folder.log_file)
    assert folder.read_history()["epoch"].tolist() == [1, 2, 3]


def test_the_watchdog_waits_for_an_epoch_save_to_finish(tmp_path, tiny_data):
    # The block (8 s) outlasts the watchdog's grace; the epoch's save still completes before the
    # process ends, so the epoch counts and the run resumes after it.
    run, worker = start_blocking_worker(tmp_path, tiny_data, "tensorflow", "saving", 8)
    try:
        assert stop(run) is True
        assert worker.wait(timeout=60) == 3
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    folder = RunFolder(run)
    assert "[test] unblocked" in folder.log_file.read_text()
    assert effective_state(run) == "stopped"
    assert folder.completed_epochs() == 1
    assert folder.read_history()["epoch"].tolist() == [1]
    assert (run / "model.keras").is_file()


WAITER = """
import os, signal, threading, time
from fer.signals import StopSignals

for signum in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(signum, lambda *_: None)
signals = StopSignals()
signals.install()
print("timeout", signals.wait(0.2), flush=True)
heard = []
waiter = threading.Thread(target=lambda: heard.append(signals.wait(30)))
waiter.start()
os.kill(os.getpid(), signal.SIGUSR1)  # not a stop: skipped
time.sleep(0.3)
print("after SIGUSR1", heard, flush=True)
os.kill(os.getpid(), signal.SIGTERM)
waiter.join()
print("after SIGTERM", heard, flush=True)
"""


def test_a_stop_signal_is_heard_on_another_thread_and_other_signals_are_skipped():
    result = subprocess.run([sys.executable, "-c", WAITER], cwd=PROJECT_ROOT, env=worker_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["timeout False", "after SIGUSR1 []", "after SIGTERM [True]"]
