"""Grad-CAM heatmaps: which part of a 48x48 face made the model choose a class.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, arXiv:1610.02391) weighs each channel of the last convolutional block's
activations ``A`` by the spatial mean of the gradient of the class score (the logit, before the
softmax) with respect to it, keeps the positive part of the weighted sum and upsamples it to the
face. It needs one forward and one backward pass per batch, works for every architecture in
``fer.models`` without retraining, and its map is aligned with the face, which is what the pages
show; gradient-free methods (Score-CAM, occlusion) need one forward pass per channel or patch.

The layer is found automatically: the last layer with a 4-D output before the network flattens
or pools globally, stepping back over trailing pooling and dropout layers (they only subsample
the block's activation, so the map keeps the finer grid, as the paper does with VGG16's
``block5_conv3``), and into a nested model such as VGG16. Keras 3 has no backend-neutral
gradient, so the gradient is taken per backend: ``tf.GradientTape`` on TensorFlow, ``jax.grad``
over ``stateless_call`` on JAX. Nothing here imports a framework until a ``GradCam`` is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fer import CLASSES, IMAGE_SIZE

# Layers after a block's activation that only subsample or drop it: the map is taken before them.
SUBSAMPLING_LAYERS = ("MaxPooling2D", "AveragePooling2D", "Dropout", "SpatialDropout2D",
                      "GaussianDropout", "GaussianNoise", "ActivityRegularization")
# Faces per backward pass; larger batches are split (and JAX compiles one shape per power of two).
BATCH = 64


class ExplainError(ValueError):
    """The model has no convolutional layer to explain, or the arguments are invalid."""


def _rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        return 0


def _single_inbound(layer):
    """The one layer feeding ``layer``, or None when it has several inputs (a merge) or none."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return None
    parents = nodes[0].parent_nodes
    return parents[0].operation if len(parents) == 1 else None


def target_layers(model) -> list:
    """The layer Grad-CAM explains, as a path of layers: [layer] in ``model``, or [nested model,
    layer inside it] (e.g. VGG16 inside the transfer model)."""
    spatial = [layer for layer in model.layers if _rank(layer) == 4
               and type(layer).__name__ != "InputLayer"]
    if not spatial:
        raise ExplainError(f"model {model.name!r} has no convolutional layer (no 4-D output) to explain")
    layer = spatial[-1]
    while type(layer).__name__ in SUBSAMPLING_LAYERS:
        parent = _single_inbound(layer)
        if parent is None or _rank(parent) != 4 or type(parent).__name__ == "InputLayer":
            break
        layer = parent
    if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested functional model
        return [layer, *target_layers(layer)]
    return [layer]


def _split(model, path: list, end):
    """(head, tail): Keras models with head(input) = the activation of ``path``'s layer and
    tail(activation) = ``end`` (a tensor of ``model``'s graph)."""
    import keras

    layer = path[0]
    if len(path) == 1:
        activation = layer.output
        return keras.Model(model.inputs[0], activation), keras.Model(activation, end)
    node = layer._inbound_nodes[0]
    inner_head, inner_tail = _split(layer, path[1:], layer.outputs[0])
    before = keras.Model(model.inputs[0], node.input_tensors[0])
    after = keras.Model(node.output_tensors[0], end)
    face = keras.Input(shape=tuple(model.inputs[0].shape[1:]))
    head = keras.Model(face, inner_head(before(face)))
    activation = keras.Input(shape=tuple(inner_head.outputs[0].shape[1:]))
    return head, keras.Model(activation, after(inner_tail(activation)))


def _logits_tail(model, path: list):
    """(head, tail, scores_are_logits): the tail ends in the class logits when the last layer is a
    softmax (a linear copy of it, same weights), else in the probabilities (log taken later)."""
    last = model.layers[-1]
    config = last.get_config()
    if config.get("activation") != "softmax":
        head, tail = _split(model, path, model.outputs[0])
        return head, tail, False
    import keras

    head, features = _split(model, path, last.input)
    linear = type(last).from_config({**config, "activation": "linear", "name": "gradcam_logits"})
    activation = keras.Input(shape=tuple(head.outputs[0].shape[1:]))
    logits = linear(features(activation))
    linear.set_weights(last.get_weights())
    return head, keras.Model(activation, logits), True


