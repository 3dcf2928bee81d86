"""Run folders written straight to disk, as a worker would leave them, without training anything
(``bench.fake_runs``), here with evaluations of synthetic faces.

The UI tests use them to check what the Runs and Evaluate pages show for every kind of run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from synthetic import face

from bench.fake_runs import fake_run as bench_fake_run
from fer import CLASSES
from fer.data import Split
from fer.evaluate import write_evaluation
from fer.run_folder import RunFolder


def fake_split(per_class: int, seed: int) -> tuple[Split, np.ndarray]:
    """A split with ``per_class`` faces per class and probabilities that get about half right."""
    rng = np.random.default_rng(seed)
    labels = np.arange(len(CLASSES)).repeat(per_class)
    images = np.stack([face(int(label), i) for i, label in enumerate(labels)])
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), size=len(labels))
    right = rng.random(len(labels)) < 0.5
    probabilities[right, labels[right]] += 2.0
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    names = [f"test/{CLASSES[label]}/PrivateTest_{i}.png" for i, label in enumerate(labels)]
    return Split(images, labels, names), probabilities


def write_fake_evaluation(run_dir: Path, per_class: int = 30) -> dict:
    val, val_probs = fake_split(per_class, seed=1)
    test, test_probs = fake_split(per_class, seed=2)
    return write_evaluation(run_dir / "eval", {"val": val, "test": test},
                            {"val": val_probs, "test": test_probs},
                            {"val_description": "PublicTest (test/PublicTest_*)",
                             "test_description": "PrivateTest (test/PrivateTest_*)"})


def fake_run(root: Path, run_id: str, state: str = "finished", epochs_done: int = 3, epochs: int = 5,
             architecture: str = "mini_xception", evaluation: bool = True, model: bool = True,
             error: str | None = None, created: float | None = None) -> Path:
    """A run folder in ``state`` with a history, and optionally a (fake) model and an evaluation."""
    run_dir = bench_fake_run(root, run_id, state, epochs_done, epochs, architecture, model, error, created)
    if evaluation:
        test_accuracy = write_fake_evaluation(run_dir)["splits"]["test"]["accuracy"]
        RunFolder(run_dir).write_status(test_accuracy=test_accuracy)
    return run_dir


# A stand-in worker: holds the run's lock (as a worker does) until it is signalled or killed.
LOCK_HOLDER = ("import fcntl, os, sys, time\n"
               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
               "fcntl.flock(fd, fcntl.LOCK_EX)\n"
               "print('locked', flush=True)\n"
               "time.sleep(600)\n")


def hold_run_lock(run_dir: Path) -> subprocess.Popen:
    """Make a fake 'running' run look alive: a process in its own session holds the run's lock, as
    a worker does, and its pid is in status.json; Stop signals it. ``release`` ends it."""
    process = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(RunFolder(run_dir).worker_lock)],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout.readline().strip() == "locked"
    RunFolder(run_dir).write_status(pid=process.pid)
    (run_dir / "progress.json").write_text(
        '{"epoch": 4, "epochs": 5, "batch": 2, "batches": 4, "phase": "training"}')
    return process


def release(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def model_run(root: Path, name: str, seed: int, data: Path, crop: int = 0) -> Path:
    """A finished run folder whose model.keras is an untrained mini-Xception drawn from ``seed``
    (different seeds give different predictions, which is all an ensemble's average needs)."""
    import keras

    from fer.config import TrainConfig
    from fer.models import build_model
    from fer.runs import create_run

    config = TrainConfig.for_architecture("mini_xception", data=str(data), seed=seed, epochs=1, crop=crop)
    path = create_run(config, root, name)
    keras.utils.set_random_seed(seed)
    build_model(config).save(RunFolder(path).model_file)
    RunFolder(path).write_status(state="finished", best_val_accuracy=0.3 + seed / 100)
    return path
