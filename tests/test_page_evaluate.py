"""The Evaluate page: accuracies, the normalised confusion matrix, the report and the gallery."""

from __future__ import annotations

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
