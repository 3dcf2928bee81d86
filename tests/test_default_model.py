"""Use as the default model: a finished run (or an ensemble) that Predict, Evaluate and
``python -m fer.evaluate`` start from, chosen on Runs and Evaluate (signed-in only when sign-in is
on) with a confirmation showing both PublicTest accuracies, undone by "Restore the shipped
model", kept in the experiments folder, and falling back to the shipped model with a notice when
the chosen run is gone or damaged. The shipped files are never written."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from app_driver import no_exception, open_page, texts
from fake_runs import fake_run, hold_run_lock, release
from helpers import run_cli
from test_access import SIGNED_OUT, button, force_click, open_as

import fer
from fer.default_model import (
    CHOICE_FILE,
    DefaultModelError,
    choose_default,
    current_default,
    public_accuracy,
    restore_shipped,
)
from fer.predict import resolve_model_path
from fer.run_folder import RunFolder
from fer.runs import available_models, experiments_dir


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> Path:
    """A stand-in for fer/assets/default_model (with an evaluation), whose files must not change."""
    folder = fake_run(tmp_path / "assets", "default_model")
    zip_model(folder)
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", folder)
    return folder


def zip_model(run_dir: Path) -> Path:
    """A model.keras that passes the file checks (a zip archive); nothing here loads it."""
    path = RunFolder(run_dir).model_file
    path.unlink(missing_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"run": run_dir.name}))
    return path


def finished(run_id: str, **kwargs) -> Path:
    run_dir = fake_run(experiments_dir(), run_id, **kwargs)
    zip_model(run_dir)
    return run_dir


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the library ---------------------------------------------------------------------------------

def test_without_a_choice_the_shipped_model_is_the_default(shipped):
    default = current_default()
    assert default.shipped and default.folder == shipped and default.notice is None
    assert resolve_model_path(None) == shipped / "model.keras"


def test_a_chosen_run_is_what_everything_starts_from_and_restore_undoes_it(shipped):
    before = digest(shipped)
    run_dir = finished("better")
    assert choose_default("better") == run_dir
    assert json.loads((experiments_dir() / CHOICE_FILE).read_text())["run"] == "better"
    default = current_default()  # read from the experiments folder: survives restarts
    assert default.source == "better" and default.folder == run_dir and not default.notice
    assert resolve_model_path(None) == run_dir / "model.keras"
    labels = available_models()
    assert labels[0][1] == run_dir / "model.keras" and labels[0][0].endswith("· the default model")
    assert [path for _, path in labels].count(run_dir / "model.keras") == 1
    assert restore_shipped() is True and restore_shipped() is False
    assert current_default().shipped and resolve_model_path(None) == shipped / "model.keras"
    assert digest(shipped) == before  # the shipped files are never written


@pytest.mark.parametrize("case", ["missing", "running", "stopped", "no-model", "damaged-model",
                                  "not-an-id"])
def test_a_run_that_cannot_be_the_default_is_refused_with_a_reason(shipped, case):
    worker = None
    if case == "running":
        worker = hold_run_lock(finished("r", state="running"))
    elif case == "stopped":
        finished("r", state="stopped")
    elif case == "no-model":
        fake_run(experiments_dir(), "r", model=False)
    elif case == "damaged-model":
        fake_run(experiments_dir(), "r")  # its model.keras is not an archive
    run_id = "../etc" if case == "not-an-id" else "r"
    try:
        with pytest.raises(DefaultModelError) as error:
            choose_default(run_id)
    finally:
        if worker is not None:
            release(worker)
    expected = {"missing": "there is no run r", "running": "is running", "stopped": "only a finished run",
                "no-model": "no model", "damaged-model": "damaged", "not-an-id": "not a run id"}[case]
    assert expected in str(error.value)
    assert not (experiments_dir() / CHOICE_FILE).exists()


@pytest.mark.parametrize("damage", ["deleted", "model-damaged", "file-garbage"])
def test_a_default_whose_run_was_deleted_or_damaged_falls_back_with_a_notice(shipped, damage):
    import shutil

    run_dir = finished("chosen")
    choose_default("chosen")
    if damage == "deleted":
        shutil.rmtree(run_dir)
    elif damage == "model-damaged":
        (run_dir / "model.keras").write_bytes(b"cut short")
    else:
        (experiments_dir() / CHOICE_FILE).write_text("{not json")
    default = current_default()
    assert default.shipped and default.folder == shipped and "shipped model" in default.notice
    assert resolve_model_path(None) == shipped / "model.keras"
    app = open_page("predict")
    no_exception(app)
    assert any("using the shipped model" in text for text in texts(app.warning))


def test_public_accuracy_reads_the_plain_evaluation(shipped):
    accuracy = json.loads((shipped / "eval" / "metrics.json").read_text())["splits"]["val"]["accuracy"]
    assert public_accuracy(shipped) == pytest.approx(accuracy)
    assert public_accuracy(fake_run(experiments_dir(), "none", evaluation=False)) is None


# ---- the pages -----------------------------------------------------------------------------------

def test_runs_page_confirms_with_both_accuracies_then_makes_it_the_default(shipped):
    run_dir = finished("better")
    app = open_page("runs", query_params={"run": "better"})
    no_exception(app)
    shown = " ".join(texts(app.markdown))
    new = percent_text(public_accuracy(run_dir))
    assert f"the shipped model **{percent_text(public_accuracy(shipped))}** → better **{new}**" in shown
    button(app, "Make it the default").click().run()
    no_exception(app)
    assert current_default().source == "better"
    assert any("better is now the default model" in text for text in texts(app.success))
    assert any("The default model" in text for text in texts(app.caption))
    button(app, "Restore the shipped model").click().run()
    no_exception(app)
    assert current_default().shipped and not (experiments_dir() / CHOICE_FILE).exists()


def percent_text(value: float) -> str:
    return f"{value:.1%}"


def test_evaluate_and_predict_start_from_the_chosen_default(shipped):
    finished("older", created=1000)
    finished("better", created=2000)
    choose_default("older")
    app = open_page("evaluate")
    no_exception(app)
    assert app.selectbox(key="evaluate.source").value == "older"
    assert button(app, "Restore the shipped model")
    app = open_page("predict")
    no_exception(app)
    assert app.selectbox(key="predict.model").value == str(experiments_dir() / "older" / "model.keras")


def test_signed_out_visitors_cannot_change_the_default(shipped):
    finished("better")
    app = open_as("runs", auth=True, user=SIGNED_OUT, query_params={"run": "better"})
    no_exception(app)
    assert button(app, "Make it the default").disabled
    force_click(app, "Make it the default")
    no_exception(app)
    assert current_default().shipped and not (experiments_dir() / CHOICE_FILE).exists()


def test_the_cli_shows_sets_and_restores_the_default(shipped):
    finished("better")
    shown = run_cli(["fer.runs", "default"], timeout=120, FER_EXPERIMENTS=str(experiments_dir()))
    assert shown.returncode == 0 and "the shipped model" in shown.stdout
    chosen = run_cli(["fer.runs", "default", "better"], timeout=120, FER_EXPERIMENTS=str(experiments_dir()))
    assert chosen.returncode == 0 and "better" in chosen.stdout
    assert json.loads((experiments_dir() / CHOICE_FILE).read_text())["run"] == "better"
    bad = run_cli(["fer.runs", "default", "nope"], timeout=120, FER_EXPERIMENTS=str(experiments_dir()))
    assert bad.returncode == 2 and "there is no run nope" in bad.stderr
    assert "Traceback" not in bad.stderr
    restored = run_cli(["fer.runs", "default", "--restore"], timeout=120,
                       FER_EXPERIMENTS=str(experiments_dir()))
    assert restored.returncode == 0 and not (experiments_dir() / CHOICE_FILE).exists()
    assert shipped == fer.DEFAULT_MODEL_DIR
