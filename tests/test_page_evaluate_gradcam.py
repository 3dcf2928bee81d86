"""Grad-CAM in the Evaluate page's gallery of misclassified faces: off by default, computed for the
shown faces on demand (predicted, true or a chosen class), and a clear note without a usable model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from app_driver import no_exception, open_page, texts
from fake_runs import fake_run

from fer import CLASSES, DEFAULT_MODEL_DIR
from fer.evaluate import read_misclassified
from fer.runs import experiments_dir
from fer.ui import GALLERY_PAGE_SIZE, misclassified_order

SHIPPED = DEFAULT_MODEL_DIR / "model.keras"
pytestmark = pytest.mark.slow  # loads a Keras model in the test process


@pytest.fixture(autouse=True)
def no_shipped_model(tmp_path, monkeypatch):
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")


@pytest.fixture
def explained(monkeypatch):
    """The classes of every Grad-CAM computation (the page's cache starts empty)."""
    from app_pages import explain_view
    from fer.explain import GradCam

    explain_view.heatmaps.clear()
    calls: list[list[int]] = []
    original = GradCam.heatmaps

    def heatmaps(self, faces, classes=None):
        calls.append([int(c) for c in np.atleast_1d(classes)])
        return original(self, faces, classes)

    monkeypatch.setattr(GradCam, "heatmaps", heatmaps)
    return calls


def gallery(app):
    return app.get("image")[-1]


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped model.keras")
def test_gallery_heatmaps_for_predicted_true_or_a_chosen_class(explained):
    run_dir = fake_run(experiments_dir(), "evaluated")
    shutil.copyfile(SHIPPED, run_dir / "model.keras")
    wrong = read_misclassified(run_dir)
    shown = misclassified_order(wrong["true"], wrong["predicted"], wrong["confidence"])[:GALLERY_PAGE_SIZE]
    app = open_page("evaluate")
    no_exception(app)
    captions = gallery(app).captions
    assert len(captions) == len(shown) and not explained
    app.toggle(key="evaluate.gradcam.evaluated.on").set_value(True).run()
    no_exception(app)
    assert explained == [[int(c) for c in wrong["predicted"][shown]]]
    assert gallery(app).captions == captions  # same faces, same order, now with their heatmaps
    assert any(text.startswith("Heatmaps for the predicted class") for text in texts(app.caption))
    app.selectbox(key="evaluate.gradcam.evaluated.class").set_value("true class").run()
    assert explained[-1] == [int(c) for c in wrong["true"][shown]]
    app.selectbox(key="evaluate.gradcam.evaluated.class").set_value("surprise").run()
    assert explained[-1] == [CLASSES.index("surprise")] * len(shown)
    calls = len(explained)
    app.selectbox(key="evaluate.gradcam.evaluated.class").set_value("true class").run()
    assert len(explained) == calls  # cached


def test_gallery_without_a_loadable_model_says_so_and_keeps_the_faces(explained):
    fake_run(experiments_dir(), "evaluated")  # its model.keras is not a Keras archive
    fake_run(experiments_dir(), "no-model", model=False)
    app = open_page("evaluate")
    app.selectbox(key="evaluate.source").set_value("evaluated").run()
    captions = gallery(app).captions
    app.toggle(key="evaluate.gradcam.evaluated.on").set_value(True).run()
    no_exception(app)
    assert any(text.startswith("No Grad-CAM heatmaps for this model: ") for text in texts(app.warning))
    assert gallery(app).captions == captions and not explained
    app.selectbox(key="evaluate.source").set_value("no-model").run()
    app.toggle(key="evaluate.gradcam.no-model.on").set_value(True).run()
    no_exception(app)
    assert "Grad-CAM needs this model's model.keras, which is not here." in texts(app.caption)
