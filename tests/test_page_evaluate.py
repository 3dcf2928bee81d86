"""The Evaluate page: accuracies, the normalised confusion matrix, the report and the gallery."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from app_driver import array, figures, no_exception, open_page, texts
from fake_runs import fake_run

from fer import CLASSES
from fer.evaluate import read_evaluation, read_misclassified
from fer.runs import experiments_dir
from fer.ui import GALLERY_PAGE_SIZE, percent


@pytest.fixture(autouse=True)
def no_shipped_model(tmp_path, monkeypatch):
    """Whether or not a default model is shipped, these tests see only their own runs."""
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")


def gallery_captions(app) -> list[str]:
    images = app.get("image")
    return images[-1].captions if images else []


def test_without_models_it_points_to_the_train_page():
    app = open_page("evaluate")
    no_exception(app)
    assert "No run has a model yet" in app.info[0].value


def test_accuracies_of_both_splits_with_their_descriptions():
    run_dir = fake_run(experiments_dir(), "evaluated")
    metrics = read_evaluation(run_dir)
    app = open_page("evaluate")
    no_exception(app)
    shown = {m.label: m.value for m in app.metric}
    assert shown == {"Validation (PublicTest) accuracy": percent(metrics["splits"]["val"]["accuracy"]),
                     "Test (PrivateTest) accuracy": percent(metrics["splits"]["test"]["accuracy"])}
    assert any(r"PrivateTest (test/PrivateTest\_\*)" in text for text in texts(app.caption))  # escaped


def test_confusion_matrix_is_row_normalised_with_counts_on_hover():
    run_dir = fake_run(experiments_dir(), "evaluated")
    counts = np.array(read_evaluation(run_dir)["splits"]["test"]["confusion_matrix"])
    app = open_page("evaluate")
    heatmap = figures(app)[0]
    trace = heatmap.data[0]
    share = array(trace.z)
    np.testing.assert_allclose(share.sum(axis=1), 1.0)
    np.testing.assert_array_equal(array(trace.customdata), counts)
    assert list(trace.x) == list(trace.y) == list(CLASSES)
    assert heatmap.layout.xaxis.title.text == "predicted"
    assert heatmap.layout.yaxis.title.text == "true"
    assert trace.text[0][0].endswith("%")


def test_validation_split_can_be_shown_instead_of_test():
    run_dir = fake_run(experiments_dir(), "evaluated")
    counts = np.array(read_evaluation(run_dir)["splits"]["val"]["confusion_matrix"])
    app = open_page("evaluate")
    app.segmented_control(key="evaluate.split").set_value("val").run()
    np.testing.assert_array_equal(array(figures(app)[0].data[0].customdata), counts)


def test_per_class_report_lists_classes_in_canonical_order():
    fake_run(experiments_dir(), "evaluated")
    app = open_page("evaluate")
    report = app.dataframe[0].value
    assert list(report.index) == [*CLASSES, "macro avg", "weighted avg"]
    assert list(report.columns) == ["precision", "recall", "F1", "support"]
    assert report.loc["angry", "support"] == 30


def test_gallery_shows_most_confident_mistakes_first_filtered_by_class():
    run_dir = fake_run(experiments_dir(), "evaluated")
    wrong = read_misclassified(run_dir)
    app = open_page("evaluate")
    app.multiselect(key="evaluate.true.evaluated").set_value(["happy"]).run()
    captions = gallery_captions(app)
    expected = np.sort(wrong["confidence"][wrong["true"] == CLASSES.index("happy")])[::-1]
    assert len(captions) == len(expected) > 0
    assert all(caption.startswith("happy → ") for caption in captions)
    assert [caption.rsplit("(", 1)[1] for caption in captions] == [f"{c:.0%})" for c in expected]
    app.multiselect(key="evaluate.predicted.evaluated").set_value(["angry"]).run()
    assert all(caption.startswith("happy → angry") for caption in gallery_captions(app))


def test_gallery_is_paginated():
    run_dir = fake_run(experiments_dir(), "evaluated")
    total = len(read_misclassified(run_dir)["true"])
    assert total > GALLERY_PAGE_SIZE  # 210 faces, about 40% of them wrong
    app = open_page("evaluate")
    assert len(gallery_captions(app)) == GALLERY_PAGE_SIZE
    pagination = app.get("pagination")[0]
    pagination.set_value(pagination.num_pages).run()
    assert len(gallery_captions(app)) == total - GALLERY_PAGE_SIZE * (pagination.num_pages - 1)


def test_stopped_run_without_evaluation_explains_how_to_get_one():
    fake_run(experiments_dir(), "halfway", state="stopped", evaluation=False)
    app = open_page("evaluate")
    no_exception(app)
    assert "no evaluation yet" in app.info[0].value
    assert texts(app.code)[0].startswith("python -m fer.evaluate --run ")
    assert texts(app.code)[0].endswith("halfway")


def test_query_param_picks_the_run_and_bad_ids_are_reported():
    fake_run(experiments_dir(), "first", created=1000)
    fake_run(experiments_dir(), "second", created=2000)
    assert open_page("evaluate", {"run": "first"}).selectbox(key="evaluate.source").value == "first"
    app = open_page("evaluate", {"run": "../../etc"})
    no_exception(app)
    assert app.selectbox(key="evaluate.source").value == "second"
    assert "invalid run id" in app.warning[0].value


def test_shipped_default_model_is_listed_first(tmp_path, monkeypatch):
    default = fake_run(tmp_path / "assets", "default_model")
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", default)
    fake_run(experiments_dir(), "mine")
    app = open_page("evaluate")
    assert app.selectbox(key="evaluate.source").options == ["Shipped default model", "mine (finished)"]
    assert len(app.metric) == 2


@pytest.mark.slow
def test_a_really_trained_run_is_evaluated(trained_run, monkeypatch):
    """The eval/ folder the training worker writes is what this page reads."""
    assert trained_run.returncode == 0, trained_run.output[-2000:]
    monkeypatch.setenv("FER_EXPERIMENTS", str(trained_run.path.parent))
    app = open_page("evaluate")
    no_exception(app)
    assert len(app.metric) == 2
    assert figures(app)


def test_ten_crop_results_show_with_their_gain_over_no_tta():
    """A run evaluated with ten-crop TTA shows those numbers, with the change against no TTA."""
    from fake_runs import fake_split

    from fer.evaluate import write_evaluation

    run_dir = fake_run(experiments_dir(), "evaluated")
    val, val_probs = fake_split(30, seed=3)
    test, test_probs = fake_split(30, seed=4)
    tta = write_evaluation(run_dir / "eval-ten_crop", {"val": val, "test": test},
                           {"val": val_probs, "test": test_probs}, {"tta": "ten_crop"})
    plain = read_evaluation(run_dir)
    app = open_page("evaluate")
    app.button_group(key="evaluate.tta").set_value("ten_crop").run()
    no_exception(app)
    shown = {m.label: (m.value, m.delta) for m in app.metric}
    gain = (tta["splits"]["test"]["accuracy"] - plain["splits"]["test"]["accuracy"]) * 100
    assert shown["Test (PrivateTest) accuracy"] == (percent(tta["splits"]["test"]["accuracy"]),
                                                     f"{gain:+.1f} points vs no TTA")
    counts = np.array(tta["splits"]["test"]["confusion_matrix"])
    np.testing.assert_array_equal(array(figures(app)[0].data[0].customdata), counts)


def test_missing_tta_evaluation_is_offered_and_a_bad_model_gets_a_message():
    """Without eval-flip/ the page offers to compute it; a model that cannot load is an error, not a crash."""
    fake_run(experiments_dir(), "evaluated")  # its model.keras is not a real model
    app = open_page("evaluate")
    app.button_group(key="evaluate.tta").set_value("flip").run()
    assert "not been evaluated with mirror" in app.info[0].value
    app.button(key="evaluate.run_tta.flip").click().run()
    no_exception(app)
    assert any(text.startswith("Could not evaluate:") for text in texts(app.error))


# ---- test-time augmentation evaluated in the background --------------------------------------------

def test_tta_evaluation_under_way_shows_live_progress_and_stops():
    """A job evaluating in the background: its progress and time left, the results without TTA
    meanwhile, and Stop, which ends its process (a stand-in holding the job's lock)."""
    from test_evaluation_jobs import hold_job_lock

    run_dir = fake_run(experiments_dir(), "evaluated")
    holder = hold_job_lock(run_dir, "ten_crop", predicting=time.time() - 10, batch=5, batches=15)
    try:
        app = open_page("evaluate")
        app.button_group(key="evaluate.tta").set_value("ten_crop").run()
        no_exception(app)
        progress = app.get("progress")[0].proto
        assert progress.value == 33
        prefix = "Evaluating with ten-crop test-time augmentation: Batch 5 of 15 · about "
        assert progress.text.startswith(prefix) and progress.text.endswith(" s left")
        # 2 s a batch so far: 20 s for the other 10, less the time since the last batch.
        assert 0 < int(progress.text[len(prefix):].split()[0]) <= 20
        assert len(app.metric) == 2  # the results without TTA, meanwhile
        assert [b.key for b in app.button if b.key == "evaluate.run_tta.ten_crop"] == []
        app.button(key="evaluate.stop_tta.ten_crop").click().run()
        assert holder.wait(timeout=10) == -signal.SIGTERM
        app.run()
        no_exception(app)
        assert any("was stopped before it finished (batch 5 of 15)" in text for text in texts(app.warning))
        assert app.button(key="evaluate.run_tta.ten_crop")  # offered again
    finally:
        holder.kill()


def test_a_killed_tta_evaluation_reads_interrupted_and_can_be_started_again():
    from test_evaluation_jobs import hold_job_lock

    run_dir = fake_run(experiments_dir(), "evaluated")
    holder = hold_job_lock(run_dir, "flip", predicting=time.time(), batch=1, batches=4)
    holder.kill()  # kill -9: nothing recorded
    holder.wait()
    app = open_page("evaluate")
    app.button_group(key="evaluate.tta").set_value("flip").run()
    no_exception(app)
    assert not app.get("progress")
    assert any("ended without finishing (batch 1 of 4)" in text for text in texts(app.warning))
    assert app.button(key="evaluate.run_tta.flip")


# ---- confusion-matrix cells filter the gallery ------------------------------------------------------

def click_cell(app, true: str, predicted: str, chart: str = "evaluate.matrix.evaluated.none.test.0"):
    """What the browser sends when a cell is clicked: the selection state of the chart."""
    point = {"curve_number": 1, "point_number": 0, "point_index": 0, "x": predicted, "y": true}
    app.session_state[chart] = {"selection": {"points": [point], "point_indices": [0], "box": [],
                                              "lasso": []}}
    return app.run()


def test_clicking_a_confusion_matrix_cell_filters_the_gallery_and_clear_resets_it():
    run_dir = fake_run(experiments_dir(), "evaluated")
    wrong = read_misclassified(run_dir)
    app = open_page("evaluate")
    assert app.button(key="evaluate.clear.evaluated").disabled
    click_cell(app, "happy", "angry")
    no_exception(app)
    assert app.multiselect(key="evaluate.true.evaluated").value == ["happy"]
    assert app.multiselect(key="evaluate.predicted.evaluated").value == ["angry"]
    pair = (wrong["true"] == CLASSES.index("happy")) & (wrong["predicted"] == CLASSES.index("angry"))
    expected = int(pair.sum())
    captions = gallery_captions(app)
    assert len(captions) == expected > 0 and all(c.startswith("happy → angry") for c in captions)
    # The filters stay editable while the cell stays selected (the keyboard way to the same pairs).
    app.multiselect(key="evaluate.predicted.evaluated").set_value(["angry", "sad"]).run()
    assert app.multiselect(key="evaluate.predicted.evaluated").value == ["angry", "sad"]
    app.button(key="evaluate.clear.evaluated").click().run()
    no_exception(app)
    assert app.multiselect(key="evaluate.true.evaluated").value == []
    assert app.multiselect(key="evaluate.predicted.evaluated").value == []
    assert len(gallery_captions(app)) == GALLERY_PAGE_SIZE
    # The chart has a new key: the old selection is gone and a new click applies again.
    click_cell(app, "sad", "neutral", "evaluate.matrix.evaluated.none.test.1")
    assert all(c.startswith("sad → neutral") for c in gallery_captions(app))


def test_a_diagonal_cell_says_the_gallery_holds_mistakes_only():
    fake_run(experiments_dir(), "evaluated")
    app = open_page("evaluate")
    click_cell(app, "fear", "fear")
    no_exception(app)
    assert any("holds the faces classified correctly" in text for text in texts(app.caption))
    assert not app.get("image")


# ---- comparing two models ----------------------------------------------------------------------------

def other_model(run_id: str = "other") -> Path:
    """A second evaluated run whose predictions differ from fake_run's."""
    from fake_runs import fake_split

    from fer.evaluate import write_evaluation

    run_dir = fake_run(experiments_dir(), run_id, created=1000)
    val, val_probs = fake_split(30, seed=5)
    test, test_probs = fake_split(30, seed=6)
    write_evaluation(run_dir / "eval", {"val": val, "test": test}, {"val": val_probs, "test": test_probs})
    return run_dir


def test_two_models_compare_side_by_side_with_their_difference_and_f1_deltas():
    from fer.ui import row_shares

    mine = read_evaluation(fake_run(experiments_dir(), "evaluated", created=2000))["splits"]["test"]
    theirs = read_evaluation(other_model())["splits"]["test"]
    app = open_page("evaluate")
    assert app.selectbox(key="evaluate.source").value == "evaluated"
    compare = app.selectbox(key="evaluate.compare.evaluated")
    assert compare.value is None and compare.options == ["other (finished)"]
    assert len(figures(app)) == 1
    compare.set_value("other").run()
    no_exception(app)
    charts = figures(app)
    assert len(charts) == 5  # this model's matrix; both side by side; the difference; F1 deltas
    np.testing.assert_array_equal(array(charts[1].data[0].customdata), mine["confusion_matrix"])
    np.testing.assert_array_equal(array(charts[2].data[0].customdata), theirs["confusion_matrix"])
    difference = (row_shares(mine["confusion_matrix"]) - row_shares(theirs["confusion_matrix"])) * 100
    np.testing.assert_allclose(array(charts[3].data[0].z), difference)
    assert charts[3].data[0].zmid == 0
    table = app.dataframe[-1].value
    assert list(table.columns) == ["evaluated", "other", "evaluated minus other"]
    for name in CLASSES:
        delta = mine["report"][name]["f1-score"] - theirs["report"][name]["f1-score"]
        assert table.loc[name, "evaluated minus other"] == pytest.approx(delta * 100)
    np.testing.assert_allclose(array(charts[4].data[0].x), table["evaluated minus other"].to_numpy())
    shown = {m.label: m.delta for m in app.metric}
    gain = (mine["accuracy"] - theirs["accuracy"]) * 100
    assert shown["evaluated: Test (PrivateTest) accuracy"] == f"{gain:+.1f} points vs other"


def test_comparison_without_tta_evaluation_falls_back_and_a_lone_model_has_none():
    fake_run(experiments_dir(), "evaluated", created=2000)
    app = open_page("evaluate")
    assert any("Train another model to compare" in text for text in texts(app.caption))
    other_model()
    from fake_runs import fake_split

    from fer.evaluate import write_evaluation

    val, val_probs = fake_split(30, seed=7)
    test, test_probs = fake_split(30, seed=8)
    evaluated = experiments_dir() / "evaluated"
    write_evaluation(evaluated / "eval-flip", {"val": val, "test": test},
                     {"val": val_probs, "test": test_probs}, {"tta": "flip"})
    app = open_page("evaluate")
    app.button_group(key="evaluate.tta").set_value("flip").run()
    app.selectbox(key="evaluate.compare.evaluated").set_value("other").run()
    no_exception(app)
    assert any("other has no mirror evaluation" in text for text in texts(app.caption))
    assert len(figures(app)) == 5
