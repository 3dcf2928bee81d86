"""Hostile run folders: every kind of damage (wrong types, special files, links, oversized files)
next to a healthy run. Every page opens on them without a traceback or a hang, the healthy run is
unaffected, and ``python -m fer.runs list`` still lists both."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from app_driver import no_exception, open_page
from fake_runs import fake_run

import fer.runs
from fer.runs import experiments_dir, list_runs


def replace(path: Path, make: Callable[[Path], None]) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    make(path)


def write(content: str | bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)


def dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def folder(path: Path) -> None:
    path.mkdir()


def sparse(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.truncate(size)
    return make


def npz(**arrays) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    return make


RUN_FILES = ["status.json", "config.json", "progress.json", "history.csv", "train.log", "model.keras",
             "eval/metrics.json", "eval/misclassified.npz", ".lock", "stop-requested",
             ".status.lock", ".launch.lock", "notes.json"]

CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    **{f"fifo {name}": (name, fifo) for name in RUN_FILES},
    **{f"/dev/zero {name}": (name, dev_zero) for name in RUN_FILES},
    **{f"folder {name}": (name, folder) for name in ("status.json", "config.json", "history.csv",
                                                    "model.keras", "eval/metrics.json")},
    "status is a list": ("status.json", write("[1, 2]")),
    "status is null": ("status.json", write("null")),
    "status nested 100k deep": ("status.json", write("[" * 100_000)),
    "status 2 MB": ("status.json", write(json.dumps({"state": "finished", "error": "x" * 2_000_000}))),
    "status NaN accuracy": ("status.json", write('{"state": "finished", "best_val_accuracy": NaN}')),
    "status huge time": ("status.json", write('{"state": "finished", "created": 1e308, "ended": -5}')),
    "status link to passwd": ("status.json", lambda path: path.symlink_to("/etc/passwd")),
    "config is a list": ("config.json", write("[]")),
    "config wrong types": ("config.json", write('{"epochs": "many", "batch_size": [1], "lr": {}}')),
    "config 2 MB": ("config.json", write(json.dumps({"data": "x" * 2_000_000}))),
    "progress is a list": ("progress.json", write("[1, 2, 3]")),
    "progress wrong types": ("progress.json", write('{"batch": "x", "batches": -4, "epoch": []}')),
    "history binary": ("history.csv", write(os.urandom(4096))),
    "history header only": ("history.csv", write("epoch,accuracy,loss,val_accuracy,val_loss\n")),
    "history huge epoch": ("history.csv", write("epoch,val_accuracy\n1e308,0.5\nnan,0.4\n2,0.3\n")),
    "history duplicate columns": ("history.csv", write("epoch,epoch,val_accuracy\n0,0,0.5\n")),
    "history 9 MB sparse": ("history.csv", sparse(9 << 20)),
    "log 10 GB sparse": ("train.log", sparse(10 << 30)),
    "metrics splits is a list": ("eval/metrics.json", write('{"splits": []}')),
    "metrics 3x3 matrix": ("eval/metrics.json", write(json.dumps({"splits": {"test": {
        "accuracy": 0.5, "n": 3, "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "report": {}}}}))),
    "metrics no accuracy": ("eval/metrics.json", write('{"splits": {"test": {"n": 3}}}')),
    "misclassified garbage": ("eval/misclassified.npz", write(os.urandom(2048))),
    "misclassified wrong shapes": ("eval/misclassified.npz", npz(
        images=np.zeros((3, 5)), true=np.array([9, 9]), predicted=np.array([0.5]), confidence=np.array([1]))),
    "misclassified out of range classes": ("eval/misclassified.npz", npz(
        images=np.zeros((1, 48, 48), np.uint8), true=np.array([12]), predicted=np.array([-1]),
        confidence=np.array([np.nan]))),
    "model truncated": ("model.keras", write(b"PK\x03\x04 truncated")),
    "backup metadata fifo": ("backup/training_metadata.json", fifo),
}


@pytest.fixture
def root() -> Path:
    path = experiments_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def listed(root: Path) -> str:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert fer.runs.main(["--experiments", str(root), "list"]) == 0
    return output.getvalue()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(CASES))
def test_every_page_opens_next_to_a_hostile_run_folder(root, case):
    name, make = CASES[case]
    healthy = fake_run(root, "healthy")
    hostile = fake_run(root, "hostile", created=os.path.getmtime(healthy) + 1)
    path = hostile / name
    path.parent.mkdir(parents=True, exist_ok=True)
    replace(path, make)

    for page, params in (("train", None), ("runs", {"run": ["hostile", "healthy"]}),
                         ("evaluate", {"run": "hostile"}), ("predict", None),
                         ("compare", {"run": "hostile"})):
        app = open_page(page, params)
        no_exception(app)
        shown = " ".join(str(element.value) for element in app.get("markdown") + list(app.error)
                         if isinstance(getattr(element, "value", None), str))
        assert "root:x:0:0" not in shown  # a file's content is never echoed
    states = {run.run_id: run.state for run in list_runs(root)}
    assert states["healthy"] == "finished"
    assert set(states) <= {"healthy", "hostile"}
    assert "healthy" in listed(root)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", ["/", "/dev/null", "loop", "nowhere"])
def test_run_folder_links_to_odd_places_are_not_runs(root, tmp_path, target):
    fake_run(root, "healthy")
    link = root / "odd"
    link.symlink_to({"loop": str(link), "nowhere": str(tmp_path / "nowhere")}.get(target, target))
    assert [run.run_id for run in list_runs(root)] == ["healthy"]
    for page in ("train", "runs", "evaluate", "predict"):
        no_exception(open_page(page))
