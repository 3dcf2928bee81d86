"""Face detectors: BlazeFace (default) and Haar, choosing one, falling back to Haar, aligned crops,
and pictures of extreme shapes (1xN, Nx1, 2x4000, 4000x3, 1x1) through the whole prediction."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer import faces
from fer.faces import BLAZEFACE, DEFAULT_DETECTOR, DETECTORS, HAAR, face_crop, find_faces

ASTRONAUT_FACE = (226.0, 118.0)  # the centre of her face in astronaut.png (512x512)


def astronaut() -> np.ndarray:
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    return np.asarray(Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB"))


def turned(image: np.ndarray, angle: float) -> np.ndarray:
    """``image`` turned ``angle`` degrees (counter-clockwise on screen) about her face."""
    import cv2

    matrix = cv2.getRotationMatrix2D(ASTRONAUT_FACE, angle, 1.0)
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT_101)


def png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(width * 7 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


@pytest.fixture
def fresh_detectors(monkeypatch):
    """This thread's BlazeFace forgotten (before and after), so a test can make it fail to load."""
    monkeypatch.setattr(faces, "_BLAZE", faces.threading.local())
    yield
    faces._BLAZE.__dict__.clear()


def test_blazeface_is_the_default_and_haar_is_a_choice():
    assert DEFAULT_DETECTOR == BLAZEFACE == next(iter(DETECTORS))
    assert set(DETECTORS) == {BLAZEFACE, HAAR}


@pytest.mark.parametrize("detector", [BLAZEFACE, HAAR])
def test_both_detectors_find_the_astronauts_one_face(detector):
    found, used = find_faces(astronaut(), detector)
    assert used == detector
    assert len(found) == 1
    cx, cy = centre(found[0].box)
    assert math.hypot(cx - ASTRONAUT_FACE[0], cy - ASTRONAUT_FACE[1]) < 25
    assert 70 <= found[0].box[2] <= 140
    # Only BlazeFace gives eye positions; her eye on the image's left comes first.
    assert (found[0].eyes is None) == (detector == HAAR)
    if detector == BLAZEFACE:
        (lx, ly), (rx, ry) = found[0].eyes
        assert lx < rx and abs(ly - ry) < 15 and cy - 50 < ly < cy


def test_gray_pictures_work_with_both_detectors():
    gray = np.asarray(Image.fromarray(astronaut()).convert("L"))
    for detector in DETECTORS:
        assert len(find_faces(gray, detector)[0]) == 1


def test_unknown_detector_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="blazeface, haar"):
        find_faces(astronaut(), "yolo")


@pytest.mark.parametrize("angle", [-45, -30, -15, 15, 30, 45])
def test_blazeface_finds_a_turned_face_and_levels_its_eyes(angle):
    """Haar misses faces tilted more than about 30 degrees; BlazeFace finds them, and the aligned
    crop of the turned face looks like the crop of the upright one (the unaligned one does not)."""
    upright = astronaut()
    gray = np.asarray(Image.fromarray(upright).convert("L"))
    reference = face_crop(gray, find_faces(upright)[0][0]).astype(np.float64)
    photo = turned(upright, angle)
    found, used = find_faces(photo)
    assert used == BLAZEFACE and len(found) == 1
    cx, cy = centre(found[0].box)
    assert math.hypot(cx - ASTRONAUT_FACE[0], cy - ASTRONAUT_FACE[1]) < 30
    (lx, ly), (rx, ry) = found[0].eyes
    assert abs(-math.degrees(math.atan2(ry - ly, rx - lx)) - angle) < 12
    turned_gray = np.asarray(Image.fromarray(photo).convert("L"))
    aligned = face_crop(turned_gray, found[0], align=True).astype(np.float64)
    unaligned = face_crop(turned_gray, found[0], align=False).astype(np.float64)
    assert np.abs(aligned - reference).mean() < np.abs(unaligned - reference).mean()
    if abs(angle) >= 30:
        assert np.abs(aligned - reference).mean() < 0.6 * np.abs(unaligned - reference).mean()


def test_a_close_up_that_fills_the_picture_is_found():
    photo = astronaut()
    x, y = int(ASTRONAUT_FACE[0]), int(ASTRONAUT_FACE[1])
    close_up = np.ascontiguousarray(photo[y - 50:y + 50, x - 50:x + 50])  # the face fills it
    found, _ = find_faces(close_up)
    assert len(found) == 1 and found[0].box[2] >= 60


def test_small_faces_beside_a_large_one_are_found():
    """The sheet of ten faces and a large face: the large one and the small ones are all found."""
    import cv2

    photo = astronaut()
    x, y = int(ASTRONAUT_FACE[0]), int(ASTRONAUT_FACE[1])
    face = photo[y - 90:y + 90, x - 90:x + 90]
    canvas = np.full((900, 1400, 3), 235, np.uint8)
    canvas[:720, :720] = cv2.resize(face, (720, 720))
    small = cv2.resize(face, (180, 180))
    for k in range(3):
        canvas[60 + k * 260:240 + k * 260, 1000:1180] = small
    found, _ = find_faces(canvas)
    sides = sorted(f.box[2] for f in found)
    assert len(found) == 4, [f.box for f in found]
    assert sides[-1] > 300 and sides[0] < 150


