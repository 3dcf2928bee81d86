"""Predictor: model loading (safe_mode), face detection on a real photo, bad uploads."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer import CLASSES, DEFAULT_MODEL_DIR

keras = pytest.importorskip("keras")

from fer.config import TrainConfig  # noqa: E402
from fer.faces import HAAR, ImageError, read_image, read_image_for_detection  # noqa: E402
from fer.models import build_model  # noqa: E402
from fer.predict import DIRECT_CALL_MAX_FACES, FaceResult, ModelError, Predictor  # noqa: E402
from fer.ui import draw_boxes  # noqa: E402


def astronaut_png() -> bytes:
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    return (Path(skimage.__file__).parent / "data" / "astronaut.png").read_bytes()


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """An untrained mini-Xception saved as .keras: enough to test the plumbing."""
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model(TrainConfig(architecture="mini_xception")).save(path)
    return path


@pytest.fixture(scope="module")
def predictor(model_path) -> Predictor:
    return Predictor.load(model_path)


def test_predict_faces_returns_probabilities_in_class_order(predictor):
    """(n, 48, 48) faces give (n, 7) rows that sum to one."""
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    probs = predictor.predict_faces(faces)
    assert probs.shape == (5, len(CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


def test_flip_tta_is_mirror_invariant(predictor):
    """With test-time augmentation a face and its mirror image get the same probabilities."""
    face = np.random.default_rng(1).integers(0, 256, (1, 48, 48), dtype=np.uint8)
    a = predictor.predict_faces(face, tta="flip")
    b = predictor.predict_faces(face[:, :, ::-1], tta="flip")
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_ten_crop_tta_is_mirror_invariant_and_a_distribution(predictor):
    """Ten-crop views come in mirror pairs, so a face and its mirror get the same probabilities."""
    faces = np.random.default_rng(2).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    a = predictor.predict_faces(faces, tta="ten_crop")
    b = predictor.predict_faces(faces[:, :, ::-1], tta="ten_crop")
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(a, predictor.predict_faces(faces))


def test_ten_crops_are_the_corners_and_centre_and_their_mirrors():
    from fer.tta import ten_crops

    faces = np.arange(2 * 48 * 48, dtype=np.float32).reshape(2, 48, 48)
    crops = ten_crops(faces, size=48)
    assert len(crops) == 10 and all(c.shape == (2, 48, 48) for c in crops)
    np.testing.assert_array_equal(crops[5], faces[:, :, ::-1])
    resized = ten_crops(faces, size=24)
    # The top-left crop resized back to 48x48 starts with the top-left pixel.
    assert resized[0].shape == (2, 48, 48) and resized[0][0, 0, 0] == faces[0, 0, 0]
    assert resized[3][0, -1, -1] == faces[0, -1, -1]
    np.testing.assert_array_equal(resized[6], resized[1][:, :, ::-1])


def test_ten_crop_uses_the_crop_side_the_model_was_trained_with(tmp_path, predictor):
    """A run trained on random 40x40 crops is evaluated on 40x40 ten-crops; others on 44x44."""
    import shutil

    from fer.tta import TEN_CROP_SIZE

    assert predictor.crop_size == TEN_CROP_SIZE
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(predictor.path, run / "model.keras")
    TrainConfig(crop=40).save(run / "config.json")
    assert Predictor.load(run).crop_size == 40


def test_unknown_tta_mode_is_refused_with_the_choices(predictor):
    with pytest.raises(ValueError, match="ten_crop"):
        predictor.predict_faces(np.zeros((1, 48, 48)), tta="five_crop")


def test_large_batches_match_small_batches(predictor, monkeypatch):
    """More faces than one direct call takes go through the batched predict() path, and agree
    with the direct call."""
    count = DIRECT_CALL_MAX_FACES + 44
    faces = np.random.default_rng(2).integers(0, 256, (count, 48, 48), dtype=np.uint8)
    batched_calls = []
    predict = predictor.model.predict
    monkeypatch.setattr(predictor.model, "predict",
                        lambda batch, **kwargs: batched_calls.append(len(batch)) or predict(batch, **kwargs))
    large = predictor.predict_faces(faces)
    assert batched_calls == [count]
    direct = predictor.predict_faces(faces[-10:])
    assert batched_calls == [count]  # ten faces: the direct call
    np.testing.assert_allclose(large[-10:], direct, atol=1e-4)


def test_finds_the_astronauts_face(predictor):
    """The Haar cascade shipped with OpenCV finds the one face in a real photo."""
    results = predictor.predict_image(astronaut_png())
    assert len(results) == 1
    x, y, w, h = results[0].box
    assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 200  # her face, not the flag or suit
    assert results[0].face.shape == (48, 48)
    assert draw_boxes(read_image(astronaut_png()), results).size == (512, 512)


def test_exif_rotated_photo_is_turned_upright_before_detection(predictor):
    """A phone photo stored sideways with an EXIF orientation tag still has its face found."""
    upright = Image.open(io.BytesIO(astronaut_png())).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # the viewer must turn the stored pixels 90 degrees counter-clockwise
    data = encode(stored, "JPEG", exif=exif.tobytes())
    shown = np.asarray(read_image(data), dtype=np.float32)
    assert np.abs(shown - np.asarray(upright, dtype=np.float32)).mean() < 8  # upright again
    assert len(predictor.predict_image(data)) == 1


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_large_jpeg_is_decoded_reduced_and_boxes_stay_in_the_photos_pixels(predictor, orientation):
    """BlazeFace needs at most 512 pixels: a 1024-pixel JPEG is decoded at half size (its decoder
    does that for free), and the results match those on the full picture."""
    stored = Image.open(io.BytesIO(astronaut_png())).convert("RGB").resize((1024, 1024), Image.LANCZOS)
    exif = Image.Exif()
    exif[0x0112] = orientation  # 6: the viewer turns the stored pixels 90 degrees clockwise
    data = encode(stored, "JPEG", quality=90, exif=exif.tobytes())
    image, factor = read_image_for_detection(data)
    assert image.size == (512, 512) and factor == 2.0
    assert read_image_for_detection(data, HAAR)[1] == 1.0  # Haar looks at 1024 pixels
    assert read_image_for_detection(encode(stored, "PNG"))[1] == 1.0  # only JPEG reduces for free

    fast = predictor.predict_image(data)
    full = predictor.predict_image(read_image(data))
    assert len(fast) == len(full) == 1
    assert np.abs(np.subtract(fast[0].box, full[0].box)).max() <= 0.02 * 1024, (fast[0].box, full[0].box)
    difference = np.abs(fast[0].face.astype(np.float32) - full[0].face.astype(np.float32)).mean()
    assert difference < 10, difference  # the same 48x48 crop, give or take a few pixels of box
    shipped = Predictor.load(DEFAULT_MODEL_DIR)
    fast, full = shipped.predict_image(data), shipped.predict_image(read_image(data))
    assert fast[0].label == full[0].label == "happy"
    assert np.abs(fast[0].probabilities - full[0].probabilities).max() < 0.1
    whole = predictor.predict_image(encode(Image.new("RGB", (1600, 900), "gray"), "JPEG"),
                                    whole_image_if_no_face=True)
    assert whole[0].whole_image and whole[0].box == (0, 0, 1600, 900)


def test_no_face_gives_no_result_unless_whole_image_is_asked(predictor):
    """A blank picture has no face; the whole-image option still classifies it."""
    data = encode(Image.new("RGB", (200, 120), (200, 200, 200)), "PNG")
    assert predictor.predict_image(data) == []
    results = predictor.predict_image(data, whole_image_if_no_face=True)
    assert len(results) == 1 and results[0].whole_image


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "L", "I;16", "P"])
def test_unusual_pixel_formats_decode_to_rgb(mode):
    """CMYK JPEGs, 16-bit and RGBA PNGs, palette images all become RGB."""
    image = Image.new("RGB", (64, 64), (10, 120, 240)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16))
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    assert read_image(encode(image, fmt)).mode == "RGB"


def test_animated_gif_uses_first_frame():
    """An animated GIF is read as its first frame."""
    frames = [Image.new("P", (32, 32), color) for color in (1, 2, 3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert read_image(data).size == (32, 32)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"just some text, not a picture", "not an image"),
])
def test_bad_uploads_get_a_clear_message(data, message):
    """Empty and non-image files raise ImageError with words a user understands."""
    with pytest.raises(ImageError, match=message):
        read_image(data)


def test_truncated_jpeg_is_refused():
    """Half a JPEG is reported as damaged, not a traceback."""
    data = encode(Image.new("RGB", (300, 300), (1, 2, 3)), "JPEG")
    with pytest.raises(ImageError, match="damaged or truncated"):
        read_image(data[: len(data) // 2])


def test_huge_image_is_refused_before_decoding():
    """A 100-megapixel image (or a decompression bomb) is refused from its header."""
    data = encode(Image.new("1", (10_000, 10_000)), "PNG")
    with pytest.raises(ImageError, match="too large"):
        read_image(data)


def test_missing_model_is_a_model_error(tmp_path):
    """A folder without model.keras gives a clear ModelError."""
    with pytest.raises(ModelError, match="no model"):
        Predictor.load(tmp_path)


def test_lambda_layers_are_refused(tmp_path):
    """A .keras file with a Lambda layer (arbitrary code) is never loaded."""
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(7, activation="softmax")(x)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelError, match="Lambda"):
        Predictor.load(path)


def test_non_fer_models_are_refused(tmp_path):
    """A model with the wrong input or output shape is refused with the shapes in the message."""
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(inputs))
    path = tmp_path / "other.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelError, match="not a FER model"):
        Predictor.load(path)


def test_other_formats_are_refused(tmp_path):
    """Only .keras files are loaded (no HDF5 or pickles)."""
    path = tmp_path / "model.h5"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match="not a .keras"):
        Predictor.load(path)


def _text_rows(image: Image.Image) -> np.ndarray:
    """Rows of ``image`` (a grey photo) that hold white label text."""
    return np.where((np.asarray(image) == 255).all(axis=2).any(axis=1))[0]


def test_box_labels_are_drawn_large_enough_to_read_and_stay_inside_the_image():
    """The label on a face box scales with the photo (not an 11-pixel bitmap font) and moves
    below the box when the face touches the top edge."""
    probabilities = np.eye(len(CLASSES), dtype=np.float32)[3]
    face = np.zeros((48, 48), np.uint8)
    photo = Image.new("RGB", (1200, 900), (128, 128, 128))
    middle = draw_boxes(photo, [FaceResult((400, 300, 300, 300), probabilities, face)])
    rows = _text_rows(middle)
    assert rows.max() - rows.min() >= 15 and rows.max() < 300  # legible, above the box
    top = draw_boxes(photo, [FaceResult((400, 0, 300, 300), probabilities, face)])
    rows = _text_rows(top)
    assert rows.max() - rows.min() >= 15 and rows.min() > 300  # moved below the box
