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
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
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
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
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


@pytest.fixture
def explained(monkeypatch):
    """Record the classes of every Grad-CAM computation (the page's cache starts empty)."""
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


def gradcam_captions(app) -> list[str]:
    return [caption for image in app.get("image") for caption in image.captions
            if caption.startswith("Grad-CAM")]


def test_gradcam_shows_a_heatmap_per_face_for_the_predicted_or_a_chosen_class(models, explained):
    app = upload(open_page("predict"), ("astronaut.png", astronaut_png(), "image/png"))
    charts = len(figures(app))
    assert not explained and len(app.get("image")) == 1 + charts  # nothing computed while off
    app.toggle(key="predict.gradcam.on").set_value(True).run()
    no_exception(app)
    top = [CLASSES[int(np.argmax(array(chart.data[0].x)))] for chart in figures(app)]
    assert explained == [[CLASSES.index(name) for name in top]]
    assert len(app.get("image")) == 1 + 2 * charts  # the crop and its heatmap for every face
    assert gradcam_captions(app) == [f"Grad-CAM: what speaks for {name}" for name in top]
    app.selectbox(key="predict.gradcam.class").set_value("fear").run()
    no_exception(app)
    assert explained[-1] == [CLASSES.index("fear")] * charts
    assert gradcam_captions(app) == ["Grad-CAM: what speaks for fear"] * charts
    calls = len(explained)
    app.selectbox(key="predict.gradcam.class").set_value("predicted class").run()
    assert len(explained) == calls  # computed once, then cached


@pytest.fixture
def two_models(trained_run, monkeypatch) -> tuple[Path, Path]:
    """The tiny run and the shipped model."""
    assert trained_run.returncode == 0, trained_run.output[-2000:]
    from fer import DEFAULT_MODEL_DIR

    shipped = DEFAULT_MODEL_DIR / "model.keras"
    if not shipped.is_file():
        pytest.skip("no shipped model.keras to compare with")
    monkeypatch.setenv("FER_EXPERIMENTS", str(trained_run.path.parent))
    return trained_run.path / "model.keras", shipped


def test_a_second_model_shows_its_chart_beside_the_first_for_every_face(two_models):
    from fer.predict import Predictor

    tiny, shipped = two_models
    app = open_page("predict")
    app.selectbox(key="predict.model").set_value(str(tiny)).run()
    compare = app.selectbox(key="predict.compare")
    assert compare.options[0] == "no second model" and len(compare.options) == 2
    compare.set_value(str(shipped)).run()
    upload(app, ("astronaut.png", astronaut_png(), "image/png"))
    expected = {path: Predictor.load(path).predict_image(astronaut_png()) for path in two_models}
    charts = figures(app)
    assert len(charts) == 2 * len(expected[tiny])
    for number, (first, second) in enumerate(zip(charts[::2], charts[1::2], strict=True)):
        for chart, path in ((first, tiny), (second, shipped)):
            probabilities = expected[path][number].probabilities
            np.testing.assert_allclose(array(chart.data[0].x), probabilities, rtol=1e-4, atol=1e-6)
            top = CLASSES[int(probabilities.argmax())]
            assert chart.layout.title.text.startswith(f"face {number + 1}: {top} (")
        assert "tiny" in first.layout.title.text and "shipped default" in second.layout.title.text
    tops = [CLASSES[int(expected[path][0].probabilities.argmax())] for path in two_models]
    verdict = f"Both models: **{tops[0]}**" if tops[0] == tops[1] else \
        f"The models disagree: **{tops[0]}** / **{tops[1]}**"
    assert verdict in texts(app.caption)


def test_predictions_download_as_csv_with_boxes_probabilities_model_and_tta(two_models, monkeypatch):
    import fer.ui
    from fer.predict import Predictor

    written: list[bytes] = []
    original = fer.ui.predictions_csv
    monkeypatch.setattr(fer.ui, "predictions_csv", lambda rows: written.append(original(rows)) or written[-1])
    tiny, shipped = two_models
    app = open_page("predict")
    app.selectbox(key="predict.model").set_value(str(tiny)).run()
    app.selectbox(key="predict.compare").set_value(str(shipped)).run()
    app.selectbox(key="predict.tta").set_value("flip").run()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    upload(app, ("astronaut.png", astronaut_png(), "image/png"), ("=noise.png", png(noise), "image/png"))
    assert [button.label for button in app.get("download_button")] == ["Download the predictions (CSV)"]
    import pandas as pd

    table = pd.read_csv(io.BytesIO(written[-1]))
    assert list(table.columns) == ["file", "face", "x", "y", "width", "height", "whole_image",
                                   *[f"p_{name}" for name in CLASSES], "top_label", "model", "tta",
                                   "detector"]
    expected = {path: Predictor.load(path).predict_image(astronaut_png(), tta="flip") for path in two_models}
    faces = len(expected[tiny])
    assert len(table) == 2 * faces  # the face-less picture has no row
    assert set(table["file"]) == {"astronaut.png"} and set(table["tta"]) == {"flip"}
    for path, rows in zip(two_models, (table[:faces], table[faces:]), strict=True):
        assert rows["model"].str.startswith("tiny" if path == tiny else "shipped default").all()
        for (_, row), result in zip(rows.iterrows(), expected[path], strict=True):
            assert (row["x"], row["y"], row["width"], row["height"]) == tuple(result.box)
            probabilities = row[[f"p_{name}" for name in CLASSES]].to_numpy(dtype=float)
            np.testing.assert_allclose(probabilities, result.probabilities, atol=1e-5)
            assert row["top_label"] == result.label and not row["whole_image"]
            assert row["detector"] == getattr(result, "detector", "") or pd.isna(row["detector"])
    # Classify the face-less picture whole: its row says so, and its name cannot run as a formula.
    next(box for box in app.checkbox if box.label == "Classify the whole image").check().run()
    table = pd.read_csv(io.BytesIO(written[-1]))
    whole = table[table["whole_image"]]
    assert list(whole["file"]) == ["'=noise.png"] * 2 and set(whole["detector"]) == {"none"}
