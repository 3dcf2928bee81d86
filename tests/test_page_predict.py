"""The Predict page: model choice, uploads, faces with probabilities, no-face and bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from app_driver import array, figures, no_exception, open_page, texts
from PIL import Image

from fer import CLASSES

pytestmark = pytest.mark.slow  # loads a Keras model in the test process


@pytest.fixture
def models(trained_run, tmp_path, monkeypatch) -> Path:
    """Only the session's trained tiny run is offered (whether or not a default model ships)."""
    assert trained_run.returncode == 0, trained_run.output[-2000:]
    monkeypatch.setenv("FER_EXPERIMENTS", str(trained_run.path.parent))
    monkeypatch.setattr("fer.predict.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    return trained_run.path / "model.keras"


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def astronaut_png() -> bytes:
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    return (Path(skimage.__file__).parent / "data" / "astronaut.png").read_bytes()


def upload(app, *files: tuple[str, bytes, str]):
    app.file_uploader(key="predict.files").set_value(list(files)).run()
    no_exception(app)
    return app


def test_without_models_it_points_to_the_train_page(tmp_path, monkeypatch):
    monkeypatch.setattr("fer.predict.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    app = open_page("predict")
    no_exception(app)
    assert "No model yet" in app.info[0].value


def test_model_choice_lists_finished_runs(models):
    app = open_page("predict")
    no_exception(app)
    choice = app.selectbox(key="predict.model")
    assert choice.value == str(models)
    assert "tiny" in choice.options[0]


def test_photo_shows_each_face_with_its_probabilities(models):
    app = upload(open_page("predict"), ("astronaut.png", astronaut_png(), "image/png"))
    assert not app.error and not app.warning
    charts = figures(app)
    assert len(charts) >= 1
    bars = charts[0].data[0]
    assert list(bars.y) == list(CLASSES)
    top = CLASSES[int(np.argmax(array(bars.x)))]
    assert charts[0].layout.title.text.startswith(f"face 1: {top} (")
    # The photo with its boxes, then the face crop the model saw (48x48 upscaled).
    assert len(app.get("image")) == 1 + len(charts)


def test_picture_without_a_face_can_be_classified_whole(models):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    app = upload(open_page("predict"), ("noise.png", png(noise), "image/png"))
    assert "No face found in noise.png" in app.warning[0].value
    assert not figures(app)
    whole = next(box for box in app.checkbox if box.label == "Classify the whole image")
    whole.check().run()
    no_exception(app)
    assert figures(app)[0].layout.title.text.startswith("whole image: ")


def test_corrupt_file_is_an_error_message_not_a_traceback(models):
    face = np.full((48, 48), 128, dtype=np.uint8)
    app = upload(open_page("predict"), ("broken.png", b"\x89PNG\r\n\x1a\n not really", "image/png"),
                 ("face.png", png(face), "image/png"))
    errors = texts(app.error)
    assert len(errors) == 1 and errors[0].startswith("broken.png: ")
    # The good file next to it is still handled.
    assert any("face.png" in text for text in texts(app.warning))


@pytest.mark.parametrize("mode", ["flip", "ten_crop"])
def test_test_time_augmentation_option_reaches_the_predictor(models, mode):
    """With a TTA mode chosen, the bars are that mode's averaged probabilities of the Predictor."""
    from fer.predict import Predictor

    expected = Predictor.load(models).predict_image(astronaut_png(), tta=mode)[0].probabilities
    app = open_page("predict")
    app.selectbox(key="predict.tta").set_value(mode).run()
    upload(app, ("astronaut.png", astronaut_png(), "image/png"))
    np.testing.assert_allclose(array(figures(app)[0].data[0].x), expected, rtol=1e-4, atol=1e-6)
