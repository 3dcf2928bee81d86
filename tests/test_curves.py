"""Curves on the Runs page: smoothing, log scale, the x-axis by epoch, training time or wall clock
(older histories by epoch, with a note), the learning-rate chart, the time left of a run in
training and its worker's CPU and memory."""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_driver import array, figures, no_exception, open_page, texts
from fake_runs import fake_run, hold_run_lock, release

from bench.fake_runs import EPOCH_COLUMNS
from fer.run_folder import HISTORY_COLUMNS, RunFolder
from fer.runs import experiments_dir
from fer.ui import curve_axis, curve_figure, curve_x, ema, eta_seconds, format_bytes, format_duration
from fer.usage import worker_usage

START = 1_790_000_000.0  # a fixed moment in the past: when the first epoch of a timed history ended


@pytest.fixture
def root() -> Path:
    return experiments_dir()


def timed_history(epochs: int = 4, seconds: float = 30.0) -> pd.DataFrame:
    """A history as the worker writes it now: epoch durations and epoch end times."""
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": epoch, "accuracy": 0.3 + 0.05 * epoch, "learning_rate": 1e-3 / epoch,
                         "loss": 1.8 - 0.1 * epoch, "seconds": seconds, "time": START + seconds * (epoch - 1),
                         "val_accuracy": 0.28 + 0.04 * epoch, "val_loss": 1.9 - 0.08 * epoch})


def write_timed_history(run_dir: Path, epochs: int = 4) -> None:
    history = timed_history(epochs)
    history["epoch"] -= 1  # Keras' numbering on disk
    history.to_csv(RunFolder(run_dir).history_file, index=False)


# ---- smoothing ------------------------------------------------------------------------------------

def test_ema_is_debiased_and_skips_missing_values():
    assert ema([1.0, 2.0, 3.0], 0.0).tolist() == [1.0, 2.0, 3.0]
    assert ema([5.0] * 4, 0.9) == pytest.approx([5.0] * 4)  # no pull towards 0 at the start
    smoothed = ema([1.0, 2.0, float("nan"), 3.0], 0.5)
    # last = 0.5; 1.25; (skipped); 2.125, each divided by 1 - 0.5 ** (values so far)
    assert smoothed[[0, 1, 3]] == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert math.isnan(smoothed[2])


def test_smoothing_draws_raw_values_faintly_behind_and_never_smooths_the_learning_rate():
    history = timed_history()
    plain = curve_figure({"a": history}, "loss")
    assert [trace.name for trace in plain.data] == ["a train", "a val"]
    smooth = curve_figure({"a": history}, "loss", smoothing=0.6)
    raw, smoothed = smooth.data[0], smooth.data[1]
    assert raw.showlegend is False and raw.opacity < 1 and list(raw.y) == history["loss"].tolist()
    assert list(smoothed.y) == pytest.approx(ema(history["loss"], 0.6).tolist())
    assert smoothed.name == "a train" and "raw" in smoothed.hovertemplate
    rate = curve_figure({"a": history}, "learning_rate", smoothing=0.6)
    assert [trace.name for trace in rate.data] == ["a"]
    assert list(rate.data[0].y) == history["learning_rate"].tolist()


def test_log_scale_applies_to_the_y_axis():
    history = timed_history()
    assert curve_figure({"a": history}, "loss", log_y=True).layout.yaxis.type == "log"
    assert curve_figure({"a": history}, "loss").layout.yaxis.type in (None, "linear", "-")


# ---- the x-axis ---------------------------------------------------------------------------------

def test_wall_clock_x_is_the_time_each_epoch_ended():
    figure = curve_figure({"a": timed_history()}, "accuracy", axis="wall")
    assert figure.layout.xaxis.title.text == "time of day"
    x = list(figure.data[0].x)
    assert x == [datetime.fromtimestamp(START + 30 * i) for i in range(4)]
    assert "epoch %{customdata[1]}" in figure.data[0].hovertemplate


def test_training_time_x_adds_up_the_epoch_durations_in_minutes():
    history = timed_history(seconds=90.0)
    assert curve_x(history, "training").tolist() == [1.5, 3.0, 4.5, 6.0]
    figure = curve_figure({"a": history}, "loss", axis="training")
    assert figure.layout.xaxis.title.text == "training time (min)"


def test_an_older_history_without_epoch_times_plots_every_run_by_epoch_and_is_named():
    old = timed_history().drop(columns=["time"])
    histories = {"new": timed_history(), "old": old, "empty": pd.DataFrame()}
    assert curve_axis(histories, "wall") == ("epoch", ["old"])
    assert curve_axis(histories, "training") == ("training", [])
    figure = curve_figure(histories, "loss", axis="wall")
    assert figure.layout.xaxis.title.text == "epoch"
    assert [list(trace.x) for trace in figure.data] == [[1, 2, 3, 4]] * 4


