"""From a photo to per-class probabilities: the ``Predictor``.

``Predictor.load()`` loads the shipped default model (or any run's ``model.keras``) with Keras'
``safe_mode=True``. Finding and cropping faces: ``fer.faces``; test-time augmentation views:
``fer.tta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fer import CLASSES, DEFAULT_MODEL_DIR, IMAGE_SIZE
from fer.faces import crop_face, detect_faces, read_image, to_rgb, whole_image_face
from fer.run_folder import RunFolder, describe_model
from fer.tta import TEN_CROP_SIZE, tta_mode, tta_views


class ModelError(ValueError):
    """The model file is missing, unsafe or not a FER model."""


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]  # x, y, width, height in the (EXIF-rotated) image
    probabilities: np.ndarray  # (7,) in fer.CLASSES order
    face: np.ndarray  # the 48x48 grayscale crop the model saw
    whole_image: bool = False

    @property
    def label(self) -> str:
        return CLASSES[int(self.probabilities.argmax())]


# Up to this many faces go through one compiled call of the model; more go through
# ``model.predict`` in batches of this size.
DIRECT_CALL_MAX_FACES = 256


def resolve_model_path(model: str | Path | None) -> Path:
    """The .keras file for ``model``: None (shipped default), a run folder, or a .keras file."""
    path = RunFolder(DEFAULT_MODEL_DIR).model_file if model in (None, "") else Path(model)
    if path.is_dir():
        path = RunFolder(path).model_file
    if not path.is_file():
        raise ModelError(f"no model at {path}")
    if path.suffix != ".keras":
        raise ModelError(f"{path} is not a .keras model file (other formats are not loaded)")
    return path


class Predictor:
    """A loaded FER model; call ``predict_faces`` or ``predict_image``."""

    def __init__(self, model, path: Path, description: str = "", crop_size: int = TEN_CROP_SIZE):
        self.model = model
        self.path = path
        self.description = description or path.parent.name
        self.crop_size = crop_size  # side of the ten-crop TTA crops

    @classmethod
    def load(cls, model: str | Path | None = None) -> Predictor:
        path = resolve_model_path(model)
        import keras

        try:
            loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
            text = str(exc)
            if "Lambda" in text or "safe_mode" in text:
                raise ModelError(f"refused {path}: it contains a Lambda layer (arbitrary code), "
                                 "which is never loaded") from None
            raise ModelError(f"could not load {path}: "
                             f"{text.splitlines()[0] if text else type(exc).__name__}") from None
        inputs, outputs = tuple(loaded.input_shape), tuple(loaded.output_shape)
        if inputs[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1) or outputs[1:] != (len(CLASSES),):
            raise ModelError(f"{path} is not a FER model: input {inputs}, output {outputs}; "
                             f"expected (None, {IMAGE_SIZE}, {IMAGE_SIZE}, 1) -> (None, {len(CLASSES)})")
        return cls(loaded, path, describe_model(path), _trained_crop(path) or TEN_CROP_SIZE)

    def predict_faces(self, faces: np.ndarray, tta: str = "none") -> np.ndarray:
        """Probabilities (n, 7) for 48x48 grayscale faces (raw 0-255 pixels).

        ``tta`` is a test-time augmentation mode (see ``TTA_MODES``): the model sees several views
        of each face and their log-probabilities (logits up to a constant) are averaged.
        """
        mode = tta_mode(tta)
        faces = np.asarray(faces, dtype=np.float32)
        if faces.ndim == 2:
            faces = faces[None]
        if faces.ndim != 3 or faces.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"faces must be (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {faces.shape}")
        if len(faces) == 0:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        if mode == "none":
            return self._predict(faces[..., None])
        total = np.zeros((len(faces), len(CLASSES)), dtype=np.float64)
        views = tta_views(faces, mode, self.crop_size)
        for view in views:
            total += np.log(np.clip(self._predict(view[..., None]), 1e-12, 1.0))
        mean = total / len(views)
        probabilities = np.exp(mean - mean.max(axis=1, keepdims=True))
        return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) <= DIRECT_CALL_MAX_FACES:
            # One traced graph for every batch size: predict() sets up a dataset on every call and
            # an eager model call runs layer by layer (both cost tens of ms for one face on a CPU).
            return np.asarray(self._traced()(batch))
        return self.model.predict(batch, batch_size=DIRECT_CALL_MAX_FACES, verbose=0)

    def _traced(self):
        if getattr(self, "_call", None) is None:
            import keras

            compile_call = _tensorflow_call if keras.backend.backend() == "tensorflow" else _jax_call
            self._call = compile_call(self.model)
        return self._call

    def predict_image(self, image: bytes | Image.Image, whole_image_if_no_face: bool = False,
                      tta: str = "none") -> list[FaceResult]:
        """One result per detected face (largest first); [] when no face is found, unless
        ``whole_image_if_no_face`` asks to classify the whole picture instead."""
        if isinstance(image, (bytes, bytearray)):
            image = read_image(bytes(image))
        else:
            image = to_rgb(ImageOps.exif_transpose(image))
        gray = np.asarray(image.convert("L"))
        boxes = detect_faces(gray)
        if boxes:
            faces = np.stack([crop_face(gray, box) for box in boxes])
            whole = False
        elif whole_image_if_no_face:
            faces = whole_image_face(gray)[None]
            boxes = [(0, 0, gray.shape[1], gray.shape[0])]
            whole = True
        else:
            return []
        probabilities = self.predict_faces(faces, tta=tta)
        return [FaceResult(box, probs, face, whole)
                for box, probs, face in zip(boxes, probabilities, faces, strict=True)]


def _tensorflow_call(model):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32)],
                 reduce_retracing=True)
    def call(batch):
        return model(batch, training=False)

    return call


def _jax_call(model):
    """The model as one compiled XLA call; batches are padded to a power of two, so a handful of
    shapes (1, 2, 4, ... DIRECT_CALL_MAX_FACES faces) are compiled once each instead of one per face
    count."""
    import jax

    @jax.jit
    def stateless(trainable, non_trainable, batch):
        return model.stateless_call(trainable, non_trainable, batch, training=False)[0]

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def call(batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        size = 1 << max(0, count - 1).bit_length()
        if size > count:
            batch = np.concatenate([batch, np.zeros((size - count, *batch.shape[1:]), batch.dtype)])
        return np.asarray(stateless(trainable, non_trainable, batch))[:count]

    return call


def _trained_crop(path: Path) -> int:
    """The random-crop side the model was trained with (its run's config), 0 if none."""
    crop = (RunFolder(path.parent).read_config_values() or {}).get("crop", 0)
    return crop if isinstance(crop, int) and 8 <= crop <= IMAGE_SIZE else 0
