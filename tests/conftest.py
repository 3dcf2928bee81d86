"""Shared fixtures: caches and runs in tmp folders, tiny synthetic datasets, one trained tiny run."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import run_cli
from synthetic import write_image_folder

from fer.data import default_data_location


@pytest.fixture(scope="session", autouse=True)
def session_folders(tmp_path_factory):
    """Nothing a test does (session fixtures included) writes a cache or a run into the repository."""
    root = tmp_path_factory.mktemp("session")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FER_CACHE", str(root / "cache"))
        patch.setenv("FER_EXPERIMENTS", str(root / "experiments"))
        # One JAX compilation cache for the session: the many tiny JAX runs share their compiles.
        patch.setenv("FER_JAX_CACHE", str(root / "jax-cache"))
        yield root


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path, monkeypatch):
    """Each test gets its own cache and experiments folder."""
    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FER_EXPERIMENTS", str(tmp_path / "experiments"))
    return tmp_path


@pytest.fixture
def restore_signals():
    """fer.train.run_worker installs SIGTERM/SIGINT handlers; give pytest its own back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Kaggle layout, 4 training faces per class (28), 1 PublicTest and 1 PrivateTest per class."""
    return write_image_folder(tmp_path_factory.mktemp("tiny") / "fer2013", train=4, test=1)


@dataclass
class TrainedRun:
    path: Path
    returncode: int
    output: str


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_data) -> TrainedRun:
    """One mini-Xception run, 2 epochs on ``tiny_data``, trained by the CLI (`python -m fer.train`).

    The batch size is odd on purpose: oneDNN used to crash the worker on odd training batches.
    """
    experiments = tmp_path_factory.mktemp("trained")
    result = run_cli(["fer.train", "--experiments", experiments, "--name", "tiny",
                      "--architecture", "mini_xception", "--data", tiny_data, "--epochs", "2",
                      "--batch-size", "7", "--no-augment", "--lr-schedule", "none"], timeout=300)
    return TrainedRun(experiments / "tiny", result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real FER2013 (FER_DATA or data/); tests using it skip without it."""
    location = default_data_location()
    if location is None:
        pytest.skip("the real FER2013 data is not here: set FER_DATA or put it in data/ "
                    "(see fer.data.default_data_location)")
    if not location.exists():
        pytest.skip(f"the real FER2013 data is not here: FER_DATA={location} does not exist")
    return location


@pytest.fixture(autouse=True)
def data_roots_in_tmp(tmp_path_factory, monkeypatch):
    """The app reads datasets only inside data/, FER_DATA and FER_DATA_ROOTS: let it read the tests'
    tmp folders (tiny_data, tmp_path). tests/test_dataset_roots.py sets its own roots."""
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path_factory.getbasetemp()))