def ensemble_members(model) -> list:
    """The member networks of an ensemble model (``fer.ensemble``: nested models averaged by its
    last layer), or [] for any other model."""
    if not model.layers or type(model.layers[-1]).__name__ != "Average":
        return []
    return [layer for layer in model.layers if hasattr(layer, "layers") and hasattr(layer, "inputs")]


class GradCam:
    """Grad-CAM for a loaded FER model (raw 0-255 pixels in, softmax over ``CLASSES`` out).

    For an ensemble each member's map explains the class the ensemble chose (or the one asked
    for) and the maps are averaged: where the members together looked."""

    def __init__(self, model: Any):
        import keras

        self.model = model
        self.members = [GradCam(member) for member in ensemble_members(model)]
        if self.members:
            self.layer_name = ", ".join(f"{member.model.name}/{member.layer_name}" for member in self.members)
            self.grid = max((member.grid for member in self.members), key=lambda grid: grid[0])
            return
        self.path = target_layers(model)
        self.layer_name = "/".join(layer.name for layer in self.path)
        self.head, self.tail, self.logits = _logits_tail(model, self.path)
        self.grid = tuple(int(n) for n in self.head.outputs[0].shape[1:3])
        self.backend = keras.backend.backend()
        self._gradients = (self._tensorflow_gradients() if self.backend == "tensorflow"
                           else self._jax_gradients())

    def heatmaps(self, faces: np.ndarray, classes: int | Sequence[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps, classes): one (48, 48) map in [0, 1] per face (its maximum is 1, or all
        zeros when nothing in the face speaks for the class) and the class each map explains.

        ``faces``: (n, 48, 48) or (n, 48, 48, 1) raw pixels, or one (48, 48) face; ``classes``:
        one class index for every face, one per face, or None for each face's predicted class.
        """
        batch = np.asarray(faces, dtype=np.float32)
        if batch.ndim == 2:
            batch = batch[None]
        if batch.ndim == 4 and batch.shape[-1] == 1:
            batch = batch[..., 0]
        if batch.ndim != 3 or batch.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ExplainError(f"faces must be (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {np.shape(faces)}")
        count = len(batch)
        wanted = np.full(count, -1)  # -1: the predicted class
        if classes is not None:
            try:
                wanted = np.broadcast_to(np.asarray(classes, dtype=np.int64), (count,)).copy()
            except (TypeError, ValueError):
                wanted = np.full(count, -1)
            if np.any((wanted < 0) | (wanted >= len(CLASSES))):
                raise ExplainError(f"classes must be one index 0-{len(CLASSES) - 1} into fer.CLASSES "
                                   f"or one per face ({count}), got {classes!r}")
        maps = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        if self.members:
            return self._ensemble_maps(batch, wanted)
        for start in range(0, count, BATCH):
            part = slice(start, start + BATCH)
            maps[part], wanted[part] = self._explain(batch[part][..., None], wanted[part])
        return maps, wanted

    def _ensemble_maps(self, batch: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if np.any(wanted < 0):
            from keras import ops

            outputs = [self.model(batch[start:start + BATCH, ..., None], training=False)
                       for start in range(0, len(batch), BATCH)]
            chosen = np.concatenate([ops.convert_to_numpy(output).argmax(axis=1) for output in outputs])
            wanted = np.where(wanted < 0, chosen, wanted)
        total = sum(member.heatmaps(batch, wanted)[0] for member in self.members)
        tops = total.max(axis=(1, 2), keepdims=True)
        maps = np.where(tops > 0, total / np.where(tops > 0, tops, 1.0), 0.0).astype(np.float32)
        return maps, wanted.astype(np.int64)

    def _explain(self, batch: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        activations, gradients, classes = self._gradients(batch, wanted)
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        cams = np.maximum((weights * activations).sum(axis=-1), 0.0)
        return np.stack([_upsample(cam) for cam in cams]), classes.astype(np.int64)

    def _tensorflow_gradients(self):
        import tensorflow as tf

        head, tail, logits = self.head, self.tail, self.logits

        @tf.function(reduce_retracing=True)
        def gradients(batch, classes):
            activations = head(batch, training=False)
            with tf.GradientTape() as tape:
                tape.watch(activations)
                scores = _scores(tf.cast(tail(activations, training=False), tf.float32), logits)
                # -1 asks for the predicted class, known once the scores are: one pass either way.
                classes = tf.where(classes < 0, tf.argmax(scores, axis=1, output_type=tf.int32), classes)
                chosen = tf.reduce_sum(tf.gather(scores, classes, batch_dims=1))
            return activations, tape.gradient(chosen, activations), classes

        def call(batch: np.ndarray, wanted: np.ndarray):
            activations, grads, classes = gradients(tf.constant(batch), tf.constant(wanted, tf.int32))
            return (np.asarray(tf.cast(activations, tf.float32)), np.asarray(tf.cast(grads, tf.float32)),
                    np.asarray(classes))

        return call

    def _jax_gradients(self):
        import jax
        import jax.numpy as jnp

        head, tail, logits = self.head, self.tail, self.logits
        head_state = ([v.value for v in head.trainable_variables],
                      [v.value for v in head.non_trainable_variables])
        tail_state = ([v.value for v in tail.trainable_variables],
                      [v.value for v in tail.non_trainable_variables])

        def chosen(activations, classes, state):
            output = tail.stateless_call(*state, activations, training=False)[0]
            scores = _scores(output.astype(jnp.float32), logits)
            classes = jnp.where(classes < 0, jnp.argmax(scores, axis=1), classes)  # -1: predicted
            return jnp.take_along_axis(scores, classes[:, None], axis=1).sum(), classes

        @jax.jit
        def gradients(batch, classes, head_state, tail_state):
            activations = head.stateless_call(*head_state, batch, training=False)[0]
            grads, classes = jax.grad(chosen, has_aux=True)(activations, classes, tail_state)
            return activations, grads, classes

        def call(batch: np.ndarray, wanted: np.ndarray):
            count = len(batch)
            size = 1 << max(0, count - 1).bit_length()  # one compiled shape per power of two
            padded = np.concatenate([batch, np.zeros((size - count, *batch.shape[1:]), batch.dtype)])
            classes = np.concatenate([wanted, np.zeros(size - count, np.int64)]).astype(np.int32)
            activations, grads, classes = gradients(padded, classes, head_state, tail_state)
            return (np.asarray(activations, dtype=np.float32)[:count],
                    np.asarray(grads, dtype=np.float32)[:count], np.asarray(classes)[:count])

        return call


def _scores(output, logits: bool):
    """Class scores: the logits, or the log of the probabilities of a model without a softmax
    layer to unwrap (equal to the logits up to a per-face constant)."""
    from keras import ops

    return output if logits else ops.log(ops.maximum(output, 1e-12))


def _upsample(cam: np.ndarray) -> np.ndarray:
    """A coarse map resized (bilinear) to the face and scaled to a maximum of 1."""
    import cv2

    resized = cv2.resize(np.ascontiguousarray(cam, dtype=np.float32), (IMAGE_SIZE, IMAGE_SIZE),
                         interpolation=cv2.INTER_LINEAR)
    resized = np.maximum(resized, 0.0)
    top = float(resized.max())
    return resized / top if top > 0 and np.isfinite(top) else np.zeros_like(resized)


def overlay(face: np.ndarray, heatmap: np.ndarray, size: int = 144, opacity: float = 0.45) -> np.ndarray:
    """An RGB (size, size, 3) picture of the grayscale face with the heatmap over it (jet colours:
    red where the map is high, blue where it is low)."""
    import cv2

    face = np.asarray(face, dtype=np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE)
    factor = max(1, size // IMAGE_SIZE)
    side = IMAGE_SIZE * factor
    gray = np.repeat(np.repeat(face, factor, axis=0), factor, axis=1)
    heat = cv2.resize(np.asarray(heatmap, dtype=np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB).astype(np.float32)
    blended = (1 - opacity) * gray[..., None] + opacity * colours
    return np.clip(blended, 0, 255).astype(np.uint8)
