"""Grad-CAM (fer.explain): the layer it picks, the maps' shape and scale, that a map follows the
face when it moves, every architecture, and the JAX path (in a subprocess, as on a JAX-only box)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import worker_env

from fer import CLASSES, DEFAULT_MODEL_DIR, PROJECT_ROOT
from fer.architectures import ARCHITECTURES
from fer.config import TrainConfig
from fer.explain import ExplainError, GradCam, overlay

JAX_ONLY = Path(__file__).resolve().parent / "jax_only.py"
SHIPPED = DEFAULT_MODEL_DIR / "model.keras"
needs_shipped_model = pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped model.keras")

# The grid Grad-CAM works on for each architecture: the last conv block before the pooling.
EXPECTED_LAYERS = {
    "mini_xception": (3, 3), "vgg_fer": (6, 6), "vgg_fer_compact": (6, 6), "vgg_fer_cpu": (6, 6),
    "seed_cnn_a": (12, 12),
    "seed_cnn_b": (6, 6), "seed_cnn_b2": (6, 6), "seed_cnn_c": (6, 6), "vgg16_transfer": (3, 3),
}


def patch_detector():
    """A network that sees one thing: a bright patch. One 5x5 conv (sum of pixels), ReLU, 2x2
    max-pooling, global average and a softmax whose class 0 grows with the patch's brightness."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(48, 48, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(1, 5, padding="same", kernel_initializer="ones", bias_initializer="zeros")(x)
    x = layers.Activation("relu", name="bright")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(len(CLASSES), activation="softmax")
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.eye(1, len(CLASSES), dtype=np.float32) * 10, np.zeros(len(CLASSES), np.float32)])
    return model


def face_with_patch(row: int, column: int) -> np.ndarray:
    face = np.zeros((48, 48), dtype=np.float32)
    face[row:row + 8, column:column + 8] = 255
    return face


