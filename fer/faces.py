"""From image bytes to 48x48 grayscale faces: decode safely, find faces, crop them.

Faces are found with OpenCV's Haar cascade, which ships inside the opencv-python-headless wheel,
so everything works offline.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer import IMAGE_SIZE

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



class DetectorError(RuntimeError):
    """OpenCV's face detector is not installed as it should be."""


class ImageError(ValueError):
    """The upload is not an image we can read."""



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
        raise ImageError("the image is too large to open safely "
                         f"(possible decompression bomb): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("the file is not an image format we can read (JPEG, PNG, WebP, BMP, GIF)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"the image is damaged or truncated ({exc})") from None
    image = ImageOps.exif_transpose(image)
    return to_rgb(image)


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


# One detector per thread: OpenCV's CascadeClassifier keeps scratch buffers in the object, so two
# Streamlit sessions detecting at the same time on a shared one can miss faces.
_CASCADES = threading.local()


def face_detector():
    """This thread's Haar cascade (OpenCV's classifiers are not safe to share between threads)."""
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
    found = face_detector().detectMultiScale(small, scaleFactor=1.1, minNeighbors=neighbors,
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


