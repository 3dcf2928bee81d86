"""A finished worker (`python -m fer.train`) leaves every file the UI reads, complete and consistent."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from fer import CLASSES
from fer.config import TrainConfig
from fer.evaluate import read_evaluation, read_misclassified
from fer.files import read_json
from fer.run_folder import HISTORY_COLUMNS, RunFolder
from fer.runs import list_runs
from fer.ui import run_row
from fer.workers import effective_state, is_alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

# tiny_data: 28 training images, 7 PublicTest (val) and 7 PrivateTest (test).
TRAIN, VAL, TEST = 28, 7, 7


@pytest.fixture(scope="module")
def run(trained_run):
    assert trained_run.returncode == 0, trained_run.output[-4000:]
    return trained_run.path


def test_odd_batch_size_trains_to_the_end(trained_run):
    """Batch size 7 used to segfault the worker in oneDNN; now the CLI run exits 0 and finishes."""
    assert trained_run.returncode == 0, trained_run.output[-4000:]
    assert TrainConfig.load(trained_run.path / "config.json").batch_size == 7
    assert "[fer] finished" in trained_run.output


def test_config_json_holds_the_cli_flags_on_top_of_the_architecture_preset(run, tiny_data):
    """The CLI builds config.json from its flags plus mini-Xception's preset."""
    config = TrainConfig.load(run / "config.json")
    assert (config.architecture, config.epochs, config.batch_size) == ("mini_xception", 2, 7)
    assert (config.augment, config.lr_schedule, config.data) == (False, "none", str(tiny_data))
    assert config.l2 == TrainConfig.for_architecture("mini_xception").l2


def test_status_json_says_finished_with_timings_and_accuracies(run):
    """status.json is the UI's summary: final state, when, how long, sizes and accuracies."""
    status = RunFolder(run).read_status()
    assert status["state"] == "finished" and status["error"] is None
    assert effective_state(run) == "finished" and not is_alive(run)
    assert status["created"] <= status["started"] < status["ended"]
    assert status["epochs_done"] == 2 and status["best_epoch"] in (1, 2)
    assert 0.0 <= status["best_val_accuracy"] <= 1.0
    assert 0.0 <= status["test_accuracy"] <= 1.0 and 0.0 <= status["val_accuracy"] <= 1.0
    assert (status["train_size"], status["val_size"], status["test_size"]) == (TRAIN, VAL, TEST)
    assert "PublicTest" in status["val_description"] and "PrivateTest" in status["test_description"]
    assert status["phase"] is None


def test_history_csv_has_one_row_per_epoch(run):
    """history.csv: epochs 1 and 2 (1-based in read_history) with losses, accuracies, lr, each
    epoch's duration and end time, in HISTORY_COLUMNS' order."""
    history = RunFolder(run).read_history()
    assert history["epoch"].tolist() == [1, 2]
    assert list(history.columns) == list(HISTORY_COLUMNS)
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "time"):
        assert column in history.columns and history[column].notna().all(), column
    started, ended = RunFolder(run).read_status()["started"], RunFolder(run).read_status()["ended"]
    assert started < history["time"].iloc[0] < history["time"].iloc[1] <= ended
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    best = history.loc[history["val_accuracy"].idxmax()]
    assert RunFolder(run).read_status()["best_val_accuracy"] == pytest.approx(best["val_accuracy"])


def test_progress_json_ends_with_the_final_state_not_a_live_phase(run):
    """progress.json tells the UI the current phase; once the run has ended it says so, never
    a stale 'evaluating'."""
    progress = read_json(run / "progress.json")
    assert progress["phase"] == "finished" and progress["updated"] >= RunFolder(run).read_status()["ended"]


def test_model_keras_loads_and_predicts_probabilities(run):
    """model.keras (the best epoch) loads safely and maps 48x48 faces to 7 probabilities."""
    keras = pytest.importorskip("keras")
    model = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
    faces = np.zeros((3, 48, 48, 1), dtype="float32")
    probabilities = np.asarray(model(faces, training=False))
    assert probabilities.shape == (3, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_eval_metrics_json_covers_val_and_test(run):
    """eval/metrics.json holds accuracy, confusion matrix and report for val and test."""
    metrics = read_evaluation(run)
    assert metrics["classes"] == list(CLASSES)
    for split, n in (("val", VAL), ("test", TEST)):
        result = metrics["splits"][split]
        assert result["n"] == n
        assert np.asarray(result["confusion_matrix"]).sum() == n
        assert set(CLASSES) <= set(result["report"])
    assert metrics["splits"]["test"]["accuracy"] == pytest.approx(
        RunFolder(run).read_status()["test_accuracy"])


def test_eval_predictions_csv_has_one_row_per_image(run):
    """eval/predictions.csv lists every val and test image with its probabilities."""
    import pandas as pd

    frame = pd.read_csv(run / "eval" / "predictions.csv")
    assert frame["split"].value_counts().to_dict() == {"val": VAL, "test": TEST}
    assert set(frame["true"]) == set(CLASSES)
    probabilities = frame[[f"p_{name}" for name in CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert (frame["predicted"] == [CLASSES[i] for i in probabilities.argmax(axis=1)]).all()


def test_eval_misclassified_npz_holds_the_wrong_test_faces(run):
    """eval/misclassified.npz has exactly the wrongly classified test faces, with their names."""
    wrong = read_misclassified(run)
    n_wrong = round(TEST * (1 - RunFolder(run).read_status()["test_accuracy"]))
    assert len(wrong["true"]) == n_wrong
    assert wrong["images"].shape == (n_wrong, 48, 48)
    assert (wrong["true"] != wrong["predicted"]).all()
    assert all(str(name).startswith("test") and "PrivateTest_" in str(name) for name in wrong["names"])


def test_finished_run_leaves_no_backup_and_is_listed(run):
    """Keras removes the resume backup once training ends; list_runs shows the run as finished."""
    assert not (run / "backup").exists()
    (summary,) = list_runs(run.parent)
    assert (summary.run_id, summary.state, summary.architecture) == ("tiny", "finished", "mini_xception")
    row = run_row(summary)
    assert row["epochs"] == "2/2" and row["test acc"] == RunFolder(run).read_status()["test_accuracy"]
