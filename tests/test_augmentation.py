"""fer.augment: one warp + erasing with the semantics of Keras' preprocessing layers, jit-compilable,
inactive outside training and never part of the saved network."""

from __future__ import annotations

import numpy as np
import pytest

from fer import IMAGE_SIZE
from fer.config import TrainConfig

keras = pytest.importorskip("keras")

from fer.augment import FaceAugmentation, augmentation_layer, network_of, with_augmentation  # noqa: E402
from fer.models import build_model  # noqa: E402

BACKGROUND = 60.0
# The presets' augmentation: mini_xception's (no crop, no erasing) and VGG-FER's (everything).
PRESETS = ["mini_xception", "vgg_fer"]


def marked_faces(n: int) -> np.ndarray:
    """A bright square in the upper left of a gray image: its centroid shows flips and shifts."""
    image = np.full((IMAGE_SIZE, IMAGE_SIZE), BACKGROUND, np.float32)
    image[10:22, 8:20] = 220.0
    return np.repeat(image[None, ..., None], n, axis=0)


def keras_layers(config: TrainConfig) -> keras.Sequential:
    """The same switches as Keras' own preprocessing layers, one after another."""
    layers = [keras.layers.RandomFlip("horizontal", seed=1)]
    layers.append(keras.layers.RandomRotation(config.rotation / 360.0, fill_mode="nearest", seed=2))
    layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="nearest", seed=3))
    layers.append(keras.layers.RandomTranslation(config.translation, config.translation,
                                                 fill_mode="nearest", seed=4))
    if config.crop:
        layers += [keras.layers.RandomCrop(config.crop, config.crop, seed=5),
                   keras.layers.Resizing(IMAGE_SIZE, IMAGE_SIZE)]
    if config.erasing:
        layers.append(keras.layers.RandomErasing(factor=(config.erasing, config.erasing),
                                                 value_range=(0, 255), seed=6))
    return keras.Sequential(layers)


def statistics(images: np.ndarray) -> dict[str, float]:
    weights = np.clip(images[..., 0] - BACKGROUND, 0, None)
    total = weights.sum(axis=(1, 2)) + 1e-6
    xs = (weights * np.arange(IMAGE_SIZE)[None, None, :]).sum(axis=(1, 2)) / total
    ys = (weights * np.arange(IMAGE_SIZE)[None, :, None]).sum(axis=(1, 2)) / total
    return {"mean": float(images.mean()), "std": float(images.std()),
            "flipped": float((xs > IMAGE_SIZE / 2).mean()), "x_spread": float(xs.std()),
            "y_spread": float(ys.std()), "y_mean": float(ys.mean())}


@pytest.mark.parametrize("preset", PRESETS)
def test_outputs_have_the_statistics_of_keras_layers(preset):
    """Same brightness, same share of flips, same spread of positions as the layer-by-layer pipeline."""
    config = TrainConfig.for_architecture(preset)
    faces = marked_faces(384)
    ours = statistics(np.asarray(augmentation_layer(config)(faces, training=True)))
    # One face per call: Keras' RandomCrop draws one window per batch, ours one per face.
    layers = keras_layers(config)
    reference = statistics(np.concatenate([np.asarray(layers(face[None], training=True)) for face in faces]))
    assert ours["flipped"] == pytest.approx(reference["flipped"], abs=0.08)
    assert ours["mean"] == pytest.approx(reference["mean"], rel=0.05)
    assert ours["std"] == pytest.approx(reference["std"], rel=0.08)
    for key in ("x_spread", "y_spread", "y_mean"):
        assert ours[key] == pytest.approx(reference[key], rel=0.15), key


def test_switches_off_mean_no_layer_and_each_switch_counts():
    assert augmentation_layer(TrainConfig(augment=False)) is None
    assert augmentation_layer(TrainConfig(flip=False, rotation=0, zoom=0, translation=0, erasing=0)) is None
    assert augmentation_layer(TrainConfig(flip=False, rotation=0, zoom=0, translation=0, erasing=0.5))
    layer = augmentation_layer(TrainConfig(rotation=12.0, zoom=0.1, translation=0.2, crop=40))
    assert ((layer.flip, layer.rotation, layer.zoom, layer.translation, layer.crop)
            == (True, 12.0, 0.1, 0.2, 40))


def test_inactive_outside_training():
    faces = marked_faces(4)
    layer = FaceAugmentation(rotation=30, zoom=0.3, erasing=1.0, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(faces, training=False)), faces)


def test_a_crop_alone_zooms_a_whole_pixel_window_back_to_48():
    """crop=40 shows a 40x40 window scaled by 48/40: the square grows by that factor."""
    faces = marked_faces(64)
    out = np.asarray(FaceAugmentation(flip=False, crop=40, seed=0)(faces, training=True))[..., 0]
    assert out.shape == (64, IMAGE_SIZE, IMAGE_SIZE)
    bright = (out > 140).sum(axis=(1, 2))
    assert bright.mean() == pytest.approx(12 * 12 * (48 / 40) ** 2, rel=0.1)


def test_erasing_probability_is_the_share_of_images_touched():
    faces = marked_faces(400)
    out = np.asarray(FaceAugmentation(flip=False, erasing=0.3, seed=0)(faces, training=True))
    touched = (np.abs(out - faces).reshape(400, -1).max(axis=1) > 0).mean()
    assert touched == pytest.approx(0.3, abs=0.07)


def test_the_training_step_compiles_with_xla():
    """Keras' own warping layers declare supports_jit=False, which turns XLA off for the whole step."""
    network = build_model(TrainConfig.for_architecture("mini_xception"))
    model = with_augmentation(network, TrainConfig.for_architecture("vgg_fer"))
    assert all(layer.supports_jit for layer in model._flatten_layers())


def test_the_saved_network_holds_no_augmentation(tmp_path):
    network = build_model(TrainConfig.for_architecture("mini_xception"))
    model = with_augmentation(network, TrainConfig.for_architecture("vgg_fer"))
    assert network_of(model) is network
    assert any(isinstance(layer, FaceAugmentation) for layer in model.layers)
    network_of(model).save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    assert not any(isinstance(layer, FaceAugmentation) for layer in loaded._flatten_layers())


@pytest.mark.parametrize("transform", [{"shear": 20.0}, {"shear": 20.0, "rotation": 15.0},
                                       {"shear": 8.0, "rotation": 30.0, "zoom": 0.2}])
def test_shear_and_rotation_match_image_data_generator(transform, monkeypatch):
    """At the ends of their ranges, the warp is the legacy ImageDataGenerator's (what seed
    notebook 001 augments with) for the same angles, pixel for pixel (up to float rounding)."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    face = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 1), "float32")
    face[10:38, 20:28] = 255.0
    face[30:34, 5:43] = 128.0
    layer = FaceAugmentation(flip=False, seed=0, **transform)
    # Every random draw at the top of its range: the largest angles and zoom factor.
    monkeypatch.setattr(layer, "_uniform", lambda batch, low, high: keras.ops.full((batch,), high))
    ours = np.asarray(layer(face[None], training=True))[0]
    zoom = 1.0 + transform.get("zoom", 0.0)
    reference = ImageDataGenerator(fill_mode="nearest").apply_transform(
        face, {"shear": transform["shear"], "theta": transform.get("rotation", 0.0), "zx": zoom,
               "zy": zoom})
    assert np.abs(ours - face).mean() > 5  # it did move
    np.testing.assert_allclose(ours, reference, atol=0.05)
