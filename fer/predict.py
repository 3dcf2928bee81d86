"""From a photo to per-class probabilities: decode, detect faces, crop, resize, classify.

``Predictor.load()`` loads the shipped default model (or any run's ``model.keras``) with Keras'
``safe_mode=True``; faces are found with OpenCV's Haar cascade, which ships inside the
opencv-python-headless wheel, so everything works offline.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer import CLASSES, DEFAULT_MODEL_DIR, IMAGE_SIZE
from fer.run_folder import RunFolder, describe_model

# Refuse images above this many pixels before decoding them (Pillow's bomb guard is at ~179M).
MAX_PIXELS = 40_000_000
# Detection runs on a copy no larger than this (long side); boxes are mapped back. A first, fast
# pass looks for faces of at least COARSE_MIN_FACE (a fraction of the long side) on a small copy;
# only when it finds none does a second pass look for faces down to 1/25 of the short side on a
# DETECTION_SIZE copy (bench/predict_latency.py: Haar detection is most of the prediction time).
DETECTION_SIZE = 1024
# The cost of a Haar pass grows with (long side / smallest face)^2 more than with the copy's size.
# 360 pixels and faces of 8% of the long side (29 pixels there) found exactly the astronaut's face
# at every size (512-2048 pixels) and JPEG quality we tried, all ten faces of a group sheet, and
# cost 60% of a 480-pixel pass with 6% faces; 10% faces on 360 pixels missed faces of the sheet.
COARSE_DETECTION_SIZE = 360
COARSE_MIN_FACE = 0.08
# More neighbours on the small copy: Haar false positives (on the astronaut's suit) come and go
# with the scale; 5 let some through.
COARSE_MIN_NEIGHBORS = 6
# Grow each detected box by this fraction per side: FER2013 faces include brow and chin.
FACE_MARGIN = 0.1


class ModelError(ValueError):
    """The model file is missing, unsafe or not a FER model."""


class ImageError(ValueError):
    """The upload is not an image we can read."""


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]  # x, y, width, height in the (EXIF-rotated) image
    probabilities: np.ndarray  # (7,) in fer.CLASSES order
    face: np.ndarray  # the 48x48 grayscale crop the model saw
    whole_image: bool = False

    @property
    def label(self) -> str:
        return CLASSES[int(self.probabilities.argmax())]


def read_image(data: bytes) -> Image.Image:
    """Decode upload bytes into an RGB image, upright according to its EXIF orientation."""
    if not data:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns (instead of failing) between 89 and 179 megapixels: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageError(
                f"the image is too large ({width}x{height} = {width * height / 1e6:.0f} megapixels; "
                f"the limit is {MAX_PIXELS / 1e6:.0f})"
            )
        image.seek(0)  # first frame of an animation
        image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large to open safely (possible decompression bomb): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("the file is not an image format we can read (JPEG, PNG, WebP, BMP, GIF)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"the image is damaged or truncated ({exc})") from None
    image = ImageOps.exif_transpose(image)
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale high-bit-depth grayscale to 8 bits instead of clipping it.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low or 1.0) * 255
        image = Image.fromarray(array.astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def _cascade():
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ModelError(f"OpenCV's face detector is missing ({path}); install opencv-python-headless 4.x")
    return cascade


# One detector per thread: OpenCV's CascadeClassifier keeps scratch buffers in the object, so two
# Streamlit sessions detecting at the same time on a shared one can miss faces.
_CASCADES = threading.local()


def _thread_cascade():
    cascade = getattr(_CASCADES, "cascade", None)
    if cascade is None:
        cascade = _CASCADES.cascade = _cascade()
    return cascade


def detect_faces(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in ``gray`` (uint8, H x W), largest first.

    A fast pass on a copy at most ``COARSE_DETECTION_SIZE`` pixels long finds the faces that take at
    least ``COARSE_MIN_FACE`` of the long side (portraits, selfies); when it finds none, a slower
    pass on a ``DETECTION_SIZE`` copy finds faces down to 1/25 of the short side.
    """
    height, width = gray.shape
    coarse = min(1.0, COARSE_DETECTION_SIZE / max(height, width))
    boxes = _detect(gray, coarse, max(20, round(COARSE_MIN_FACE * max(height, width) * coarse)),
                    COARSE_MIN_NEIGHBORS)
    fine = min(1.0, DETECTION_SIZE / max(height, width))
    if not boxes and fine > coarse:
        boxes = _detect(gray, fine, max(20, round(min(height, width) * fine) // 25), 5)
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def _detect(gray: np.ndarray, scale: float, min_side: int, neighbors: int) -> list[tuple[int, int, int, int]]:
    """Haar detection on ``gray`` resized by ``scale``; boxes in ``gray``'s coordinates."""
    import cv2

    height, width = gray.shape
    small = cv2.resize(gray, (round(width * scale), round(height * scale)),
                       interpolation=cv2.INTER_AREA) if scale < 1 else gray
    small = cv2.equalizeHist(small)
    found = _thread_cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=neighbors,
                                               minSize=(min_side, min_side))
    return [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A square 48x48 crop around ``box`` with a margin, clipped to the image."""
    import cv2

    x, y, w, h = box
    side = max(w, h) * (1 + 2 * FACE_MARGIN)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    x1 = min(gray.shape[1], int(round(cx + side / 2)))
    y1 = min(gray.shape[0], int(round(cy + side / 2)))
    crop = gray[y0:y1, x0:x1]
    return cv2.resize(crop, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


def whole_image_face(gray: np.ndarray) -> np.ndarray:
    """The centre square of the image, resized to 48x48 (for pictures that are already a face)."""
    import cv2

    height, width = gray.shape
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    crop = gray[y0:y0 + side, x0:x0 + side]
    return cv2.resize(crop, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


# Test-time augmentation modes: name -> what the model sees for each face.
TTA_MODES: dict[str, str] = {
    "none": "the face as it is",
    "flip": "the face and its mirror image (2 views)",
    "ten_crop": "ten crops: 4 corners and the centre, and their mirror images (10 views)",
}
# Side of the ten-crop crops before they are resized back to 48x48, for models that were not
# trained on random crops; a model trained with ``crop`` uses that side. Chosen on PublicTest with
# bench/ten_crop_size.py for the shipped model: 40 -> 60.8%, 42 -> 62.0%, 44 -> 62.7%, 46 -> 62.8%.
TEN_CROP_SIZE = 46
# Up to this many faces go through one compiled call of the model; more go through
# ``model.predict`` in batches of this size.
DIRECT_CALL_MAX_FACES = 256


def tta_mode(tta: bool | str | None) -> str:
    """The TTA mode name for ``tta`` (booleans are accepted: True means "flip")."""
    if tta is None or tta is False:
        return "none"
    if tta is True:
        return "flip"
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_MODES)}")
    return tta


def ten_crops(faces: np.ndarray, size: int = TEN_CROP_SIZE) -> list[np.ndarray]:
    """Five crops of side ``size`` (corners and centre) resized back to 48x48, then their mirrors."""
    import cv2

    if not 8 <= size <= IMAGE_SIZE:
        raise ValueError(f"ten-crop size must be between 8 and {IMAGE_SIZE}, got {size}")
    last, middle = IMAGE_SIZE - size, (IMAGE_SIZE - size) // 2
    corners = [(0, 0), (0, last), (last, 0), (last, last), (middle, middle)]
    crops = []
    for y, x in corners:
        part = faces[:, y:y + size, x:x + size]
        crops.append(np.stack([cv2.resize(face, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
                               for face in part]) if size != IMAGE_SIZE else part)
    return crops + [crop[:, :, ::-1] for crop in crops]


def tta_views(faces: np.ndarray, mode: str, crop_size: int = TEN_CROP_SIZE) -> list[np.ndarray]:
    """The views of ``faces`` (n, 48, 48) that the model sees for a TTA mode."""
    mode = tta_mode(mode)
    if mode == "flip":
        return [faces, faces[:, :, ::-1]]
    if mode == "ten_crop":
        return ten_crops(faces, crop_size)
    return [faces]


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
            raise ModelError(f"could not load {path}: {text.splitlines()[0] if text else type(exc).__name__}") from None
        inputs, outputs = tuple(loaded.input_shape), tuple(loaded.output_shape)
        if inputs[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1) or outputs[1:] != (len(CLASSES),):
            raise ModelError(f"{path} is not a FER model: input {inputs}, output {outputs}; "
                             f"expected (None, {IMAGE_SIZE}, {IMAGE_SIZE}, 1) -> (None, {len(CLASSES)})")
        return cls(loaded, path, describe_model(path), _trained_crop(path) or TEN_CROP_SIZE)

    def predict_faces(self, faces: np.ndarray, tta: bool | str = False) -> np.ndarray:
        """Probabilities (n, 7) for 48x48 grayscale faces (raw 0-255 pixels).

        ``tta`` is a test-time augmentation mode (see ``TTA_MODES``): the model sees several views
        of each face and their log-probabilities (logits up to a constant) are averaged.
        ``True`` means ``"flip"``.
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

            self._call = (_tensorflow_call if keras.backend.backend() == "tensorflow" else _jax_call)(self.model)
        return self._call

    def predict_image(self, image: bytes | Image.Image, whole_image_if_no_face: bool = False,
                      tta: bool | str = False) -> list[FaceResult]:
        """One result per detected face (largest first); [] when no face is found, unless
        ``whole_image_if_no_face`` asks to classify the whole picture instead."""
        if isinstance(image, (bytes, bytearray)):
            image = read_image(bytes(image))
        else:
            image = _to_rgb(ImageOps.exif_transpose(image))
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
        return [FaceResult(box, probs, face, whole) for box, probs, face in zip(boxes, probabilities, faces, strict=True)]


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
