"""The Predict page's face detector choice: BlazeFace by default, Haar selectable, passed to the
predictor; extreme picture shapes give a message, never a traceback."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from app_driver import figures, no_exception, open_page
from PIL import Image

pytestmark = pytest.mark.slow  # loads a Keras model in the test process


@pytest.fixture
def shipped_model_only(tmp_path, monkeypatch):
    """Only the shipped default model is offered (no runs)."""
    from fer import DEFAULT_MODEL_DIR

    if not (DEFAULT_MODEL_DIR / "model.keras").is_file():
        pytest.skip("no shipped default model")
    monkeypatch.setenv("FER_EXPERIMENTS", str(tmp_path / "no-runs"))


@pytest.fixture
def detectors_used(monkeypatch) -> list[str]:
    """The detector of every ``predict_image`` call the page makes."""
    from fer.predict import Predictor

    calls: list[str] = []
    original = Predictor.predict_image

    def spy(self, image, *args, **kwargs):
        calls.append(kwargs.get("detector", "(default)"))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict_image", spy)
    return calls


def astronaut_png() -> bytes:
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    return (Path(skimage.__file__).parent / "data" / "astronaut.png").read_bytes()


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def upload(app, *files):
    app.file_uploader(key="predict.files").set_value(list(files)).run()
    no_exception(app)
    return app


def test_blazeface_is_the_default_detector_and_reaches_the_predictor(shipped_model_only, detectors_used):
    app = open_page("predict")
    no_exception(app)
    detector = app.selectbox(key="predict.detector")
    assert detector.label == "Detector"
    assert detector.value == "blazeface"
    assert detector.options == ["BlazeFace (MediaPipe)", "Haar cascade (OpenCV)"]
    upload(app, ("astronaut.png", astronaut_png(), "image/png"))
    assert not app.error and not app.warning
    assert len(figures(app)) == 1
    assert detectors_used == ["blazeface"]


def test_haar_can_be_chosen(shipped_model_only, detectors_used):
    app = open_page("predict")
    app.selectbox(key="predict.detector").set_value("haar").run()
    upload(app, ("astronaut.png", astronaut_png(), "image/png"))
    assert not app.error and len(figures(app)) == 1
    assert detectors_used and set(detectors_used) == {"haar"}


@pytest.mark.parametrize("detector", ["blazeface", "haar"])
def test_extreme_shapes_say_no_face_found(shipped_model_only, detector):
    """A 4000x3 PNG used to show OpenCV's "inv_scale_x > 0" assertion."""
    app = open_page("predict")
    app.selectbox(key="predict.detector").set_value(detector).run()
    shapes = [(4000, 3), (3, 4000), (2, 4000), (1, 1), (1, 600), (600, 1)]
    upload(app, *[(f"{w}x{h}.png", png(w, h), "image/png") for w, h in shapes])
    assert not app.error
    assert [w.value for w in app.warning] == [f"No face found in {w}x{h}.png." for w, h in shapes]
