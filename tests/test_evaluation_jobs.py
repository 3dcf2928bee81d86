"""Evaluations as background jobs (fer.evaluate: start, progress, stop, interrupted) and the
Evaluate page's comparison figures (fer.ui)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_runs import LOCK_HOLDER, fake_run
from helpers import run_cli, wait_until
from synthetic import write_image_folder

from fer import CLASSES
from fer.config import TrainConfig
from fer.evaluate import (
    EvaluationJobError,
    read_evaluation,
    read_job,
    start_job,
    stop_job,
)
from fer.predict import ModelError
from fer.run_folder import METRICS, RunFolder
from fer.runs import experiments_dir
from fer.ui import (
    confusion_difference_figure,
    confusion_figure,
    f1_delta_figure,
    f1_delta_frame,
    job_progress,
    row_shares,
    selected_cell,
)

# ---- figures and helpers of the Evaluate page ------------------------------------------------------


def test_selected_cell_reads_the_clicked_point():
    point = {"x": "angry", "y": "happy", "point_index": 0}
    assert selected_cell({"points": [point]}) == ("happy", "angry")
    # Without names, the point's index in the cell grid (row = true class) says which cell.
    assert selected_cell({"points": [{"point_index": 3 * len(CLASSES) + 5}]}) == (CLASSES[3], CLASSES[5])
    assert selected_cell({"points": [{"x": "angry", "y": "bored"}]}) is None
    assert selected_cell({"points": [], "box": [], "lasso": []}) is None
    assert selected_cell(None) is None


def test_selectable_confusion_matrix_has_one_clickable_point_per_cell():
    counts = np.arange(49).reshape(7, 7)
    figure = confusion_figure(counts, selectable=True)
    heatmap, cells = figure.data
    np.testing.assert_array_equal(np.asarray(heatmap.customdata), counts)
    assert len(cells.x) == len(cells.y) == 49
    # The point of cell (true 2, predicted 4) sits at x = predicted, y = true.
    index = 2 * 7 + 4
    assert (cells.x[index], cells.y[index]) == (CLASSES[4], CLASSES[2])
    assert np.asarray(cells.customdata)[index][0] == counts[2, 4]
    assert figure.layout.clickmode == "event+select"
    assert len(confusion_figure(counts).data) == 1


def test_difference_of_two_confusion_matrices_is_in_points_on_a_diverging_scale():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 20, (7, 7)), rng.integers(0, 20, (7, 7))
    figure = confusion_difference_figure(a, b, ("mine", "theirs"))
    trace = figure.data[0]
    np.testing.assert_allclose(np.asarray(trace.z), (row_shares(a) - row_shares(b)) * 100)
    assert trace.zmid == 0 and -trace.zmin == trace.zmax >= np.abs(np.asarray(trace.z)).max()
    assert trace.colorscale[0][1] != trace.colorscale[-1][1]  # two colours: a diverging scale
    assert "mine minus theirs" in figure.layout.title.text


def test_per_class_f1_deltas():
    report_a = {name: {"f1-score": 0.5} for name in CLASSES} | {"macro avg": {"f1-score": 0.5}}
    report_b = {name: {"f1-score": 0.1 * i} for i, name in enumerate(CLASSES)}
    report_b["macro avg"] = {"f1-score": 0.3}
    frame = f1_delta_frame(report_a, report_b, ("a", "b"))
    assert list(frame.index) == [*CLASSES, "macro avg"]
    assert list(frame.columns) == ["a", "b", "a minus b"]
    np.testing.assert_allclose(frame["a minus b"], [0.5 - 0.1 * i for i in range(7)] + [0.2])
    bars = f1_delta_figure(frame).data[0]
    np.testing.assert_allclose(np.asarray(bars.x), frame["a minus b"] * 100)
    assert bars.marker.color[0] == "#2ca02c" and bars.marker.color[6] == "#d62728"  # better, worse
    low, high = f1_delta_figure(frame).layout.xaxis.range  # room for the labels on both sides
    assert low < min(bars.x) and high > max(bars.x)


def test_job_progress_gives_batches_and_time_left():
    assert job_progress({"state": "queued"}) == (0.0, "Starting the evaluation…")
    loading = job_progress({"state": "running", "phase": "loading the model and the data"})
    assert loading == (0.0, "Loading the model and the data…")
    # 5 of 15 batches in 10 s: 2 s a batch, 20 s for the other 10 (4 s of them already spent).
    job = {"state": "running", "predicting": 100.0, "updated": 110.0, "batch": 5, "batches": 15}
    assert job_progress(job, now=110.0) == (pytest.approx(1 / 3), "Batch 5 of 15 · about 20 s left")
    assert job_progress(job, now=114.0)[1] == "Batch 5 of 15 · about 16 s left"
    assert job_progress({**job, "batch": 15}, now=130.0) == (1.0, "Batch 15 of 15 · writing the results")


# ---- job states ---------------------------------------------------------------------------------------


def hold_job_lock(run_dir: Path, mode: str, **job) -> subprocess.Popen:
    """A stand-in job: a process in its own session holding the evaluation's lock, recorded as
    running in job.json with ``job``'s values."""
    folder = RunFolder(run_dir)
    folder.eval_dir(mode).mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder.eval_job_lock(mode))],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout.readline().strip() == "locked"
    folder.write_eval_job(mode, replace=True, state="running", pid=process.pid, started=time.time(), **job)
    return process