@pytest.mark.parametrize("times", [[1e308, 1.0, 2.0, 3.0], [-5.0, 1.0, 2.0, 3.0], [np.nan, 1.0, 2.0, 3.0],
                                   [time.time() + 10 * 86_400] * 4])
def test_damaged_epoch_times_are_not_a_wall_clock(times):
    history = timed_history()
    history["time"] = times
    assert curve_x(history, "wall") is None
    assert curve_figure({"a": history}, "loss", axis="wall").layout.xaxis.title.text == "epoch"


# ---- time left -----------------------------------------------------------------------------------

def test_eta_counts_the_epochs_left_at_the_pace_of_the_last_three_and_the_current_epoch():
    history = timed_history(4)
    history["seconds"] = [100.0, 40.0, 50.0, 60.0]  # the first epoch (compilation) is slow
    # 6 epochs left, the fifth half done: 5.5 x the median of 40, 50 and 60 s.
    assert eta_seconds(history, 10, {"epoch": 5, "batch": 10, "batches": 20}) == pytest.approx(275.0)
    assert eta_seconds(history, 10, {}) == pytest.approx(300.0)
    assert eta_seconds(history, 10, {"epoch": 4, "batch": 20, "batches": 20}) == pytest.approx(300.0)
    assert eta_seconds(history, 4, {"epoch": 4}) == 0.0


def test_a_first_estimate_comes_from_the_first_epochs_pace_including_the_start_up():
    """20 of 400 batches (5%) of epoch 1 of 6 after 60 s: 1200 s a epoch, 7140 s left. Before 5%
    of the epoch, while validating, or without a start time: no estimate."""
    from fer.ui import first_epoch_eta

    progress = {"epoch": 1, "batch": 20, "batches": 400, "phase": "training"}
    assert first_epoch_eta(6, progress, 1000.0, 1060.0) == pytest.approx(7140.0)
    assert first_epoch_eta(6, {**progress, "batch": 19}, 1000.0, 1060.0) is None
    assert first_epoch_eta(6, {**progress, "epoch": 2}, 1000.0, 1060.0) is None
    assert first_epoch_eta(6, {**progress, "phase": "validating"}, 1000.0, 1060.0) is None
    assert first_epoch_eta(6, progress, None, 1060.0) is None


def test_eta_is_unknown_before_an_epoch_has_a_duration():
    assert eta_seconds(pd.DataFrame(), 10, {"epoch": 1, "batch": 3, "batches": 9}) is None
    no_durations = timed_history().drop(columns=["seconds"])
    assert eta_seconds(no_durations, 10, {}) is None
    history = timed_history()
    history["seconds"] = np.nan
    assert eta_seconds(history, 10, {}) is None


def test_durations_and_sizes_read_as_a_person_would_say_them():
    durations = [format_duration(s) for s in (0, 42, 200, 3900, -3)]
    assert durations == ["0 s", "42 s", "3 min", "1 h 05 min", "0 s"]
    assert [format_bytes(n) for n in (512, 2_500_000, 1_300_000_000)] == ["512 B", "2.5 MB", "1.3 GB"]


# ---- history.csv of a resumed older run -------------------------------------------------------------

def test_a_resumed_older_history_gets_the_new_columns_so_appended_rows_line_up(root):
    """An older worker wrote no epoch end times; the new worker's CSVLogger appends rows with them,
    under the header keep_history rewrote."""
    keras = pytest.importorskip("keras")
    run_dir = fake_run(root, "old", epochs_done=3)
    assert "time" not in EPOCH_COLUMNS.split(",")
    folder = RunFolder(run_dir)
    folder.keep_history(2)
    assert folder.history_file.read_text().splitlines()[0].split(",") == list(HISTORY_COLUMNS)
    logger = keras.callbacks.CSVLogger(str(folder.history_file), append=True)
    logger.on_train_begin()
    logs = {"accuracy": 0.5, "learning_rate": 0.001, "loss": 1.2, "seconds": 9.5, "time": START,
            "val_accuracy": 0.45, "val_loss": 1.3}
    logger.on_epoch_end(2, logs)
    logger.on_train_end()
    history = folder.read_history()
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history.loc[2, ["loss", "val_accuracy", "time"]].tolist() == [1.2, 0.45, START]
    assert history.loc[:1, "time"].isna().all() and history.loc[:1, "loss"].notna().all()
    assert curve_axis({"old": history}, "wall") == ("epoch", ["old"])


