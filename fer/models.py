"""Architecture registry: name -> builder returning a Keras model for 48x48x1 raw pixels (0-255).

Each builder is short, readable top to bottom, and cites its source. Every model takes raw pixels
(most rescale them to [0, 1] themselves; ``seed_cnn_c`` keeps them raw, as its notebook does) and
ends in a float32 softmax over ``fer.CLASSES``. The seed presets are their notebooks' networks
layer for layer (tests/test_seed_presets.py holds the notebooks' tables).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers, regularizers

from fer import INPUT_SHAPE, NUM_CLASSES
from fer.config import TrainConfig

# vgg_fer_cpu's stage widths (half of VGG-FER's): chosen by speed and proxy runs on a 2-core CPU.
CPU_WIDTHS = (32, 64, 128, 256)
# Keras' Dropout needs a rate below 1; the seed presets scale some rates above ``dropout``.
MAX_DROPOUT = 0.9


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


def _vgg_fer_trunk(x: keras.KerasTensor, reg: regularizers.Regularizer | None,
                   widths: tuple[int, ...] = (64, 128, 256, 512)) -> keras.KerasTensor:
    """VGG-FER's four stages of two 3x3 conv-BN-ReLU blocks (64-512 filters), each max-pooled."""
    for filters in widths:
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


def vgg_fer_narrow(config: TrainConfig, widths: tuple[int, ...], name: str) -> keras.Model:
    """VGG-FER's trunk with other stage widths and ``vgg_fer_compact``'s 256-unit head."""
    reg = _l2(config)
    inputs, x = _inputs()
    x = layers.Flatten()(_vgg_fer_trunk(x, reg, widths))
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(256, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name=name)


def vgg_fer_cpu(config: TrainConfig) -> keras.Model:
    """VGG-FER's trunk at half its width (32-256 filters: a quarter of its multiply-adds) with
    ``vgg_fer_compact``'s 256-unit head: the network fer-lab trains on a CPU. Dense 3x3
    convolutions of 32+ channels keep a CPU's vector units busy, where depthwise ones do not
    (``python -m bench.cpu_preset`` measures the candidates)."""
    return vgg_fer_narrow(config, CPU_WIDTHS, "vgg_fer_cpu")


def _rate(config: TrainConfig, factor: float) -> float:
    """A dropout rate that keeps the notebook's ratio to the run's ``dropout`` value."""
    return min(config.dropout * factor, MAX_DROPOUT)


def seed_cnn_a(config: TrainConfig) -> keras.Model:
    """Seed notebook 000: five 4x4 convolutions (64, 64 | 128 | 128, 128), each ReLU then batch
    norm, max-pooled after the second, third and fifth, with dropout 0.2, 0.3 and 0.4 after the
    pools (``dropout`` x 1, 1.5, 2) and L2 on the convolutions only; Flatten, Dense 128 + ReLU."""
    reg = _l2(config)
    inputs, x = _inputs()
    for filters, factor in (((64, 64), 1.0), ((128,), 1.5), ((128, 128), 2.0)):
        for width in filters:
            x = layers.Conv2D(width, 4, padding="same", kernel_regularizer=reg)(x)
            x = layers.Activation("relu")(x)
            x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(_rate(config, factor))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128)(x)
    x = layers.Activation("relu")(x)
    return keras.Model(inputs, _classifier(x), name="seed_cnn_a")