def shifted(face: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The face moved by (dx, dy) pixels; the strip it leaves is the face's mean grey."""
    out = np.full_like(face, face.mean())
    h, w = face.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        face[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def centre(heatmap: np.ndarray) -> np.ndarray:
    """The heatmap's centre of mass (x, y) in pixels."""
    ys, xs = np.mgrid[:48, :48]
    return np.array([(heatmap * xs).sum(), (heatmap * ys).sum()]) / heatmap.sum()


def real_face() -> np.ndarray:
    """A 48x48 crop of the astronaut photo that scikit-image ships (a real face)."""
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    from fer.faces import crop_face, detect_faces, read_image

    data = (Path(skimage.__file__).parent / "data" / "astronaut.png").read_bytes()
    gray = np.asarray(read_image(data).convert("L"))
    return crop_face(gray, detect_faces(gray)[0]).astype(np.float32)


def test_the_map_sits_on_the_salient_patch_and_moves_with_it():
    explainer = GradCam(patch_detector())
    assert explainer.layer_name == "bright"  # before the pooling: the full 48x48 grid
    assert explainer.grid == (48, 48)
    faces = np.stack([face_with_patch(4, 6), face_with_patch(30, 34)])
    maps, classes = explainer.heatmaps(faces, 0)
    assert list(classes) == [0, 0]
    for heatmap, (row, column) in zip(maps, [(4, 6), (30, 34)], strict=True):
        top_row, top_column = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert row <= top_row < row + 8 and column <= top_column < column + 8
        assert heatmap[row:row + 8, column:column + 8].mean() > 0.5 > heatmap.mean()


@needs_shipped_model
def test_the_map_of_a_real_face_follows_the_face_when_it_moves():
    from fer.predict import Predictor

    explainer = GradCam(Predictor.load(SHIPPED).model)
    face = real_face()
    moves = [(0, 0), (-12, 0), (12, 0), (0, -12), (0, 12)]
    maps, classes = explainer.heatmaps(np.stack([shifted(face, dx, dy) for dx, dy in moves]), 3)
    assert list(classes) == [3] * len(moves)
    still = centre(maps[0])
    for heatmap, move in zip(maps[1:], moves[1:], strict=True):
        change = centre(heatmap) - still
        axis = int(move[1] != 0)
        assert np.sign(change[axis]) == np.sign(move[axis]), (move, change)
        assert abs(change[axis]) > max(1.0, abs(change[1 - axis])), (move, change)


@needs_shipped_model
def test_mini_xception_map_is_the_class_channel_of_its_last_convolution():
    """mini-Xception ends in conv(7) -> global average -> softmax, so the logit's gradient is the
    same for every cell and Grad-CAM reduces to the class's own channel (Zhou et al.'s CAM)."""
    import keras

    from fer.explain import _upsample
    from fer.predict import Predictor

    model = Predictor.load(SHIPPED).model
    explainer = GradCam(model)
    assert explainer.layer_name == model.layers[-3].name and explainer.logits
    faces = np.stack([real_face(), shifted(real_face(), 8, 4)])
    activations = np.asarray(keras.Model(model.inputs, model.layers[-3].output)(faces[..., None]))
    for target in (0, 3, 6):
        maps, _ = explainer.heatmaps(faces, target)
        for heatmap, activation in zip(maps, activations, strict=True):
            expected = _upsample(np.maximum(activation[..., target], 0))
            np.testing.assert_allclose(heatmap, expected, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_architecture_gets_a_normalised_map_per_face(architecture):
    from fer.models import build_model

    model = build_model(TrainConfig.for_architecture(architecture))
    explainer = GradCam(model)
    assert explainer.grid == EXPECTED_LAYERS[architecture]
    faces = np.random.default_rng(1).integers(0, 256, (3, 48, 48)).astype(np.float32)
    maps, classes = explainer.heatmaps(faces)
    predicted = np.asarray(model(faces[..., None], training=False)).argmax(axis=1)
    np.testing.assert_array_equal(classes, predicted)
    assert maps.shape == (3, 48, 48) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0
    for heatmap in maps:
        assert heatmap.max() == pytest.approx(1.0) or not heatmap.any()
    picked, classes = explainer.heatmaps(faces[0], 5)  # one face, a chosen class
    assert picked.shape == (1, 48, 48) and list(classes) == [5]


def test_bad_arguments_and_a_model_without_convolutions_are_clear_errors():
    import keras

    explainer = GradCam(patch_detector())
    with pytest.raises(ExplainError, match="faces must be"):
        explainer.heatmaps(np.zeros((2, 32, 32)))
    with pytest.raises(ExplainError, match="classes must be"):
        explainer.heatmaps(np.zeros((1, 48, 48)), len(CLASSES))
    with pytest.raises(ExplainError, match="one per face"):
        explainer.heatmaps(np.zeros((3, 48, 48)), [1, 2])
    inputs = keras.Input(shape=(48, 48, 1))
    dense = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ExplainError, match="no convolutional layer"):
        GradCam(dense)


def test_overlay_is_an_rgb_picture_red_where_the_map_is_high():
    face = np.full((48, 48), 128, dtype=np.uint8)
    heatmap = np.zeros((48, 48), dtype=np.float32)
    heatmap[:24] = 1.0
    picture = overlay(face, heatmap, size=96)
    assert picture.shape == (96, 96, 3) and picture.dtype == np.uint8
    top, bottom = picture[10, 50].astype(int), picture[80, 50].astype(int)
    assert top[0] > top[2] and bottom[2] > bottom[0]  # red above, blue below


JAX_SCRIPT = """
import json, sys
import numpy as np
from fer.explain import GradCam
from fer.models import build_model
from fer.config import TrainConfig
import keras
assert keras.backend.backend() == "jax"
faces = np.load(sys.argv[1])
out = {}
if sys.argv[2]:
    from fer.predict import Predictor
    maps, classes = GradCam(Predictor.load(sys.argv[2]).model).heatmaps(faces)
    np.save(sys.argv[3], maps)
    out["shipped_classes"] = classes.tolist()
for name in ("mini_xception", "vgg_fer_compact", "seed_cnn_a", "vgg16_transfer"):
    explainer = GradCam(build_model(TrainConfig.for_architecture(name)))
    maps, classes = explainer.heatmaps(faces, 2)
    out[name] = [explainer.layer_name, list(explainer.grid), list(maps.shape), float(maps.max()),
                 classes.tolist()]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_jax_backend_gives_the_tensorflow_maps(tmp_path):
    """Under JAX (jax.grad over stateless_call, TensorFlow unimportable) the shipped model's maps
    equal TensorFlow's, and the architectures with a nested model or a 12x12 grid work."""
    faces = np.stack([np.random.default_rng(2).integers(0, 256, (48, 48)).astype(np.float32)] * 2)
    model = ""
    if SHIPPED.is_file():
        faces[1] = real_face()
        model = str(SHIPPED)
    np.save(tmp_path / "faces.npy", faces)
    result = subprocess.run(
        [sys.executable, JAX_ONLY, "-c", JAX_SCRIPT, tmp_path / "faces.npy", model, tmp_path / "maps.npy"],
        cwd=PROJECT_ROOT, env=worker_env(KERAS_BACKEND="jax"), capture_output=True, text=True,
        timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("mini_xception", "vgg_fer_compact", "seed_cnn_a", "vgg16_transfer"):
        layer, grid, shape, top, classes = out[name]
        assert tuple(grid) == EXPECTED_LAYERS[name] and shape == [2, 48, 48] and classes == [2, 2]
        assert top == pytest.approx(1.0) or top == 0.0
    assert out["vgg16_transfer"][0] == "vgg16/block5_conv3"
    if model:
        from fer.predict import Predictor

        expected, classes = GradCam(Predictor.load(SHIPPED).model).heatmaps(faces)
        assert out["shipped_classes"] == classes.tolist()
        np.testing.assert_allclose(np.load(tmp_path / "maps.npy"), expected, atol=2e-3)
