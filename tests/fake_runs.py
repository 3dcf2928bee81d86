"""Run folders written straight to disk, as a worker would leave them, without training anything.

The UI tests use them to check what the Runs and Evaluate pages show for every kind of run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from synthetic import face

from fer import CLASSES
from fer.config import TrainConfig
from fer.data import Split
from fer.evaluate import write_evaluation
from fer.run_folder import RunFolder
from fer.runs import create_run
from fer.workers import acquire_lock

EPOCH_COLUMNS = "epoch,accuracy,learning_rate,loss,seconds,val_accuracy,val_loss"


def write_history(run_dir: Path, epochs: int) -> None:
    """A history.csv like Keras' CSVLogger writes: 0-based epochs, improving metrics."""
    lines = [EPOCH_COLUMNS]
    for epoch in range(epochs):
        lines.append(f"{epoch},{0.3 + 0.05 * epoch:.4f},0.001,{1.8 - 0.1 * epoch:.4f},12.5,"
                     f"{0.28 + 0.04 * epoch:.4f},{1.9 - 0.08 * epoch:.4f}")
    (run_dir / "history.csv").write_text("\n".join(lines) + "\n")


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
    config = TrainConfig.for_architecture(architecture, epochs=epochs, batch_size=8)
    run_dir = create_run(config, root, run_id)
    write_history(run_dir, epochs_done)
    if model:
        (run_dir / "model.keras").write_bytes(b"fake model bytes for " + run_id.encode())
    test_accuracy = None
    if evaluation:
        test_accuracy = write_fake_evaluation(run_dir)["splits"]["test"]["accuracy"]
    now = time.time()
    RunFolder(run_dir).write_status(state=state, created=created or now, started=now - 600,
                 ended=None if state == "running" else now, epochs_done=epochs_done,
                 best_val_accuracy=0.28 + 0.04 * (epochs_done - 1) if epochs_done else None,
                 best_epoch=epochs_done or None, test_accuracy=test_accuracy, error=error,
                 phase="training" if state == "running" else None, train_size=28, val_size=7, test_size=7)
    (run_dir / "train.log").write_text(f"[fer] loading dataset\nEpoch 1/{epochs}\n[fer] {state}\n")
    return run_dir


def hold_run_lock(run_dir: Path) -> int:
    """Make a fake 'running' run look alive (as a worker holding the lock does); close the fd to end."""
    fd = acquire_lock(run_dir)
    assert fd is not None
    (run_dir / "progress.json").write_text(
        '{"epoch": 4, "epochs": 5, "batch": 2, "batches": 4, "phase": "training"}')
    return fd
