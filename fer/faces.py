"""From image bytes to 48x48 grayscale faces: decode safely, find faces, crop them.

Two face detectors, both working offline:

* ``blazeface`` (the default): Google MediaPipe's short-range BlazeFace network (a 230 KB TFLite
  file in ``fer/assets/face_detection/``, Apache 2.0), run with LiteRT (``ai-edge-litert``) or,
  without it, OpenCV's DNN module. A few passes over the picture, at several input sizes, find
  faces from close-ups that fill the picture down to about 15% of its long side (6% in group
  photos), tilted up to about 45 degrees, with each face's eye positions (crops are turned so the
  eyes are level).
* ``haar``: OpenCV's frontal-face Haar cascade, shipped inside the opencv-python-headless wheel (the
  fallback when BlazeFace cannot load, and a choice on the Predict page).

``bench/detectors.py`` compares them (recall, false boxes, speed).
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer import IMAGE_SIZE

# Refuse images above this many pixels before decoding them (Pillow's bomb guard is at ~179M).
MAX_PIXELS = 40_000_000
HAAR, BLAZEFACE = "haar", "blazeface"
# Detector name -> what the Predict page shows; the first is the default.
DETECTORS = {BLAZEFACE: "BlazeFace (MediaPipe)", HAAR: "Haar cascade (OpenCV)"}
DEFAULT_DETECTOR = BLAZEFACE
FACE_MODELS_DIR = Path(__file__).resolve().parent / "assets" / "face_detection"
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
# Photo bytes are decoded for prediction at a reduced size when that is cheaper (JPEG), keeping the
# long side at least this: BlazeFace's largest input is 512 pixels (looking for small faces in a
# group), and a face of 10% of the long side still spans 51 pixels for its 48x48 crop.
DETECTION_MIN_SIDE = 512
# Grow each detected box by this fraction per side: FER2013 faces include brow and chin.
FACE_MARGIN = 0.1
# BlazeFace (MediaPipe's short-range network, trained on 128x128 inputs) runs a few passes, each
# with the picture shrunk into the middle of a square input: (pad, side) means a side x side input
# (the network is fully convolutional, so it runs at any side: 256 costs what 4 runs at 128 do)
# holding the picture's long side shrunk to side / pad. The padded 128 pass finds faces that fill
# the picture (close-ups), the 256 one faces down to about 15% of the long side. Recall and false
# boxes on PublicTest faces pasted into scenes, by bench/detectors.py.
BLAZE_PASSES = ((1.5, 128), (1.0, 128), (1.0, 256))
# When the passes above find no face or several (a group), a larger input looks for smaller faces
# (down to about 6% of the picture's long side) in pictures at least this many pixels long: on
# PublicTest scenes with four faces of 288-64 pixels it found 40% of them at 320, 50% at 448, 53%
# at 512 and 55.5% at 576 (a 512 input costs about 16 runs at 128).
BLAZE_FINE_SIDE = 512
BLAZE_FINE_MIN_SIDE = 512
# LiteRT threads per network run. On 2 idle cores two threads nearly halve a run (256 input: 4.6
# -> 2.4 ms; a 1 MP photo's detection 8.3 -> 5.1 ms); with one or both cores busy elsewhere the
# two take within 10% of one thread's time either way.
BLAZE_THREADS = min(2, os.cpu_count() or 1)
# A face is kept when its score is at least this (MediaPipe uses 0.5, which let 72 false boxes
# through on 341 PublicTest pictures of bench/detectors.py; 0.6 still 11, and one on the turned
# astronaut; 0.65 one, keeping 94% of the found faces), and boxes that overlap more than
# BLAZE_NMS_IOU are merged (score-weighted mean, as MediaPipe does).
BLAZE_MIN_SCORE = 0.65
BLAZE_MIN_LOGIT = math.log(BLAZE_MIN_SCORE / (1 - BLAZE_MIN_SCORE))
BLAZE_NMS_IOU = 0.3
# Of the passes that found a face, the one where it was closest to this many input pixels across
# gives its box and eyes: on the astronaut turned 30-45 degrees the passes with her face at 25
# pixels tilted the eyes 10 degrees; on PublicTest faces pasted into scenes the crops are
# classified as well as with the best-scoring pass's (bench/detectors.py, 200 faces per group).
BLAZE_BEST_FACE_PIXELS = 48
# Where a BlazeFace box sits on a FER2013 crop (PublicTest faces pasted into scenes, medians, by
# `python -m bench.detectors --calibrate`): the crop's side is 1.2 box sides (BLAZE_CROP_SIDE
# times the Haar margin) and its centre 0.1 box side above the box's centre (BLAZE_CROP_SHIFT is
# downwards, along the face's own vertical axis).
BLAZE_CROP_SIDE = 1.0
BLAZE_CROP_SHIFT = -0.1
# An upright face's box side is 2.3 times the distance between its eyes (median, IQR 2.24-2.39,
# same faces); aligned crops use at least that, since boxes of tilted faces come out smaller.
BLAZE_BOX_PER_EYE_DISTANCE = 2.3


class DetectorError(RuntimeError):
    """A face detector is not installed as it should be."""


class ImageError(ValueError):
    """The upload is not an image we can read."""


@dataclass(frozen=True)
class Face:
    """A detected face: its box (x, y, width, height) and, from BlazeFace, the image positions of
    its eyes (the eye on the image's left first)."""

    box: tuple[int, int, int, int]
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None
    score: float = 1.0



def read_image(data: bytes) -> Image.Image:
    """Decode upload bytes into an RGB image, upright according to its EXIF orientation."""
    return _decode(data)[0]


def read_image_for_detection(data: bytes, detector: str = DEFAULT_DETECTOR) -> tuple[Image.Image, float]:
    """``read_image`` for finding and cropping faces, and how many of the picture's pixels one of
    the returned image's pixels spans (about 1, 2, 4 or 8). A JPEG is decoded at the smallest of
    its built-in reductions (1/2, 1/4, 1/8: the decoder skips most of its work) that keeps the long
    side at least what ``detector`` looks at (``DETECTION_MIN_SIDE`` for BlazeFace; Haar's
    ``DETECTION_SIZE``, so that it sees what it sees on the whole picture)."""
    return _decode(data, DETECTION_MIN_SIDE if detector == BLAZEFACE else DETECTION_SIZE)


def _decode(data: bytes, min_side: int | None = None) -> tuple[Image.Image, float]:
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
        if min_side and image.format == "JPEG" and max(width, height) > min_side:
            scale = min_side / max(width, height)
            image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("the image is too large to open safely "
                         f"(possible decompression bomb): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("the file is not an image format we can read (JPEG, PNG, WebP, BMP, GIF)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"the image is damaged or truncated ({exc})") from None
    factor = max(width, height) / max(image.size)
    image = ImageOps.exif_transpose(image)
    return to_rgb(image), factor


def to_rgb(image: Image.Image) -> Image.Image:
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
        raise DetectorError(f"OpenCV's face detector is missing ({path}); install opencv-python-headless 4.x")
    return cascade


# One detector per thread: OpenCV's CascadeClassifier keeps scratch buffers in the object (and a
# TFLite interpreter its tensors), so two Streamlit sessions detecting at the same time on a shared
# one can miss faces.
_CASCADES = threading.local()
_BLAZE = threading.local()
_log = logging.getLogger(__name__)


def face_detector():
    """This thread's Haar cascade (OpenCV's classifiers are not safe to share between threads)."""
    cascade = getattr(_CASCADES, "cascade", None)
    if cascade is None:
        cascade = _CASCADES.cascade = _cascade()
    return cascade


def find_faces(image: np.ndarray, detector: str = DEFAULT_DETECTOR) -> tuple[list[Face], str]:
    """The faces in ``image`` (uint8, H x W gray or H x W x 3 RGB), largest first, and the name of
    the detector that found them: Haar when ``detector`` is BlazeFace and it cannot load (a warning
    is logged)."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected a gray (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    if detector == BLAZEFACE:
        try:
            faces = blaze_detector().detect(_rgb(image))
        except DetectorError as exc:
            _log.warning("BlazeFace is not available (%s); using the Haar cascade", exc)
        else:
            return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True), BLAZEFACE
    return [Face(box) for box in _haar_boxes(_gray(image))], HAAR


def detect_faces(image: np.ndarray, detector: str = DEFAULT_DETECTOR) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in ``image`` (gray or RGB uint8), largest first."""
    return [face.box for face in find_faces(image, detector)[0]]


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def _rgb(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image


# ---- Haar cascade ---------------------------------------------------------------------------------

def _haar_boxes(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Haar face boxes (x, y, w, h) in ``gray`` (uint8, H x W), largest first.

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
    if scale < 1:  # at least one pixel each way: a 4000x3 picture scales its height to 0.27
        gray = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=cv2.INTER_AREA)
    if min(gray.shape) < min_side:
        return []  # no face of min_side fits (and OpenCV asserts on some of these sizes)
    found = face_detector().detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1,
                                             minNeighbors=neighbors, minSize=(min_side, min_side))
    return [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]


# ---- BlazeFace -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _BlazeModel:
    """One BlazeFace network: its file, input side and SSD anchor layout (MediaPipe's
    face_detection_*_range graphs): per stride, how many anchors sit on each grid cell."""

    file: str
    size: int
    anchors_per_stride: tuple[tuple[int, int], ...]

    def anchors(self, side: int) -> np.ndarray:
        """(n, 2) anchor centres in [0, 1] for a side x side input, in the network's output order."""
        rows = []
        for stride, per_cell in self.anchors_per_stride:
            cells = math.ceil(side / stride)
            ys, xs = np.mgrid[0:cells, 0:cells]
            centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
            rows.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        return np.concatenate(rows).astype(np.float32)


SHORT_RANGE = _BlazeModel("face_detection_short_range.tflite", 128, ((8, 2), (16, 6)))


class _Network:
    """A BlazeFace network with a side x side input, on LiteRT (fast, XNNPACK) or, without
    ``ai-edge-litert``, on OpenCV's DNN module (the same outputs, slower)."""

    def __init__(self, model: _BlazeModel, folder: Path, side: int):
        self.model, self.side = model, side
        self.anchors = model.anchors(side)
        path = folder / model.file
        if not path.is_file():
            raise DetectorError(f"the BlazeFace model {path} is missing")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            Interpreter = None  # noqa: N806 - the class, when the package is there
        try:
            if Interpreter is not None:
                self.interpreter = Interpreter(model_path=str(path), num_threads=BLAZE_THREADS)
                self.input = self.interpreter.get_input_details()[0]["index"]
                if side != model.size:
                    self.interpreter.resize_tensor_input(self.input, [1, side, side, 3])
                self.interpreter.allocate_tensors()
                self.outputs = [out["index"] for out in self.interpreter.get_output_details()]
                self.runtime = "litert"
            else:
                import cv2

                self.net = cv2.dnn.readNetFromTFLite(str(path))
                self.names = self.net.getUnconnectedOutLayersNames()
                self.runtime = "opencv"
            regressors, scores = self.run(np.zeros((side, side, 3), np.uint8))
        except DetectorError:
            raise
        except Exception as exc:  # noqa: BLE001 - both runtimes raise many types for a bad file
            raise DetectorError(f"the BlazeFace model {path} could not be loaded: {exc}") from None
        if regressors.shape != (len(self.anchors), 16) or scores.shape != (len(self.anchors),):
            raise DetectorError(f"the BlazeFace model {path} has unexpected outputs "
                                f"{regressors.shape} and {scores.shape}")

    def run(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(regressors (n, 16), raw scores (n,)) for a side x side x 3 uint8 RGB picture."""
        pixels = square.astype(np.float32) * (1 / 127.5) - 1
        if self.runtime == "litert":
            self.interpreter.set_tensor(self.input, pixels[None])
            self.interpreter.invoke()
            outputs = [self.interpreter.get_tensor(index) for index in self.outputs]
        else:
            self.net.setInput(pixels.transpose(2, 0, 1)[None])
            outputs = self.net.forward(self.names)
        regressors = next(out for out in outputs if out.shape[-1] == 16).reshape(-1, 16)
        scores = next(out for out in outputs if out.shape[-1] == 1).reshape(-1)
        return regressors, scores

    def candidates(self, rgb: np.ndarray, pad: float) -> list[tuple]:
        """(score, box x0 y0 x1 y1, 6 key points, the face's side in input pixels) in ``rgb``'s
        pixels, for every anchor above ``BLAZE_MIN_SCORE``; the picture is shrunk into the middle
        of the square input, its long side ``1 / pad`` of the input's."""
        height, width = rgb.shape[:2]
        size = self.side
        scale = size / (pad * max(height, width))
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = (size - new_w) // 2, (size - new_h) // 2
        square = np.zeros((size, size, 3), np.uint8)
        square[top:top + new_h, left:left + new_w] = shrink(rgb, new_w, new_h)
        regressors, raw = self.run(square)
        found = []
        keep = np.flatnonzero(raw >= BLAZE_MIN_LOGIT)
        if not len(keep):
            return found
        scores = 1 / (1 + np.exp(-np.clip(raw[keep].astype(np.float64), -80, 80)))
        offset = np.array([left, top], dtype=np.float64)
        for index, score in zip(keep, scores, strict=True):
            values = regressors[index] / size
            anchor = self.anchors[index]
            cx, cy = values[0] + anchor[0], values[1] + anchor[1]
            box = np.array([cx - values[2] / 2, cy - values[3] / 2, cx + values[2] / 2, cy + values[3] / 2])
            points = values[4:16].reshape(6, 2) + anchor
            found.append((float(score), (box * size - np.tile(offset, 2)) / scale,
                          (points * size - offset) / scale, float(values[2] * size)))
        return found


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to width x height by area averaging, through a whole-factor reduction
    first (OpenCV's area resize is several times faster for whole factors)."""
    import cv2

    factor = min(image.shape[1] // max(1, width), image.shape[0] // max(1, height))
    if factor >= 2:  # (dropping the last few rows and columns that do not fill a whole block)
        rows, cols = image.shape[0] // factor, image.shape[1] // factor
        image = cv2.resize(image[:rows * factor, :cols * factor], (cols, rows), interpolation=cv2.INTER_AREA)
    if image.shape[1] == width and image.shape[0] == height:
        return image
    # Less than 2x left: bilinear reads every source pixel and is several times faster than
    # OpenCV's area resize for fractional factors.
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


class BlazeFace:
    """MediaPipe's short-range BlazeFace over the passes of ``BLAZE_PASSES`` (and, for groups and
    pictures without a face, a ``BLAZE_FINE_SIDE`` pass), candidates merged by weighted
    non-maximum suppression."""

    def __init__(self, folder: Path | None = None):
        self.folder = FACE_MODELS_DIR if folder is None else folder
        # The passes every picture takes load now (a bad model file fails here, so callers fall
        # back at once); the fine pass's network only when a picture first needs it.
        self.networks = {side: _Network(SHORT_RANGE, self.folder, side)
                         for side in sorted({side for _, side in BLAZE_PASSES})}

    def network(self, side: int) -> _Network:
        """The network with a side x side input (one per detector: a detector serves one thread)."""
        if side not in self.networks:
            self.networks[side] = _Network(SHORT_RANGE, self.folder, side)
        return self.networks[side]

    @property
    def runtime(self) -> str:
        """``litert`` or ``opencv``."""
        return next(iter(self.networks.values())).runtime

    def detect(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        candidates = self._passes(rgb, BLAZE_PASSES)
        merged = _weighted_nms(candidates)
        if len(merged) != 1 and max(height, width) >= BLAZE_FINE_MIN_SIDE:
            merged = _weighted_nms(candidates + self._passes(rgb, ((1.0, BLAZE_FINE_SIDE),)))
        faces = []
        for score, box, points in merged:
            x0, y0 = max(0.0, box[0]), max(0.0, box[1])
            x1, y1 = min(float(width), box[2]), min(float(height), box[3])
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            raw = tuple(int(round(v)) for v in (box[0], box[1], box[2] - box[0], box[3] - box[1]))
            eyes = (tuple(float(v) for v in points[0]), tuple(float(v) for v in points[1]))
            faces.append(Face(raw, eyes, score))
        return faces

    def _passes(self, rgb: np.ndarray, passes: tuple[tuple[float, int], ...]) -> list[tuple]:
        """Candidates (score, box, key points, (pad, side)) of ``passes``, in ``rgb``'s pixels.
        The picture is shrunk once, to the largest input of the passes; each pass shrinks that
        copy further."""
        height, width = rgb.shape[:2]
        factor = min(1.0, max(side for _, side in passes) / max(height, width))
        small = rgb
        if factor < 1.0:
            small = shrink(rgb, max(1, round(width * factor)), max(1, round(height * factor)))
        scale = np.array([small.shape[1] / width, small.shape[0] / height])
        return [(score, box / np.tile(scale, 2), points / scale, (pad, side), pixels)
                for pad, side in passes
                for score, box, points, pixels in self.network(side).candidates(small, pad)]


def blaze_detector() -> BlazeFace:
    """This thread's BlazeFace (raises DetectorError when its models cannot load; the failure is
    remembered so that later calls fall back at once)."""
    detector = getattr(_BLAZE, "detector", None)
    if detector is None:
        error = getattr(_BLAZE, "error", None)
        if error is not None:
            raise DetectorError(error)
        try:
            detector = _BLAZE.detector = BlazeFace()
        except DetectorError as exc:
            _BLAZE.error = str(exc)
            raise
    return detector


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _weighted_nms(candidates: list) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression, one pass per face: each group of boxes
    overlapping the best remaining one by more than BLAZE_NMS_IOU becomes the score-weighted mean
    of the group's boxes from one pass, the pass that saw the face closest to
    ``BLAZE_BEST_FACE_PIXELS`` across (a pass where the face is far from the network's best size
    places the eyes less well; mixing passes blurs them)."""
    remaining = sorted(candidates, key=lambda c: -c[0])
    merged = []
    while remaining:
        best = remaining[0]
        group = [c for c in remaining if _iou(best[1], c[1]) > BLAZE_NMS_IOU]
        remaining = [c for c in remaining if _iou(best[1], c[1]) <= BLAZE_NMS_IOU]
        chosen = min(group, key=lambda c: abs(math.log(max(c[4], 1e-3) / BLAZE_BEST_FACE_PIXELS)))[3]
        group = [c for c in group if c[3] == chosen]
        weights = np.array([c[0] for c in group])
        box = np.sum([c[1] * w for c, w in zip(group, weights, strict=True)], axis=0) / weights.sum()
        points = np.sum([c[2] * w for c, w in zip(group, weights, strict=True)], axis=0) / weights.sum()
        merged.append((best[0], box, points))
    return merged


# ---- crops ---------------------------------------------------------------------------------------

def face_crop(gray: np.ndarray, face: Face, align: bool = True) -> np.ndarray:
    """The 48x48 crop the model sees for ``face``: Haar boxes as ``crop_face`` cuts them; BlazeFace
    boxes widened to FER2013's framing and, with ``align``, turned so that the eyes are level."""
    if face.eyes is None:
        return crop_face(gray, face.box)
    x, y, w, h = face.box
    (lx, ly), (rx, ry) = face.eyes
    angle = math.degrees(math.atan2(ry - ly, rx - lx)) if align else 0.0
    # The box shrinks on a tilted face; the distance between the eyes does not.
    size = max(w, h, BLAZE_BOX_PER_EYE_DISTANCE * math.hypot(rx - lx, ry - ly)) if align else max(w, h)
    side = size * BLAZE_CROP_SIDE * (1 + 2 * FACE_MARGIN)
    # "Below" the box centre is along the face's own vertical axis.
    shift = size * BLAZE_CROP_SHIFT
    radians = math.radians(angle)
    cx = x + w / 2 - shift * math.sin(radians)
    cy = y + h / 2 + shift * math.cos(radians)
    return rotated_crop(gray, (cx, cy), side, angle)


def rotated_crop(gray: np.ndarray, centre: tuple[float, float], side: float, angle: float) -> np.ndarray:
    """The square of ``side`` pixels centred on ``centre`` and turned ``angle`` degrees (clockwise
    on screen), resized to 48x48; outside the picture the edge pixels are repeated."""
    import cv2

    cx, cy = centre
    # Shrink the neighbourhood first (area-averaging) so the final warp never skips pixels.
    factor = max(1.0, side / (2 * IMAGE_SIZE))
    reach = int(math.ceil(side * 0.75)) + 2  # half the diagonal, and a little more
    x0, y0 = int(math.floor(cx)) - reach, int(math.floor(cy)) - reach
    region = _padded_region(gray, x0, y0, 2 * reach, 2 * reach)
    if factor > 1:
        size = max(1, round(2 * reach / factor))
        region = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
        factor = 2 * reach / size
    local = ((cx - x0) / factor, (cy - y0) / factor)
    matrix = cv2.getRotationMatrix2D(local, angle, IMAGE_SIZE * factor / side)
    matrix[:, 2] += np.array([IMAGE_SIZE / 2, IMAGE_SIZE / 2]) - np.array(local)
    return cv2.warpAffine(region, matrix, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def _padded_region(gray: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """``gray[y0:y0+height, x0:x0+width]``, the parts outside the picture filled with its edge."""
    import cv2

    rows, cols = gray.shape
    cx0, cy0 = min(max(x0, 0), cols - 1), min(max(y0, 0), rows - 1)
    cx1, cy1 = max(min(x0 + width, cols), cx0 + 1), max(min(y0 + height, rows), cy0 + 1)
    inside = gray[cy0:cy1, cx0:cx1]
    return cv2.copyMakeBorder(inside, cy0 - y0, y0 + height - cy1, cx0 - x0, x0 + width - cx1,
                              cv2.BORDER_REPLICATE)


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A square 48x48 crop around ``box`` with a margin, clipped to the image."""
    import cv2

    x, y, w, h = box
    side = max(w, h) * (1 + 2 * FACE_MARGIN)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    x1 = min(gray.shape[1], max(x0 + 1, int(round(cx + side / 2))))
    y1 = min(gray.shape[0], max(y0 + 1, int(round(cy + side / 2))))
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