def test_haar_is_used_when_the_blazeface_model_is_missing(fresh_detectors, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(faces, "FACE_MODELS_DIR", tmp_path / "no-models")
    with caplog.at_level("WARNING", logger="fer.faces"):
        found, used = find_faces(astronaut())
    assert used == HAAR and len(found) == 1 and found[0].eyes is None
    assert "is missing" in caplog.text and "using the Haar cascade" in caplog.text
    # Remembered: the next call falls back at once, with the same message.
    with pytest.raises(faces.DetectorError, match="is missing"):
        faces.blaze_detector()


def test_haar_is_used_when_the_blazeface_model_is_damaged(fresh_detectors, monkeypatch, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / faces.SHORT_RANGE.file).write_bytes(b"not a tflite model" * 100)
    monkeypatch.setattr(faces, "FACE_MODELS_DIR", folder)
    found, used = find_faces(astronaut())
    assert used == HAAR and len(found) == 1


def test_without_litert_opencv_runs_the_same_network(fresh_detectors, monkeypatch):
    """``ai-edge-litert`` missing: OpenCV's DNN module runs the model, with the same faces."""
    pytest.importorskip("ai_edge_litert", reason="compares LiteRT with OpenCV")
    photo = turned(astronaut(), 30)
    with_litert = find_faces(photo)[0]
    assert faces.blaze_detector().runtime == "litert"
    faces._BLAZE.__dict__.clear()
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    with_opencv, used = find_faces(photo)
    assert used == BLAZEFACE and faces.blaze_detector().runtime == "opencv"
    assert len(with_opencv) == len(with_litert) == 1
    assert np.allclose(with_opencv[0].box, with_litert[0].box, atol=2)


SHAPES = [(1, 1), (1, 500), (500, 1), (2, 4000), (4000, 2), (4000, 3), (3, 4000), (5000, 40), (40, 5000)]


@pytest.mark.parametrize("detector", [BLAZEFACE, HAAR])
@pytest.mark.parametrize(("width", "height"), SHAPES)
def test_extreme_shapes_have_no_face_and_never_raise(detector, width, height):
    """A 4000x3 PNG made the Haar pass scale its height to 0 (OpenCV's "inv_scale_x > 0" assertion)."""
    from fer.faces import read_image

    image = np.asarray(read_image(png(width, height)))
    assert image.shape == (height, width, 3)
    assert find_faces(image, detector)[0] == []


@pytest.mark.slow
@pytest.mark.parametrize("detector", [BLAZEFACE, HAAR])
def test_extreme_shapes_give_a_result_through_the_predictor(detector):
    """From bytes: no face (an empty list), or with "classify the whole image" one whole-image result."""
    pytest.importorskip("keras")
    from fer.predict import Predictor

    predictor = Predictor.load()
    for width, height in SHAPES:
        data = png(width, height)
        assert predictor.predict_image(data, detector=detector) == []
        whole = predictor.predict_image(data, whole_image_if_no_face=True, detector=detector)
        assert len(whole) == 1 and whole[0].whole_image and whole[0].face.shape == (48, 48)
        assert whole[0].box == (0, 0, width, height)
        assert np.isclose(whole[0].probabilities.sum(), 1, atol=1e-3)


@pytest.mark.slow
def test_the_predictor_uses_the_chosen_detector_and_says_which(fresh_detectors, monkeypatch, tmp_path):
    pytest.importorskip("keras")
    from fer.predict import Predictor

    predictor = Predictor.load()
    data = Image.fromarray(turned(astronaut(), 40))
    assert [r.detector for r in predictor.predict_image(data)] == [BLAZEFACE]
    assert predictor.predict_image(data, detector=HAAR) == []  # Haar misses a face turned 40 degrees
    upright = Image.fromarray(astronaut())
    assert [r.detector for r in predictor.predict_image(upright, detector=HAAR)] == [HAAR]
    monkeypatch.setattr(faces, "FACE_MODELS_DIR", tmp_path / "no-models")
    faces._BLAZE.__dict__.clear()
    assert [r.detector for r in predictor.predict_image(upright)] == [HAAR]


@pytest.mark.slow
def test_the_detector_benchmark_runs_and_reports_every_group(tmp_path):
    """``python -m bench.detectors --quick``: the README's table, JSON out (numbers not asserted)."""
    import json
    import os
    import subprocess

    from fer import PROJECT_ROOT

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FER_BENCH_RESULTS": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "bench.detectors", "--quick"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout)
    assert output == json.loads((tmp_path / "detectors-quick.json").read_text())
    assert list(output["detection"]) == ["pasted", "close-up", "rotated 15", "rotated 30", "rotated 45",
                                         "several sizes", "real photos", "no face"]
    for row in output["detection"].values():
        assert set(row) >= {"haar", "blazeface"}
    for detector in ("haar", "blazeface"):
        assert output["speed"][detector]["faces"] == 1
        assert output["speed"][detector]["bytes_to_probabilities"]["n"] == 10
    assert "| several sizes |" in output["tables"] and "| bytes -> probabilities |" in output["tables"]


def test_the_fine_pass_network_loads_only_for_a_picture_that_needs_it():
    """A one-face photo takes the 128 and 256 passes only; a picture with no face (long side of
    512 or more) also takes the fine pass, whose network is loaded then."""
    detector = faces.BlazeFace()
    coarse = sorted({side for _, side in faces.BLAZE_PASSES})
    assert sorted(detector.networks) == coarse
    assert len(detector.detect(astronaut())) == 1 and sorted(detector.networks) == coarse
    assert detector.detect(np.zeros((faces.BLAZE_FINE_MIN_SIDE, 600, 3), np.uint8)) == []
    assert sorted(detector.networks) == sorted({*coarse, faces.BLAZE_FINE_SIDE})
