"""Choose the ten-crop side for models trained without random crops, on PublicTest only.

Ten-crop test-time augmentation takes four corner crops and a centre crop of side ``s`` from each
48x48 face, resizes them back to 48x48 and averages the logits of the ten views (with mirrors).
This prints the PublicTest (validation) accuracy for several sides; ``fer.predict.TEN_CROP_SIZE``
is the best of them for the shipped model. PrivateTest is never looked at here.

Run (prints JSON, also written to bench/results/ten_crop_size.json)::

    python bench/ten_crop_size.py [--model experiments/<run-id>] [--sizes 38 40 42 44 46]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="a run folder or .keras file (default: the shipped model)")
    parser.add_argument("--data", default="", help="FER2013 location (default: FER_DATA or the shared archive)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[38, 40, 42, 44, 46])
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "ten_crop_size.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from fer.data import DataError, load_dataset
    from fer.predict import ModelError, Predictor

    try:
        predictor = Predictor.load(args.model or None)
        val = load_dataset(args.data or None).val
    except (DataError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def accuracy(probabilities: np.ndarray) -> float:
        return round(float((probabilities.argmax(axis=1) == val.labels).mean()), 4)

    result = {"split": "PublicTest (validation)", "n": int(len(val.labels)), "model": str(predictor.path),
              "none": accuracy(predictor.predict_faces(val.images)),
              "flip": accuracy(predictor.predict_faces(val.images, tta="flip")), "ten_crop": {}}
    for size in args.sizes:
        predictor.crop_size = size
        result["ten_crop"][str(size)] = accuracy(predictor.predict_faces(val.images, tta="ten_crop"))
    result["best_size"] = int(max(result["ten_crop"], key=result["ten_crop"].get))
    text = json.dumps(result, indent=2)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
