"""Training-time augmentation as one layer that compiles into the training step on every backend.

Flip, rotation, shear, zoom, translation and random crop (resized back to 48x48) are composed into one
affine map per image and applied by a single ``keras.ops.image.affine_transform`` (bilinear,
nearest-pixel fill); random erasing follows as a mask. Everything is ``keras.ops``, so XLA (JAX,
TensorFlow) compiles it with the model and it runs on the accelerator. Keras' own
``RandomRotation``/``RandomZoom``/``RandomTranslation``/``RandomCrop`` declare
``supports_jit = False``, which makes Keras run the *whole* training step without XLA.

The ranges and probabilities mean what those Keras layers mean (a test compares their outputs'
statistics). The layer only wraps the network while it trains: ``model.keras`` holds the network
alone (see ``with_augmentation`` and ``network_of``).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from fer import IMAGE_SIZE, INPUT_SHAPE
from fer.config import TrainConfig

# Random erasing picks each side of its rectangle as sqrt(U(0.02, 0.33)) of the image side and
# fills it with clipped Gaussian noise, as keras.layers.RandomErasing does by default.
ERASING_AREA = (0.02, 0.33)
PIXEL_MAX = 255.0


@keras.saving.register_keras_serializable(package="fer")
class FaceAugmentation(keras.layers.Layer):
    """Random flip/rotation/shear/zoom/translation/crop as one affine warp, then random erasing.

    ``rotation`` and ``shear`` are in degrees (shear as ImageDataGenerator's ``shear_range``: each
    row of pixels shifts sideways in proportion to its height, by an angle uniform in [-shear,
    shear]), ``zoom`` and ``translation`` are fractions (zoom factor uniform in
    [1 - zoom, 1 + zoom], shifts uniform in [-translation, translation] of the side, each axis on
    its own), ``crop`` is the side of a random square crop resized back to the input size (0 =
    off), ``erasing`` the probability of erasing one random rectangle. Inactive unless training.
    """

    def __init__(self, flip: bool = True, rotation: float = 0.0, zoom: float = 0.0,
                 translation: float = 0.0, crop: int = 0, erasing: float = 0.0,
                 seed: int | None = None, shear: float = 0.0, **kwargs):
        # Pixels stay float32 under mixed precision: bfloat16 would round 0-255 values.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.flip, self.rotation, self.zoom = bool(flip), float(rotation), float(zoom)
        self.translation, self.crop, self.erasing = float(translation), int(crop), float(erasing)
        self.shear = float(shear)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        images = ops.cast(images, "float32")
        if self.warps:
            images = keras.ops.image.affine_transform(
                images, self._transforms(ops.shape(images)[0], ops.shape(images)[2],
                                         ops.shape(images)[1]),
                interpolation="bilinear", fill_mode="nearest")
        if self.erasing > 0:
            images = self._erase(images)
        return images

    @property
    def warps(self) -> bool:
        return bool(self.flip or self.rotation or self.shear or self.zoom or self.translation
                    or self.crop)

    def _uniform(self, batch, low: float, high: float):
        return keras.random.uniform((batch,), low, high, seed=self.seed_generator)

    def _transforms(self, batch, width: int, height: int):
        """(batch, 8) projective transforms mapping output pixels to input pixels.

        The output pixel p maps to c + L (r (p - c) + d): r and d undo the crop (its scale and the
        offset of its centre), then L = flip . rotation . shear . zoom acts about the image centre c; the
        translation moves the content, so it enters d with a minus sign.
        """
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        ones = ops.ones((batch,))
        f = ops.where(self._uniform(batch, 0.0, 1.0) < 0.5, -1.0, 1.0) if self.flip else ones
        angle = self._uniform(batch, -1.0, 1.0) * (self.rotation * math.pi / 180.0)
        shear = (self._uniform(batch, -1.0, 1.0) * (self.shear * math.pi / 180.0) if self.shear
                 else ops.zeros((batch,)))
        scale = self._uniform(batch, 1.0 - self.zoom, 1.0 + self.zoom) if self.zoom else ones
        dx = dy = ops.zeros((batch,))
        if self.translation:
            dx = -self._uniform(batch, -self.translation, self.translation) * width
            dy = -self._uniform(batch, -self.translation, self.translation) * height
        r = 1.0
        if self.crop:
            r = self.crop / IMAGE_SIZE
            # Whole-pixel offsets of the crop's corner, uniform in [0, side - crop], as RandomCrop.
            span = IMAGE_SIZE - self.crop + 1
            dx = dx + ops.floor(self._uniform(batch, 0.0, span)) + (self.crop - 1) / 2.0 - cx
            dy = dy + ops.floor(self._uniform(batch, 0.0, span)) + (self.crop - 1) / 2.0 - cy
        # L = [[f cos a, -f sin a], [sin a, cos a]] (x flipped after the rotation a) times
        # ImageDataGenerator's shear [[1, -sin s], [0, cos s]] times the zoom:
        # [[f cos a, -f sin(a + s)], [sin a, cos(a + s)]] times the zoom.
        l00 = f * ops.cos(angle) * scale
        l01 = -f * ops.sin(angle + shear) * scale
        l10 = ops.sin(angle) * scale
        l11 = ops.cos(angle + shear) * scale
        a0, a1, b0, b1 = r * l00, r * l01, r * l10, r * l11
        a2 = cx - a0 * cx - a1 * cy + l00 * dx + l01 * dy
        b2 = cy - b0 * cx - b1 * cy + l10 * dx + l11 * dy
        zeros = ops.zeros((batch,))
        return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def _erase(self, images):
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        low, high = ERASING_AREA
        box_w = ops.sqrt(self._uniform(batch, low, high)) * width
        box_h = ops.sqrt(self._uniform(batch, low, high)) * height
        x0 = self._uniform(batch, 0.0, 1.0) * (width - box_w)
        y0 = self._uniform(batch, 0.0, 1.0) * (height - box_h)
        apply = self._uniform(batch, 0.0, 1.0) < self.erasing
        xs = ops.arange(width, dtype="float32")[None, None, :]
        ys = ops.arange(height, dtype="float32")[None, :, None]
        inside = ((xs >= x0[:, None, None]) & (xs < (x0 + box_w)[:, None, None])
                  & (ys >= y0[:, None, None]) & (ys < (y0 + box_h)[:, None, None]))
        mask = (inside & apply[:, None, None])[..., None]
        noise = ops.clip(keras.random.normal(shape, seed=self.seed_generator) * PIXEL_MAX, 0.0, PIXEL_MAX)
        return ops.where(mask, noise, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "rotation": self.rotation,
                "zoom": self.zoom, "translation": self.translation, "crop": self.crop,
                "erasing": self.erasing, "seed": self.seed, "shear": self.shear}


def augmentation_layer(config: TrainConfig) -> FaceAugmentation | None:
    """The run's augmentation (None when it is off or every switch is off)."""
    if not config.augment:
        return None
    layer = FaceAugmentation(flip=config.flip, rotation=config.rotation, zoom=config.zoom,
                             translation=config.translation, shear=config.shear, crop=config.crop,
                             erasing=config.erasing, seed=config.seed, name="augmentation")
    return layer if layer.warps or layer.erasing > 0 else None


def with_augmentation(network: keras.Model, config: TrainConfig) -> keras.Model:
    """The model that ``fit`` trains: the run's augmentation (if any) in front of ``network``.

    The network is the same object (shared weights) and stays uncompiled, so ``network_of`` gets
    it back and saving it writes the network alone, without augmentation or optimizer state.
    """
    inputs = keras.Input(shape=INPUT_SHAPE, name="face")
    augment = augmentation_layer(config)
    outputs = network(inputs if augment is None else augment(inputs))
    return keras.Model(inputs, outputs, name=f"{network.name}_training")


def network_of(model: keras.Model) -> keras.Model:
    """The network inside a model built by ``with_augmentation`` (a plain model: itself)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    return model