# ---- the worker's CPU and memory --------------------------------------------------------------------

def test_worker_usage_reads_the_process_holding_the_run_lock(root):
    run_dir = fake_run(root, "live", state="running", evaluation=False)
    assert worker_usage(run_dir) is None  # no worker holds the lock
    worker = hold_run_lock(run_dir)
    try:
        first = worker_usage(run_dir)
        assert first.pid == worker.pid and first.cpu_percent is None
        assert first.memory_bytes > 1_000_000 and first.threads >= 1 and first.cores >= 1
        time.sleep(0.2)
        second = worker_usage(run_dir)
        assert second.pid == worker.pid and 0.0 <= second.cpu_percent < 100.0 * second.cores
    finally:
        release(worker)
    assert worker_usage(run_dir) is None


def test_usage_module_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import fer.usage, sys\n"
            "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'keras'))]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- the Runs page ------------------------------------------------------------------------------------

def test_runs_page_has_loss_accuracy_and_learning_rate_charts_with_controls(root):
    write_timed_history(fake_run(root, "a", epochs_done=4))
    app = open_page("runs", {"run": "a"})
    no_exception(app)
    assert [figure.layout.title.text for figure in figures(app)] == ["Loss", "Accuracy", "Learning rate"]
    app.slider(key="curves.smoothing").set_value(0.8).run()
    no_exception(app)
    loss = figures(app)[0]
    assert len(loss.data) == 4 and loss.data[0].showlegend is False  # raw + smoothed, train and val
    app.toggle(key="curves.log").set_value(True).run()
    loss, accuracy, rate = figures(app)
    assert loss.layout.yaxis.type == "log" and rate.layout.yaxis.type == "log"
    assert accuracy.layout.yaxis.type != "log"  # accuracies stay in percent
    app.button_group(key="curves.x").set_value("wall").run()
    no_exception(app)
    loss = figures(app)[0]
    assert loss.layout.xaxis.title.text == "time of day"
    assert [pd.Timestamp(x) for x in array(loss.data[1].x)] == [
        pd.Timestamp(datetime.fromtimestamp(START + 30 * i)) for i in range(4)]


def test_runs_page_plots_an_older_run_by_epoch_with_a_note(root):
    write_timed_history(fake_run(root, "new", epochs_done=4, created=2000))
    fake_run(root, "old", epochs_done=3, created=1000)  # no epoch end times
    app = open_page("runs", {"run": ["new", "old"]})
    app.button_group(key="curves.x").set_value("wall").run()
    no_exception(app)
    assert figures(app)[0].layout.xaxis.title.text == "epoch"
    assert any(text.startswith("Plotted by epoch: old has no epoch end times") for text in texts(app.caption))


def test_a_run_in_training_shows_its_time_left_and_its_worker_s_cpu_and_memory(root):
    run_dir = fake_run(root, "live", state="running", evaluation=False, epochs=5, epochs_done=3)
    worker = hold_run_lock(run_dir)  # progress.json: epoch 4 of 5, batch 2 of 4
    try:
        app = open_page("runs", {"run": "live"})
        no_exception(app)
        line = next(text for text in texts(app.caption) if text.startswith("**live**"))
        # 1.5 epochs left at 12.5 s each (the fake history's durations).
        assert "about 19 s left" in line
        assert f"worker {worker.pid}: CPU measuring" in line and "memory" in line
        app.run()
        line = next(text for text in texts(app.caption) if text.startswith("**live**"))
        assert f"worker {worker.pid}: CPU " in line and "measuring" not in line
    finally:
        release(worker)


def test_a_run_in_training_before_its_first_epoch_says_when_time_left_is_known(root):
    run_dir = fake_run(root, "fresh", state="running", evaluation=False, epochs_done=0)
    worker = hold_run_lock(run_dir)
    try:
        app = open_page("runs", {"run": "fresh"})
        no_exception(app)
        assert any(text.startswith("**fresh**") and "time left known after the first epoch" in text
                   for text in texts(app.caption))
        assert any(text.startswith("Waiting for the first epoch") for text in texts(app.info))
        assert not figures(app)
        # A tenth of the first epoch done, 30 s after the start: a first estimate.
        RunFolder(run_dir).write_status(started=time.time() - 30)
        RunFolder(run_dir).write_progress(epoch=1, epochs=5, batch=10, batches=100, phase="training")
        app.run()
        line = next(text for text in texts(app.caption) if text.startswith("**fresh**"))
        assert "a first estimate from 10 of 100 batches of the first epoch" in line and "left" in line
    finally:
        release(worker)
