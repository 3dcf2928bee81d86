"""Architecture registry: name -> builder returning a Keras model for 48x48x1 raw pixels (0-255).

Each builder is short, readable top to bottom, and cites its source. Models rescale their input
themselves and end in a float32 softmax over ``fer.CLASSES``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers, regularizers

from fer import INPUT_SHAPE, NUM_CLASSES
from fer.config import TrainConfig


def _l2(config: TrainConfig) -> regularizers.Regularizer | None:
    return regularizers.L2(config.l2) if config.l2 > 0 else None


def _inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=INPUT_SHAPE, name="face")
    # Scale pixels to [0, 1] inside the model, so every caller feeds raw grayscale pixels.
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def _classifier(x: keras.KerasTensor) -> keras.KerasTensor:
    # float32 softmax keeps probabilities exact under mixed precision.
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)


def mini_xception(config: TrainConfig) -> keras.Model:
    """mini-Xception: Arriaga, Ploeger, Valdenegro, "Real-time Convolutional Neural Networks for
    Emotion and Gender Classification" (2017), arXiv:1710.07557, as in their reference code."""
    reg = _l2(config)
    inputs, x = _inputs()
    for _ in range(2):
        x = layers.Conv2D(8, 3, kernel_regularizer=reg, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    for filters in (16, 32, 64, 128):
        residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization()(residual)
        x = layers.SeparableConv2D(filters, 3, padding="same", depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.add([x, residual])
    # The paper ends with a 7-filter conv and global average pooling, no dense layer.
    x = layers.Conv2D(NUM_CLASSES, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout)(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mini_xception")


def _vgg_fer_trunk(x: keras.KerasTensor, reg: regularizers.Regularizer | None) -> keras.KerasTensor:
    """VGG-FER's four stages of two 3x3 conv-BN-ReLU blocks (64-512 filters), each max-pooled."""
    for filters in (64, 128, 256, 512):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", kernel_regularizer=reg)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    return x


def vgg_fer(config: TrainConfig) -> keras.Model:
    """VGG variant of Khaireddin & Chen, "Facial Emotion Recognition: State of the Art
    Performance on FER2013" (2021), arXiv:2105.03588: 4 stages of 2x (conv3x3-BN-ReLU), max-pool,
    then two 4096-unit fully connected layers."""
    reg = _l2(config)
    inputs, x = _inputs()
    x = layers.Flatten()(_vgg_fer_trunk(x, reg))
    for _ in range(2):
        x = layers.Dense(4096, activation="relu", kernel_regularizer=reg)(x)
        x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name="vgg_fer")


def vgg_fer_compact(config: TrainConfig) -> keras.Model:
    """VGG-FER's convolutional trunk (Khaireddin & Chen 2021, arXiv:2105.03588) with one
    256-unit layer instead of two 4096-unit ones: 5.9M parameters instead of 40.4M, so the trained
    model is small enough to ship. The 2x4096 head holds 88% of VGG-FER's weights but little of its
    compute, and compact heads on the same trunk are the common choice for 48x48 faces
    (e.g. Pramerdorfer & Kampel 2016, arXiv:1612.02903)."""
    reg = _l2(config)
    inputs, x = _inputs()
    x = layers.Flatten()(_vgg_fer_trunk(x, reg))
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(256, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name="vgg_fer_compact")


def seed_cnn_a(config: TrainConfig) -> keras.Model:
    """Seed notebook 000: five 4x4 convolutions (64-64-128-128-128) with batch norm, L2 and
    dropout after every pooling stage."""
    reg = _l2(config)
    inputs, x = _inputs()
    for stage in ((64, 64), (128, 128), (128,)):
        for filters in stage:
            x = layers.Conv2D(filters, 4, padding="same", kernel_regularizer=reg)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(config.dropout / 2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, kernel_regularizer=reg)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name="seed_cnn_a")


def _seed_cnn_bc(config: TrainConfig, first_filters: int, batch_norm: bool, name: str) -> keras.Model:
    reg = _l2(config)
    inputs, x = _inputs()
    for filters, size in ((first_filters, 5), (128, 3), (512, 3), (512, 3)):
        x = layers.Conv2D(filters, size, padding="same", kernel_regularizer=reg)(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(config.dropout)(x)
    x = layers.Flatten()(x)
    for units in (256, 512):
        x = layers.Dense(units, kernel_regularizer=reg)(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name=name)


def seed_cnn_b(config: TrainConfig) -> keras.Model:
    """Seed notebooks 001/003: conv 36 (5x5), 128, 512, 512 (3x3), dense 256 + 512, no BN."""
    return _seed_cnn_bc(config, 36, batch_norm=False, name="seed_cnn_b")


def seed_cnn_c(config: TrainConfig) -> keras.Model:
    """Seed notebook 002: conv 64 (5x5), 128, 512, 512 (3x3), dense 256 + 512, with BN."""
    return _seed_cnn_bc(config, 64, batch_norm=True, name="seed_cnn_c")


VGG16_WEIGHTS = Path.home() / ".keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def vgg16_transfer(config: TrainConfig) -> keras.Model:
    """Seed notebook 004: Keras VGG16 (Simonyan & Zisserman 2014) with the first two blocks
    frozen and a dense head. ImageNet weights come from the Keras cache only (we work offline);
    without them the whole network trains from scratch."""
    pretrained = VGG16_WEIGHTS.is_file()
    inputs = keras.Input(shape=INPUT_SHAPE, name="face")
    # VGG16 expects three channels with the ImageNet mean removed (about 117 for gray).
    x = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    x = layers.Rescaling(1.0, offset=-117.0, name="center")(x)
    base = keras.applications.VGG16(include_top=False, input_shape=(*INPUT_SHAPE[:2], 3),
                                    weights=str(VGG16_WEIGHTS) if pretrained else None)
    if pretrained:
        for layer in base.layers:
            layer.trainable = not layer.name.startswith(("block1", "block2"))
    x = layers.Flatten()(base(x))
    x = layers.Dense(256, activation="relu", kernel_regularizer=_l2(config))(x)
    x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name="vgg16_transfer")


BUILDERS: dict[str, Callable[[TrainConfig], keras.Model]] = {
    "mini_xception": mini_xception,
    "vgg_fer": vgg_fer,
    "vgg_fer_compact": vgg_fer_compact,
    "seed_cnn_a": seed_cnn_a,
    "seed_cnn_b": seed_cnn_b,
    "seed_cnn_c": seed_cnn_c,
    "vgg16_transfer": vgg16_transfer,
}


def build_model(config: TrainConfig) -> keras.Model:
    return BUILDERS[config.architecture](config)
