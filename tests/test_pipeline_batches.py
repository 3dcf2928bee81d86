"""fer.pipeline: full training batches only, evaluation in file order, augmentation switches."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import face

from fer import CLASSES
from fer.config import TrainConfig

pytest.importorskip("tensorflow")

from fer.pipeline import augmentation, evaluation_dataset, training_dataset  # noqa: E402


def images_and_labels(n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % len(CLASSES)
    return np.stack([face(int(label), i) for i, label in enumerate(labels)]), labels


@pytest.mark.parametrize("augment", [False, True])
def test_training_never_yields_a_short_last_batch(augment):
    """37 images in batches of 8 give four full batches: a short last batch crashes oneDNN on CPU."""
    images, labels = images_and_labels(37)
    config = TrainConfig(batch_size=8, augment=augment)
    for _ in range(2):  # the second pass (epoch) is reshuffled but still full
        sizes = [int(x.shape[0]) for x, _ in training_dataset(images, labels, config)]
        assert sizes == [8, 8, 8, 8]


def test_training_batches_are_raw_pixels_with_one_hot_labels():
    """Models rescale themselves, so the pipeline feeds 0-255 floats (n, 48, 48, 1) and one-hot labels."""
    images, labels = images_and_labels(16)
    x, y = next(iter(training_dataset(images, labels, TrainConfig(batch_size=16, augment=False))))
    assert x.shape == (16, 48, 48, 1) and x.dtype.name == "float32"
    assert float(np.max(x)) > 1.0
    assert y.shape == (16, len(CLASSES))
    np.testing.assert_array_equal(np.sort(np.argmax(y, axis=1)), np.sort(labels))


def test_batch_larger_than_the_training_set_is_refused():
    """Otherwise drop_remainder would silently produce an empty epoch."""
    images, labels = images_and_labels(5)
    with pytest.raises(ValueError, match="batch_size=8 is larger than the training set"):
        training_dataset(images, labels, TrainConfig(batch_size=8))


def test_evaluation_keeps_every_image_in_order():
    """Evaluation must see all images (a short last batch is fine there) in file order."""
    images, labels = images_and_labels(37)
    batches = list(evaluation_dataset(images, labels, 8))
    assert [int(x.shape[0]) for x, _ in batches] == [8, 8, 8, 8, 5]
    x = np.concatenate([np.asarray(b[0]) for b in batches])[..., 0]
    np.testing.assert_array_equal(x, images.astype(np.float32))


def test_augmentation_follows_the_switches():
    """augment=False means no augmentation layers; each switch adds its layer."""
    assert augmentation(TrainConfig(augment=False)) is None
    assert augmentation(TrainConfig(flip=False, rotation=0, zoom=0, translation=0, erasing=0)) is None
    layers = augmentation(TrainConfig(flip=True, rotation=10, zoom=0.1, translation=0.1, erasing=0.5)).layers
    assert [type(layer).__name__ for layer in layers] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomErasing"]


def test_random_crops_are_zoomed_back_to_the_input_size():
    """crop=40 adds a random 40x40 crop resized to 48x48; the batches keep the model's input shape."""
    layers = augmentation(TrainConfig(flip=False, rotation=0, zoom=0, translation=0, crop=40)).layers
    assert [type(layer).__name__ for layer in layers] == ["RandomCrop", "Resizing"]
    assert (layers[0].height, layers[0].width) == (40, 40)
    images, labels = images_and_labels(16)
    config = TrainConfig(batch_size=8, flip=False, rotation=0, zoom=0, translation=0, crop=40)
    x, _ = next(iter(training_dataset(images, labels, config)))
    assert x.shape == (8, 48, 48, 1)
    # Zooming in on a crop changes the image (a no-op crop would leave it untouched).
    assert not any(np.allclose(np.asarray(x)[i, ..., 0], image) for i in range(8) for image in images)
