"""tf.data input pipelines: decode once (arrays in memory), cache, shuffle, batch, augment, prefetch."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fer import IMAGE_SIZE, NUM_CLASSES
from fer.config import TrainConfig


def augmentation(config: TrainConfig) -> keras.Sequential | None:
    """Keras preprocessing layers for the switches in ``config`` (None when all are off)."""
    if not config.augment:
        return None
    seed = config.seed
    layers: list[keras.layers.Layer] = []
    if config.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.rotation > 0:
        # RandomRotation takes a fraction of a full turn.
        layers.append(keras.layers.RandomRotation(config.rotation / 360.0, fill_mode="nearest", seed=seed))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="nearest", seed=seed))
    if config.translation > 0:
        layers.append(keras.layers.RandomTranslation(
            config.translation, config.translation, fill_mode="nearest", seed=seed))
    if config.crop:
        # A random crop of the face, zoomed back to the model's input size; ten-crop TTA at test
        # time averages the same kind of view (Khaireddin & Chen train on random 40x40 crops).
        layers.append(keras.layers.RandomCrop(config.crop, config.crop, seed=seed))
        layers.append(keras.layers.Resizing(IMAGE_SIZE, IMAGE_SIZE))
    if config.erasing > 0:
        # A (p, p) factor applies erasing to each image with probability p.
        layers.append(keras.layers.RandomErasing(
            factor=(config.erasing, config.erasing), value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def _features(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    # Models take raw 0-255 pixels with a channel axis; they rescale themselves.
    x = images.astype(np.float32)[..., None]
    y = keras.utils.to_categorical(labels, NUM_CLASSES).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y))


def training_dataset(images: np.ndarray, labels: np.ndarray, config: TrainConfig) -> tf.data.Dataset:
    """Shuffled, augmented batches. Always full batches: a short last batch crashes oneDNN on CPU."""
    if config.batch_size > len(labels):
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set ({len(labels)} images)"
        )
    augment = augmentation(config)
    ds = _features(images, labels).cache()
    ds = ds.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size, drop_remainder=True)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches in file order, no augmentation."""
    return _features(images, labels).cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)
