"""fer.pipeline: full, seeded training batches on every backend; evaluation in file order."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import face

from fer import CLASSES

pytest.importorskip("keras")

from fer.pipeline import evaluation_batches, training_batches  # noqa: E402


def images_and_labels(n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % len(CLASSES)
    return np.stack([face(int(label), i) for i, label in enumerate(labels)]), labels


def epoch(batches) -> list:
    return [batches[i] for i in range(len(batches))]


def test_training_never_yields_a_short_last_batch():
    """37 images in batches of 8 give four full batches: a short last batch crashes oneDNN on CPU
    and would make XLA compile the step for a second shape."""
    images, labels = images_and_labels(37)
    batches = training_batches(images, labels, 8, seed=1)
    for _ in range(2):  # the next epoch is reshuffled but still full
        assert [len(x) for x, _ in epoch(batches)] == [8, 8, 8, 8]
        batches.on_epoch_end()


def test_training_batches_are_raw_pixels_with_one_hot_labels():
    """Models rescale themselves, so the pipeline feeds 0-255 floats (n, 48, 48, 1) and one-hot labels."""
    images, labels = images_and_labels(16)
    x, y = training_batches(images, labels, 16, seed=1)[0]
    assert x.shape == (16, 48, 48, 1) and x.dtype == np.float32
    assert float(np.max(x)) > 1.0
    assert y.shape == (16, len(CLASSES))
    np.testing.assert_array_equal(np.sort(np.argmax(y, axis=1)), np.sort(labels))


def test_each_epoch_is_a_new_shuffle_fixed_by_the_seed_and_the_epoch():
    """Epoch e's order depends on (seed, e) only, so a run resumed at epoch e sees the same batches."""
    images, labels = images_and_labels(40)
    first = training_batches(images, labels, 8, seed=3)
    order0 = np.concatenate([y.argmax(1) for _, y in epoch(first)])
    first.on_epoch_end()
    order1 = np.concatenate([y.argmax(1) for _, y in epoch(first)])
    resumed = training_batches(images, labels, 8, seed=3, first_epoch=1)
    np.testing.assert_array_equal(np.concatenate([y.argmax(1) for _, y in epoch(resumed)]), order1)
    assert not np.array_equal(order0, order1)
    other_seed = training_batches(images, labels, 8, seed=4)
    assert not np.array_equal(np.concatenate([y.argmax(1) for _, y in epoch(other_seed)]), order0)


def test_class_weights_become_per_image_sample_weights():
    images, labels = images_and_labels(14)
    weights = {c: float(c + 1) for c in range(len(CLASSES))}
    x, y, w = training_batches(images, labels, 7, seed=0, class_weights=weights)[0]
    np.testing.assert_array_equal(w, y.argmax(1) + 1.0)


def test_batch_larger_than_the_training_set_is_refused():
    """Otherwise dropping the short batch would silently produce an empty epoch."""
    images, labels = images_and_labels(5)
    with pytest.raises(ValueError, match="batch_size=8 is larger than the training set"):
        training_batches(images, labels, 8, seed=0)


def test_evaluation_keeps_every_image_in_order():
    """Evaluation must see all images (a short last batch is fine there) in file order."""
    images, labels = images_and_labels(37)
    batches = epoch(evaluation_batches(images, labels, 8))
    assert [len(x) for x, _ in batches] == [8, 8, 8, 8, 5]
    x = np.concatenate([b[0] for b in batches])[..., 0]
    np.testing.assert_array_equal(x, images.astype(np.float32))


def test_evaluation_for_several_devices_pads_with_weightless_faces():
    """Each of 2 devices takes half of every batch: 7 images become 8, the blank one weighing 0."""
    images, labels = images_and_labels(7)
    (x, y, weights), = epoch(evaluation_batches(images, labels, 256, multiple_of=2))
    assert len(x) == len(y) == 8
    np.testing.assert_array_equal(weights, [1, 1, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(x[:7, ..., 0], images.astype(np.float32))
