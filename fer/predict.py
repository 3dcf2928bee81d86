"""From a photo to per-class probabilities: the ``Predictor``.

``Predictor.load()`` loads the shipped default model (or any run's ``model.keras``) with Keras'
``safe_mode=True`` after checking that the path is a regular file holding a whole .keras (zip)
archive, and refuses a model whose outputs on a small probe batch are not probabilities (NaN
weights). Finding and cropping faces: ``fer.faces``; test-time augmentation views: ``fer.tta``.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fer import CLASSES, IMAGE_SIZE
from fer.backends import use_compilation_cache
from fer.faces import (
    DEFAULT_DETECTOR,
    face_crop,
    find_faces,
    read_image_for_detection,
    to_rgb,
    whole_image_face,
)
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
    detector: str = ""  # the face detector that found it (fer.faces.DETECTORS)

    @property
    def label(self) -> str:
        return CLASSES[int(self.probabilities.argmax())]


# Up to this many faces go through one compiled call of the model; more go through
# ``model.predict`` in batches of this size.
DIRECT_CALL_MAX_FACES = 256

# How far a probe output may stray from a probability distribution: loose enough for a float16 or
# bfloat16 softmax, tight enough to refuse logits or per-class sigmoids.
PROBABILITY_TOLERANCE = 1e-2
REMEDY = "retrain the model or pick another one"  # ends the message of every damaged model


def resolve_model_path(model: str | Path | None) -> Path:
    """The .keras file for ``model``: None (the default model: the shipped one unless the user chose
    a run, ``fer.default_model``), a run folder, or a .keras file; for
    an ensemble folder (or its ensemble.json), its ensemble.json once its members are checked."""
    from fer.ensemble import ENSEMBLE_FILE, EnsembleError, check_members, ensemble_folder, is_ensemble

    if model in (None, ""):
        from fer.default_model import current_default, model_path

        path = model_path(current_default())
    else:
        path = Path(model)
    if is_ensemble(path):
        try:
            check_members(path)
        except EnsembleError as exc:
            raise ModelError(str(exc)) from None
        return ensemble_folder(path) / ENSEMBLE_FILE
    if path.is_dir():
        path = RunFolder(path).model_file
    check_model_file(path)
    return path


def check_model_file(path: Path) -> None:
    """Refuse (ModelError) a path that is not a regular, whole .keras archive, before Keras opens it."""
    _check_regular_file(path)
    if path.suffix != ".keras":
        raise ModelError(f"{path} is not a .keras model file (other formats are not loaded)")
    _check_archive(path)


def load_keras_model(path: Path):
    """A checked .keras file loaded with ``safe_mode`` (no Lambda code), refused unless it maps
    48x48x1 faces to the 7 classes."""
    import keras

    try:
        loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
        raise _load_error(path, exc) from None
    inputs, outputs = tuple(loaded.input_shape), tuple(loaded.output_shape)
    if inputs[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1) or outputs[1:] != (len(CLASSES),):
        raise ModelError(f"{path} is not a FER model: input {inputs}, output {outputs}; "
                         f"expected (None, {IMAGE_SIZE}, {IMAGE_SIZE}, 1) -> (None, {len(CLASSES)})")
    return loaded


def _check_regular_file(path: Path) -> None:
    """Refuse a missing path, and a pipe, socket or device before anything opens it (reading a
    named pipe blocks until something writes to it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelError(f"no model at {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ModelError(f"cannot read the model at {path}: {exc}") from None
    if not stat.S_ISREG(mode):
        raise ModelError(f"refused {path}: it is not a regular file (a folder, pipe, socket or device), "
                         "so it was not opened")


def _check_archive(path: Path) -> None:
    """Refuse an empty or truncated file, or one that is not a zip archive (a .keras file is one)."""
    try:
        with open(path, "rb") as file:
            empty = os.fstat(file.fileno()).st_size == 0
            archive = not empty and zipfile.is_zipfile(file)
    except OSError as exc:
        raise ModelError(f"cannot read the model at {path}: {exc}") from None
    if empty:
        raise ModelError(f"{path} is damaged: the file is empty; {REMEDY}")
    if not archive:
        raise ModelError(f"{path} is damaged: it is incomplete (cut short, e.g. by a full disk or an "
                         f"interrupted copy) or not a .keras archive; {REMEDY}")


class Predictor:
    """A loaded FER model; call ``predict_faces`` or ``predict_image``."""

    def __init__(self, model, path: Path, description: str = "", crop_size: int = TEN_CROP_SIZE):
        self.model = model
        self.path = path
        self.description = description or path.parent.name
        self.crop_size = crop_size  # side of the ten-crop TTA crops

    @classmethod
    def load(cls, model: str | Path | None = None) -> Predictor:
        """The shipped model (None), a run folder, a .keras file, or an ensemble folder (its
        members' probabilities averaged by one Keras model: see ``fer.ensemble``)."""
        path = resolve_model_path(model)
        use_compilation_cache()
        from fer import ensemble

        if path.name == ensemble.ENSEMBLE_FILE:
            try:
                loaded, crop = ensemble.load_network(path)
            except ensemble.EnsembleError as exc:
                raise ModelError(str(exc)) from None
            predictor = cls(loaded, path, ensemble.describe(path), crop or TEN_CROP_SIZE)
        else:
            predictor = cls(load_keras_model(path), path, describe_model(path),
                            _trained_crop(path) or TEN_CROP_SIZE)
        predictor.check_outputs()
        return predictor

    def check_outputs(self) -> None:
        """Refuse a model whose outputs on a small probe batch are not probabilities (NaN or infinite
        weights give NaN for every face). The probe goes through ``_predict``, the path every
        prediction takes on either backend, and traces (or compiles) it once for later calls."""
        faces = probe_faces()
        try:
            outputs = np.asarray(self._predict(faces), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - a backend raises many types for a broken graph
            raise ModelError(f"{self.path} could not run on a test face: {_first_line(exc)}; "
                             f"{REMEDY}") from None
        problem = probability_problem(outputs, len(faces))
        if problem:
            raise ModelError(f"{self.path} gives no valid probabilities {problem}")

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
                      tta: str = "none", detector: str = DEFAULT_DETECTOR) -> list[FaceResult]:
        """One result per detected face (largest first); [] when no face is found, unless
        ``whole_image_if_no_face`` asks to classify the whole picture instead. ``detector`` names
        the face detector (``fer.faces.DETECTORS``; Haar is used when BlazeFace cannot load)."""
        factor = 1.0  # picture pixels per pixel of ``image`` (boxes are in the picture's pixels)
        if isinstance(image, (bytes, bytearray)):
            image, factor = read_image_for_detection(bytes(image), detector)
        else:
            image = to_rgb(ImageOps.exif_transpose(image))
        gray = np.asarray(image.convert("L"))
        found, used = find_faces(np.asarray(image), detector)
        boxes = [face.box for face in found]
        if found:
            faces = np.stack([face_crop(gray, face) for face in found])
            whole = False
        elif whole_image_if_no_face:
            faces = whole_image_face(gray)[None]
            boxes = [(0, 0, gray.shape[1], gray.shape[0])]
            whole = True
        else:
            return []
        probabilities = self.predict_faces(faces, tta=tta)
        if factor != 1.0:
            boxes = [tuple(int(round(v * factor)) for v in box) for box in boxes]
        return [FaceResult(box, probs, face, whole, used)
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


def probe_faces() -> np.ndarray:
    """The probe batch (2, 48, 48, 1) of raw pixels: a mid-grey face and deterministic noise."""
    grey = np.full((IMAGE_SIZE, IMAGE_SIZE), 128, dtype=np.float32)
    noise = np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    return np.stack([grey, noise])[..., None]


def probability_problem(outputs: np.ndarray, count: int) -> str:
    """What keeps ``outputs`` from being ``count`` rows of class probabilities, as "(what): why";
    "" when nothing does."""
    if outputs.shape != (count, len(CLASSES)):
        return f"(outputs of shape {outputs.shape}, expected {(count, len(CLASSES))}): {REMEDY}"
    if not np.isfinite(outputs).all():
        return f"(NaN or infinite outputs): its weights are damaged; {REMEDY}"
    not_softmax = f"its last layer is not a softmax over the {len(CLASSES)} classes; {REMEDY}"
    if outputs.min() < -PROBABILITY_TOLERANCE or outputs.max() > 1 + PROBABILITY_TOLERANCE:
        return f"(outputs from {outputs.min():.3g} to {outputs.max():.3g}, not in [0, 1]): {not_softmax}"
    sums = outputs.sum(axis=1)
    worst = sums[np.abs(sums - 1).argmax()]
    if abs(worst - 1) > PROBABILITY_TOLERANCE:
        return f"(a row sums to {worst:.3g}, not 1): {not_softmax}"
    return ""


def _load_error(path: Path, exc: Exception) -> ModelError:
    """A clear ModelError for what ``keras.saving.load_model`` raised on ``path``."""
    text = str(exc)
    if "Lambda" in text or "safe_mode" in text:
        return ModelError(f"refused {path}: it contains a Lambda layer (arbitrary code), "
                          "which is never loaded")
    if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)) or "no item named" in text:
        return ModelError(f"{path} is damaged: its archive is corrupt or not a .keras model "
                          f"({_first_line(exc)}); {REMEDY}")
    return ModelError(f"could not load {path}: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().strip('"')
    return text.splitlines()[0] if text else type(exc).__name__


def _trained_crop(path: Path) -> int:
    """The random-crop side the model was trained with (its run's config), 0 if none."""
    crop = (RunFolder(path.parent).read_config_values() or {}).get("crop", 0)
    return crop if isinstance(crop, int) and 8 <= crop <= IMAGE_SIZE else 0
