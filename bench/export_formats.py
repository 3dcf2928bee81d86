"""Exports of the shipped model in every format: file size, largest difference from the Keras
model's probabilities and top-class agreement on PrivateTest, export and check times, and the
single-face latency of each runtime.

    python -m bench.export_formats            # every PrivateTest face (FER_DATA or data/), 200 calls
    python -m bench.export_formats --quick    # 64 faces, 10 calls (smoke test)

Exports go through ``fer.export.export_model`` (what ``python -m fer.export`` and the dashboard
run) into a temporary folder; without the dataset the faces are synthetic and the result says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

from bench.common import log, percentiles, temp_dir, write_result


def latency(run, face: np.ndarray, calls: int) -> dict[str, float]:
    """p50/p95 of ``run`` on one face (after three warm-up calls)."""
    for _ in range(3):
        run(face)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        run(face)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export_formats",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    faces, calls = (64, 10) if args.quick else (0, 200)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from fer import DEFAULT_MODEL_DIR
    from fer.export import FORMATS, export_model, load_export

    out = temp_dir("export")
    try:
        start = time.perf_counter()
        summary = export_model(DEFAULT_MODEL_DIR, list(FORMATS), out, faces,
                               progress=lambda phase, step, steps: log(f"{step}/{steps} {phase}"))
        total_s = time.perf_counter() - start
        from fer.predict import Predictor

        face = np.full((1, 48, 48, 1), 128, np.float32)
        predictor = Predictor.load(DEFAULT_MODEL_DIR)
        keras_call = lambda batch: predictor.predict_faces(batch[..., 0])  # noqa: E731
        latencies = {"Keras (fer.predict)": latency(keras_call, face, calls)}
        for name, spec in FORMATS.items():
            if name != "keras":
                latencies[spec.runtime] = latency(load_export(name, out / spec.file), face, calls)
        results = {name: {key: value for key, value in result.items() if key not in ("model_stamp", "ended")}
                   for name, result in summary["results"].items()}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    write_result("export_formats", {
        "quick": args.quick, "model": "shipped default model (mini_xception)",
        "faces": summary["faces"], "faces_source": summary["faces_source"],
        "total_s": round(total_s, 1), "formats": results, "single_face_latency": latencies})
    return 1 if any(result.get("error") for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