def test_a_killed_job_reads_interrupted_and_a_stopped_one_stopped():
    run_dir = fake_run(experiments_dir(), "evaluated")
    process = hold_job_lock(run_dir, "flip")
    try:
        assert read_job(run_dir, "flip")["state"] == "running"
        process.kill()  # kill -9: the job records nothing, the kernel drops its lock
        process.wait()
        assert read_job(run_dir, "flip")["state"] == "interrupted"
    finally:
        process.kill()
    process = hold_job_lock(run_dir, "ten_crop")
    assert stop_job(run_dir, "ten_crop", wait=10)  # SIGTERM to its process group
    assert process.wait(timeout=10) == -signal.SIGTERM
    assert read_job(run_dir, "ten_crop")["state"] == "stopped"
    assert not stop_job(run_dir, "ten_crop")  # nothing left to stop
    assert read_job(run_dir, "none") == {}  # never evaluated as a job


def test_a_model_that_cannot_load_is_refused_before_any_process_starts():
    run_dir = fake_run(experiments_dir(), "evaluated")  # its model.keras is not a real model
    with pytest.raises(ModelError, match="damaged"):
        start_job(run_dir, "flip")
    assert read_job(run_dir, "flip") == {}
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        start_job(run_dir, "sideways")


def test_damaged_job_file_reads_as_no_job():
    run_dir = fake_run(experiments_dir(), "evaluated")
    folder = RunFolder(run_dir)
    folder.eval_dir("flip").mkdir()
    folder.eval_job_file("flip").write_text('{"state": "exploded", "batch": -3}')
    assert read_job(run_dir, "flip") == {}


# ---- real jobs: a tiny model on tiny synthetic data ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Keras model (rescale, flatten, softmax): loading it and its predictions are quick."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    path = tmp_path_factory.mktemp("tiny-model") / "model.keras"
    keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(x)).save(path)
    return path


def model_run(run_id: str, model: Path, data: Path) -> Path:
    """An evaluated run (a fake evaluation without TTA) holding ``model``, its data ``data``."""
    run_dir = fake_run(experiments_dir(), run_id)
    folder = RunFolder(run_dir)
    folder.write_config(TrainConfig.for_architecture("mini_xception", data=str(data)))
    folder.model_file.write_bytes(model.read_bytes())
    return run_dir