def _seed_cnn_trunk(x: keras.KerasTensor, first_filters: int, config: TrainConfig) -> keras.KerasTensor:
    """Notebooks 001, 002 and 003: convolutions of first_filters (3x3), 128 (5x5), 512 (3x3) and
    512 (3x3), each batch norm, ReLU, 2x2 max-pooling and dropout; then Flatten (3x3x512)."""
    reg = _l2(config)
    for filters, size in ((first_filters, 3), (128, 5), (512, 3), (512, 3)):
        x = layers.Conv2D(filters, size, padding="same", kernel_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(config.dropout)(x)
    return layers.Flatten()(x)


def _dense_bn_head(x: keras.KerasTensor, config: TrainConfig) -> keras.KerasTensor:
    """Notebooks 002 and 003: Dense 256 and Dense 512, each batch norm, ReLU and dropout."""
    for units in (256, 512):
        x = layers.Dense(units, kernel_regularizer=_l2(config))(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Dropout(config.dropout)(x)
    return x


def seed_cnn_b(config: TrainConfig) -> keras.Model:
    """Seed notebook 001: conv 36 (3x3), 128 (5x5), 512, 512 (3x3) with batch norm; head Dense 128
    + ReLU and dropout 0.5 (twice ``dropout``)."""
    inputs, x = _inputs()
    x = _seed_cnn_trunk(x, 36, config)
    x = layers.Dense(128, activation="relu", kernel_regularizer=_l2(config))(x)
    x = layers.Dropout(_rate(config, 2.0))(x)
    return keras.Model(inputs, _classifier(x), name="seed_cnn_b")


def seed_cnn_b2(config: TrainConfig) -> keras.Model:
    """Seed notebook 003: notebook 001's trunk with the two-layer head of notebook 002."""
    inputs, x = _inputs()
    x = _dense_bn_head(_seed_cnn_trunk(x, 36, config), config)
    return keras.Model(inputs, _classifier(x), name="seed_cnn_b2")


def seed_cnn_c(config: TrainConfig) -> keras.Model:
    """Seed notebook 002: conv 64 (3x3), 128 (5x5), 512, 512 (3x3), Dense 256 + 512, all with
    batch norm. The notebook feeds raw 0-255 pixels (its generator does not rescale), so this
    network has no rescaling layer either; the batch norm after the first convolution absorbs the
    scale."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="face")
    x = _dense_bn_head(_seed_cnn_trunk(inputs, 64, config), config)
    return keras.Model(inputs, _classifier(x), name="seed_cnn_c")


VGG16_WEIGHTS = Path.home() / ".keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
# keras.applications.vgg16.preprocess_input ("caffe"): RGB to BGR, minus ImageNet's BGR means.
# A gray face copied to three channels is the same in either channel order.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
# Notebook 004 freezes VGG16's layers up to, not including, this one (blocks 1-3).
VGG16_FIRST_TRAINABLE = "block4_conv1"


def vgg16_transfer(config: TrainConfig) -> keras.Model:
    """Seed notebook 004: Keras VGG16 (Simonyan & Zisserman 2014) without its top, frozen up to
    block4_conv1, then Dense 32 + Leaky ReLU, batch norm and the softmax. ImageNet weights come
    from the Keras cache only (we work offline); without them nothing is frozen and the whole
    network trains from scratch (frozen random filters would learn nothing)."""
    pretrained = VGG16_WEIGHTS.is_file()
    inputs = keras.Input(shape=INPUT_SHAPE, name="face")
    x = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    x = layers.Normalization(mean=IMAGENET_BGR_MEAN, variance=(1.0, 1.0, 1.0), name="imagenet_mean")(x)
    base = keras.applications.VGG16(include_top=False, input_shape=(*INPUT_SHAPE[:2], 3),
                                    weights=str(VGG16_WEIGHTS) if pretrained else None)
    if pretrained:
        names = [layer.name for layer in base.layers]
        for layer in base.layers[:names.index(VGG16_FIRST_TRAINABLE)]:
            layer.trainable = False
    x = layers.Flatten()(base(x))
    x = layers.Dense(32, kernel_regularizer=_l2(config))(x)
    x = layers.LeakyReLU()(x)
    x = layers.BatchNormalization()(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name="vgg16_transfer")


BUILDERS: dict[str, Callable[[TrainConfig], keras.Model]] = {
    "mini_xception": mini_xception,
    "vgg_fer": vgg_fer,
    "vgg_fer_compact": vgg_fer_compact,
    "vgg_fer_cpu": vgg_fer_cpu,
    "seed_cnn_a": seed_cnn_a,
    "seed_cnn_b": seed_cnn_b,
    "seed_cnn_b2": seed_cnn_b2,
    "seed_cnn_c": seed_cnn_c,
    "vgg16_transfer": vgg16_transfer,
}


def build_model(config: TrainConfig) -> keras.Model:
    return BUILDERS[config.architecture](config)
