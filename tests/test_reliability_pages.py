"""The pages under bad state and bad input: messages, never a traceback (AppTest's ``exception``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from app_driver import array, figures, no_exception, open_page, texts
from fake_runs import fake_run

import fer.runs
from bench.fake_runs import EPOCH_COLUMNS
from fer.config import TrainConfig
from fer.run_folder import RunFolder
from fer.runs import experiments_dir


@pytest.fixture
def root() -> Path:
    return experiments_dir()


def button_labels(app) -> list[str]:
    return [b.label for b in app.button]


def test_killed_worker_shows_interrupted_with_resume_not_running(root):
    """status.json still says running (kill -9 left it so) but no worker holds the lock."""
    fake_run(root, "killed", state="running", evaluation=False, epochs_done=2)
    RunFolder(root / "killed").write_status(pid=os.getpid())  # a live pid, but not a worker of this run
    app = open_page("runs")
    no_exception(app)
    assert list(app.dataframe[0].value["state"]) == ["interrupted"]
    assert "Resume" in button_labels(app) and "Stop" not in button_labels(app)
    # Its history and best model are kept: curves and the model download are there.
    assert list(array(figures(app)[0].data[0].x)) == [1, 2]
    assert "model.keras" in [d.label for d in app.get("download_button")]


def test_history_with_partial_and_garbage_lines_still_draws_the_valid_epochs(root):
    run = fake_run(root, "messy", evaluation=False)
    (run / "history.csv").write_text("\n".join([
        EPOCH_COLUMNS, "0,0.3,0.001,1.8,12.5,0.28,1.9", "garbage \x00 line",
        "1,0.35,0.001,1.7,12.5,0.32,1.82", "2,0.4,0.0"]))  # the last row is being written
    app = open_page("runs")
    no_exception(app)
    loss = figures(app)[0]
    assert list(array(loss.data[0].x)) == [1, 2]


@pytest.mark.parametrize("broken", ["config.json", "status.json", "history.csv", "progress.json"])
def test_a_run_with_a_corrupt_file_is_listed_without_a_traceback(root, broken):
    run = fake_run(root, "corrupt", state="stopped", evaluation=False)
    (run / "progress.json").write_text("{}")
    (run / broken).write_bytes(b"\xff\xfe{ not json, not csv")
    app = open_page("runs", {"run": "corrupt"})
    no_exception(app)
    assert app.dataframe[0].value["run"].tolist() == ["corrupt"]
    if broken == "config.json":
        assert any("config.json" in text for text in texts(app.error))


def test_resume_with_changed_hyperparameters_shows_why_and_starts_nothing(root, monkeypatch):
    run = fake_run(root, "edited", state="stopped", evaluation=False)
    (run / "backup").mkdir()
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 3, "batch": -1}')
    shutil.copy(run / "config.json", RunFolder(run).checkpoint_config_file)
    TrainConfig.for_architecture("mini_xception", epochs=5, batch_size=32).save(run / "config.json")
    monkeypatch.setattr(fer.workers, "worker_command", lambda run_dir: pytest.fail("a worker was started"))
    app = open_page("runs")
    next(b for b in app.button if b.label == "Resume").click().run()
    no_exception(app)
    assert any("batch_size: 8 -> 32" in text and "new run" in text for text in texts(app.error))
    assert RunFolder(run).read_status()["state"] == "stopped"


def test_run_stopped_during_evaluation_explains_how_to_evaluate(root):
    run = fake_run(root, "cut-short", evaluation=False)
    RunFolder(run).write_status(note="stopped during the evaluation: ...; evaluate it with: "
                           f"python -m fer.evaluate --run {run}")
    app = open_page("runs")
    no_exception(app)
    assert any("python -m fer.evaluate --run" in text for text in texts(app.info))


@pytest.mark.parametrize("bad", ["../../etc", "/etc/passwd", "a\0b", "x" * 5000, "..", "%2e%2e%2fetc"])
@pytest.mark.parametrize("page", ["runs", "evaluate"])
def test_run_ids_in_the_address_never_escape_and_never_crash(root, page, bad, monkeypatch, tmp_path):
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")  # "only" is the only model
    fake_run(root, "only")
    app = open_page(page, {"run": bad})
    no_exception(app)
    assert texts(app.warning), "the bad id is reported"
    selected = app.multiselect(key="runs.selected").value if page == "runs" else \
        [app.selectbox(key="evaluate.source").value]
    assert selected == ["only"]


def test_unusable_experiments_folder_is_a_launch_error_not_a_traceback(tmp_path, tiny_data, monkeypatch):
    """The experiments folder cannot be created (a file is in the way): Launch says so."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("FER_EXPERIMENTS", str(blocker / "experiments"))
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    next(b for b in app.button if b.label == "Launch training").click().run()
    no_exception(app)
    assert "Cannot launch" in app.error[0].value and str(blocker) in app.error[0].value
    runs = open_page("runs")
    no_exception(runs)
    assert "No runs yet" in runs.info[0].value


def test_read_only_run_folder_is_reported(root, monkeypatch):
    """A run whose folder cannot be written (read-only disk) tells why it stopped being updated."""
    fake_run(root, "frozen", state="running", evaluation=False)
    real_access = os.access
    monkeypatch.setattr(fer.runs.os, "access",
                        lambda path, mode: False if Path(path).name == "frozen" else real_access(path, mode))
    app = open_page("runs")
    no_exception(app)
    assert any("not writable" in text for text in texts(app.error))