@pytest.mark.slow
def test_a_job_evaluates_in_the_background_and_refuses_a_second_start(tiny_model, tiny_data):
    run_dir = model_run("tiny", tiny_model, tiny_data)
    pid = start_job(run_dir, "ten_crop", batch=2)
    with pytest.raises(EvaluationJobError, match="already being evaluated"):
        start_job(run_dir, "ten_crop")  # a second click while the first job starts
    folder = RunFolder(run_dir)
    job = wait_until(lambda: (read_job(run_dir, "ten_crop") or {}).get("state") not in ("queued", "running")
                     and read_job(run_dir, "ten_crop"), 240, "the job to end",
                     log=folder.eval_log_file("ten_crop"))
    assert job["state"] == "finished", folder.eval_log_file("ten_crop").read_text()[-2000:]
    assert job["pid"] == pid and job["batch"] == job["batches"] == 4 + 4  # 7 faces per split, 2 a batch
    result = read_evaluation(run_dir, "ten_crop")
    assert result["tta"] == "ten_crop" and result["splits"]["test"]["n"] == 7
    assert read_evaluation(run_dir)["splits"]["test"]["n"] == 210  # the evaluation without TTA is kept


@pytest.mark.slow
def test_stop_ends_a_job_after_its_batch_and_keeps_no_half_results(tiny_model, tmp_path):
    data = write_image_folder(tmp_path / "fer2013", train=1, test=60)  # 420 faces per split
    run_dir = model_run("tiny", tiny_model, data)
    start_job(run_dir, "ten_crop", batch=1)
    folder = RunFolder(run_dir)
    wait_until(lambda: (read_job(run_dir, "ten_crop").get("batch") or 0) >= 1, 240,
               "the first batch", log=folder.eval_log_file("ten_crop"))
    started = time.monotonic()
    assert stop_job(run_dir, "ten_crop", wait=30)
    assert time.monotonic() - started < 10
    job = read_job(run_dir, "ten_crop")
    assert job["state"] == "stopped" and job["batch"] < job["batches"] == 840
    assert not (folder.eval_dir("ten_crop") / METRICS).exists()


@pytest.mark.slow
def test_cli_detach_starts_a_job_and_its_errors_exit_2(tiny_model, tiny_data):
    run_dir = model_run("tiny", tiny_model, tiny_data)
    result = run_cli(["fer.evaluate", "--run", run_dir, "--tta", "flip", "--detach"], timeout=60)
    assert result.returncode == 0 and "evaluating in the background (pid" in result.stdout
    wait_until(lambda: read_job(run_dir, "flip").get("state") == "finished", 240, "the job to finish",
               log=RunFolder(run_dir).eval_log_file("flip"))
    bad = fake_run(experiments_dir(), "fake-model")
    result = run_cli(["fer.evaluate", "--run", bad, "--tta", "flip", "--detach"], timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "damaged" in result.stderr
    result = run_cli(["fer.evaluate", "--run", bad], timeout=60)  # in the foreground: the same code
    assert result.returncode == 2 and "damaged" in result.stderr
    assert json.loads(RunFolder(bad).eval_job_file().read_text())["state"] == "failed"



@pytest.mark.slow
def test_the_evaluate_page_runs_a_tta_evaluation_in_the_background(tiny_model, tiny_data, tmp_path,
                                                                    monkeypatch):
    """Evaluate with ten-crop from the page: the page comes back at once with the job's progress,
    and shows the new results once the job has written them."""
    from app_driver import no_exception, open_page

    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    run_dir = model_run("tiny", tiny_model, tiny_data)
    app = open_page("evaluate")
    app.button_group(key="evaluate.tta").set_value("ten_crop").run()
    started = time.monotonic()
    app.button(key="evaluate.run_tta.ten_crop").click().run()
    assert time.monotonic() - started < 15  # the page does not wait for the evaluation
    no_exception(app)
    assert app.get("progress")[0].proto.text.startswith("Evaluating with ten-crop test-time augmentation")
    assert app.button(key="evaluate.stop_tta.ten_crop")
    wait_until(lambda: read_job(run_dir, "ten_crop").get("state") == "finished", 240, "the job to finish",
               log=RunFolder(run_dir).eval_log_file("ten_crop"))
    app.run()
    no_exception(app)
    assert not app.get("progress")
    shown = {m.label: m.delta for m in app.metric}
    assert shown["Test (PrivateTest) accuracy"].endswith("points vs no TTA")
