"""Run folders written straight to disk, as a worker would leave them, without training anything
(``bench.fake_runs``), here with evaluations of synthetic faces.

The UI tests use them to check what the Runs and Evaluate pages show for every kind of run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from synthetic import face

from bench.fake_runs import fake_run as bench_fake_run
from fer import CLASSES
from fer.data import Split
from fer.evaluate import write_evaluation
from fer.run_folder import RunFolder
from fer.workers import acquire_lock


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


def hold_run_lock(run_dir: Path) -> int:
    """Make a fake 'running' run look alive (as a worker holding the lock does); close the fd to end."""
    fd = acquire_lock(run_dir)
    assert fd is not None
    (run_dir / "progress.json").write_text(
        '{"epoch": 4, "epochs": 5, "batch": 2, "batches": 4, "phase": "training"}')
    return fd
