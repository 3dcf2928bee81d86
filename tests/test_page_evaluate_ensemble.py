"""The Evaluate page with ensembles: making one from runs, its evaluation in the background, its
members, and a damaged member's message."""

from __future__ import annotations

import pytest
from app_driver import no_exception, open_page, texts
from fake_runs import fake_run, model_run
from helpers import wait_until

from fer.ensemble import find_ensembles, make_ensemble, read_manifest
from fer.evaluate import read_evaluation, read_job
from fer.runs import experiments_dir


@pytest.fixture(autouse=True)
def no_shipped_model(tmp_path, monkeypatch):
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")


@pytest.fixture
def two_runs(tiny_data):
    root = experiments_dir()
    return [model_run(root, name, seed, tiny_data) for name, seed in (("run-a", 1), ("run-b", 2))]


def make_button(app):
    return next(button for button in app.button if button.label == "Make the ensemble")


def test_make_an_ensemble_of_two_runs_then_its_evaluation_runs_in_the_background(two_runs):
    app = open_page("evaluate")
    no_exception(app)
    app.multiselect(key="evaluate.ensemble.runs").set_value(["run-a", "run-b"])
    app.text_input(key="evaluate.ensemble.name").set_value("pair")
    make_button(app).click().run()
    no_exception(app)
    [folder] = find_ensembles()
    assert folder.name == "pair"
    assert [m["name"] for m in read_manifest(folder)["members"]] == ["run-a", "run-b"]
    assert app.selectbox(key="evaluate.source").value == "pair"
    assert app.query_params["run"] == "pair"
    # The evaluation runs in its own process and writes what the page shows next.
    wait_until(lambda: read_job(folder).get("state") in ("finished", "failed"), 180, "the evaluation")
    assert read_job(folder)["state"] == "finished", read_job(folder)
    app.run()
    no_exception(app)
    assert {m.label for m in app.metric} == {"Validation (PublicTest) accuracy",
                                            "Test (PrivateTest) accuracy"}
    members = app.dataframe[0].value
    assert list(members["member"]) == ["run-a", "run-b"]
    assert any("Ensemble of 2 networks" in text for text in texts(app.caption))
    assert read_evaluation(folder)["splits"]["test"]["n"] == 7


def test_a_refused_ensemble_says_why_and_leaves_nothing(two_runs):
    app = open_page("evaluate")
    app.multiselect(key="evaluate.ensemble.runs").set_value(["run-a"])
    make_button(app).click().run()
    no_exception(app)
    assert any("needs at least 2 runs" in text for text in texts(app.error))
    app.multiselect(key="evaluate.ensemble.runs").set_value(["run-a", "run-b"])
    app.text_input(key="evaluate.ensemble.name").set_value("run-a")  # a run's name
    make_button(app).click().run()
    assert any("run-a already exists" in text for text in texts(app.error))
    assert find_ensembles() == []


def test_one_run_is_not_enough_for_the_form():
    fake_run(experiments_dir(), "evaluated")
    app = open_page("evaluate")
    no_exception(app)
    assert not [button for button in app.button if button.label == "Make the ensemble"]
    assert any("It needs at least 2 runs with a model" in text for text in texts(app.caption))


def test_an_ensemble_with_a_missing_member_names_it(two_runs):
    folder = make_ensemble(two_runs, "pair")
    (folder / "members" / "run-b.keras").unlink()
    app = open_page("evaluate", {"run": "pair"})
    no_exception(app)
    assert app.selectbox(key="evaluate.source").value == "pair"
    button = next(button for button in app.button if button.label == "Evaluate this ensemble")
    button.click().run()
    no_exception(app)
    assert any("member run-b is missing" in text for text in texts(app.error))


def test_predict_offers_an_ensemble_and_shows_its_averaged_probabilities(two_runs):
    from pathlib import Path

    import numpy as np
    import skimage
    from app_driver import array, figures

    from fer.predict import Predictor

    folder = make_ensemble(two_runs, "pair")
    photo = (Path(skimage.__file__).parent / "data" / "astronaut.png").read_bytes()
    app = open_page("predict")
    choice = app.selectbox(key="predict.model")
    assert any(option.startswith("pair (ensemble of 2: mini_xception x2") for option in choice.options)
    choice.set_value(str(folder / "ensemble.json")).run()
    app.file_uploader(key="predict.files").set_value([("astronaut.png", photo, "image/png")]).run()
    no_exception(app)
    expected = Predictor.load(folder).predict_image(photo)[0].probabilities
    np.testing.assert_allclose(array(figures(app)[0].data[0].x), expected, atol=1e-5)
