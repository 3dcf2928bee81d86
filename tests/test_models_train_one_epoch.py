"""Every registered architecture builds as documented and trains a tiny epoch through the pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic import face

from fer import CLASSES, INPUT_SHAPE
from fer.architectures import ARCHITECTURES, architecture_names
from fer.config import TrainConfig

keras = pytest.importorskip("keras")

from fer.models import BUILDERS, build_model  # noqa: E402
from fer.pipeline import training_batches  # noqa: E402
from fer.recipe import training_model  # noqa: E402

# The big networks train on 8 images in batches of 4 (two steps); the rest on 35 in batches of 8.
# Batches stay even here: in this process oneDNN is on, and it crashes on odd training batches
# (the worker turns it off for those; see test_worker_files.py).
HEAVY = {"vgg_fer", "vgg_fer_compact", "vgg16_transfer"}


def tiny_set(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(len(CLASSES)).repeat(per_class)
    images = np.stack([face(int(label), i) for i, label in enumerate(labels)])
    return images, labels


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Models of one test do not pile up in the next one's graph and memory."""
    yield
    keras.backend.clear_session()


def test_both_registries_list_the_same_architectures():
    """The UI's registry (no TensorFlow) and the builders agree, in the same order."""
    assert list(BUILDERS) == list(ARCHITECTURES) == architecture_names()
    for name, info in ARCHITECTURES.items():
        assert info.name == name and info.title and info.description and info.source


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_builds_with_registry_param_count_and_softmax_output(name):
    """The params count shown in the UI is exact, input is 48x48x1 and outputs sum to one."""
    model = build_model(TrainConfig.for_architecture(name))
    assert model.count_params() == ARCHITECTURES[name].params
    if name == "vgg_fer_compact":
        # Small enough to ship in git: under 25 MB in float32 (under 16 MB in float16).
        assert model.count_params() <= 6_000_000
    assert tuple(model.input_shape) == (None, *INPUT_SHAPE)
    assert tuple(model.output_shape) == (None, len(CLASSES))
    images, _ = tiny_set(1)
    probabilities = np.asarray(model(images[:2, ..., None].astype("float32"), training=False))
    assert probabilities.shape == (2, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_trains_one_tiny_epoch(name):
    """Each architecture fits one epoch from fer.pipeline with its own preset (augmentation
    included, in the training step), loss stays finite."""
    heavy = name in HEAVY
    images, labels = tiny_set(2 if heavy else 5)
    if heavy:
        # One face of every class plus one more: two steps of four.
        keep = np.r_[0:14:2, 1]
        images, labels = images[keep], labels[keep]
    config = TrainConfig.for_architecture(name, batch_size=4 if heavy else 8, epochs=1)
    model = training_model(config, len(labels) // config.batch_size)
    history = model.fit(training_batches(images, labels, config.batch_size, config.seed), epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1
    assert math.isfinite(history.history["loss"][0])


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "lr_schedule"),
                         [("adamw", "cosine"), ("sgd", "none"), ("adam", "plateau")])
def test_optimizer_and_schedule_options_train(optimizer, lr_schedule):
    """Each optimizer (and the cosine schedule) works with the cheap model and full augmentation."""
    images, labels = tiny_set(3)
    config = TrainConfig.for_architecture("mini_xception", batch_size=6, optimizer=optimizer,
                                          lr_schedule=lr_schedule, erasing=0.5, label_smoothing=0.1,
                                          weight_decay=1e-4)
    model = training_model(config, 3)
    history = model.fit(training_batches(images, labels, config.batch_size, config.seed), epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])
