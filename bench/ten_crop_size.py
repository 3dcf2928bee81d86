"""Choose the ten-crop side for models trained without random crops, on PublicTest only.

Ten-crop test-time augmentation takes four corner crops and a centre crop of side ``s`` from each
48x48 face, resizes them back to 48x48 and averages the logits of the ten views (with mirrors).
This prints the PublicTest (validation) accuracy for several sides; ``fer.tta.TEN_CROP_SIZE``
is the best of them for the shipped model. PrivateTest is never looked at here.

Run (prints JSON, also written to bench/results/ten_crop_size.json)::

    python bench/ten_crop_size.py [--model experiments/<run-id>] [--sizes 38 40 42 44 46]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import add_model_and_data_arguments, load_predictor_and_split, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_and_data_arguments(parser, "ten_crop_size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[38, 40, 42, 44, 46])
    args = parser.parse_args(argv)
    predictor, val = load_predictor_and_split(args, "val")

    def accuracy(probabilities: np.ndarray) -> float:
        return round(float((probabilities.argmax(axis=1) == val.labels).mean()), 4)

    result = {"split": "PublicTest (validation)", "n": int(len(val.labels)), "model": str(predictor.path),
              "none": accuracy(predictor.predict_faces(val.images)),
              "flip": accuracy(predictor.predict_faces(val.images, tta="flip")), "ten_crop": {}}
    for size in args.sizes:
        predictor.crop_size = size
        result["ten_crop"][str(size)] = accuracy(predictor.predict_faces(val.images, tta="ten_crop"))
    result["best_size"] = int(max(result["ten_crop"], key=result["ten_crop"].get))
    write_result("ten_crop_size", result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
