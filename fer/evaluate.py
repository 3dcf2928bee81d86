"""Evaluate a model on a split: accuracy, confusion matrix, per-class report, misclassified faces.

CLI: ``python -m fer.evaluate --model PATH --data DIR --split private`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fer import CLASSES
from fer.data import Split
from fer.run_folder import METRICS, MISCLASSIFIED, PREDICTIONS, RunFolder

SPLIT_ALIASES = {"private": "test", "privatetest": "test", "test": "test",
                 "public": "val", "publictest": "val", "val": "val", "validation": "val",
                 "train": "train", "training": "train"}


def metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows = true class, counts) and scikit-learn's report."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    predicted = probabilities.argmax(axis=1)
    index = list(range(len(CLASSES)))
    report = classification_report(labels, predicted, labels=index, target_names=list(CLASSES),
                                    output_dict=True, zero_division=0)
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=index).tolist(),
        "report": report,
    }


def write_evaluation(eval_dir: Path, splits: dict[str, Split], probabilities: dict[str, np.ndarray],
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write an evaluation folder: metrics, per-face predictions and the misclassified faces of
    the test split (``fer.run_folder`` names the files)."""
    import pandas as pd

    from fer.files import write_json_atomic

    eval_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"classes": list(CLASSES), **(extra or {}), "splits": {}}
    frames = []
    for name, split in splits.items():
        probs = probabilities[name]
        result["splits"][name] = metrics(split.labels, probs)
        frame = pd.DataFrame({"split": name, "name": split.names,
                              "true": [CLASSES[i] for i in split.labels],
                              "predicted": [CLASSES[i] for i in probs.argmax(axis=1)],
                              "confidence": probs.max(axis=1)})
        for i, cls in enumerate(CLASSES):
            frame[f"p_{cls}"] = probs[:, i]
        frames.append(frame)
    pd.concat(frames).to_csv(eval_dir / PREDICTIONS, index=False, float_format="%.5f")
    if "test" in splits:
        split, probs = splits["test"], probabilities["test"]
        predicted = probs.argmax(axis=1)
        wrong = np.flatnonzero(predicted != split.labels)
        tmp = eval_dir / f".{MISCLASSIFIED}.tmp.npz"
        np.savez_compressed(tmp, images=split.images[wrong], true=split.labels[wrong],
                            predicted=predicted[wrong], confidence=probs[wrong].max(axis=1),
                            names=np.array([split.names[i] for i in wrong], dtype=str))
        tmp.replace(eval_dir / MISCLASSIFIED)
    write_json_atomic(eval_dir / METRICS, result)
    return result


def eval_dir(run_dir: Path, tta: str = "none") -> Path:
    """Where a run's evaluation with test-time augmentation ``tta`` lives (the mode checked)."""
    from fer.tta import tta_mode

    return RunFolder(run_dir).eval_dir(tta_mode(tta))


def evaluate_run(run_dir: Path, dataset=None, tta: str = "none") -> dict[str, float]:
    """Evaluate a run's best model on its validation and test splits and write ``eval/``
    (``eval-<mode>/`` with a test-time augmentation mode).

    Works for stopped runs and the shipped model folder too (the best epoch's model.keras is
    kept); ``dataset`` defaults to the run's own data settings. Returns the accuracies; recording
    them in the run's status is the caller's (the worker's) business.
    """
    from fer.data import load_dataset
    from fer.predict import Predictor

    predictor = Predictor.load(run_dir)  # before the dataset: a bad model fails fast
    if dataset is None:
        config = RunFolder(run_dir).read_config()
        dataset = load_dataset(config.data or None, config.validation_split, config.seed,
                               config.max_train_samples)
    splits = {"val": dataset.val, "test": dataset.test}
    probabilities = {name: predictor.predict_faces(split.images, tta=tta) for name, split in splits.items()}
    result = write_evaluation(eval_dir(run_dir, tta), splits, probabilities,
                              {"val_description": dataset.val_description,
                               "test_description": dataset.test_description,
                               "tta": tta})
    return {"val_accuracy": result["splits"]["val"]["accuracy"],
            "test_accuracy": result["splits"]["test"]["accuracy"]}


# The largest misclassified.npz that is read (all 7,178 FER2013 test faces take about 17 MB).
MISCLASSIFIED_MAX_BYTES = 256 << 20


def read_evaluation(run_dir: Path, tta: str = "none") -> dict[str, Any] | None:
    """The evaluation's metrics.json, checked; None when there is none or it is damaged."""
    return read_evaluation_checked(run_dir, tta)[0]


def read_evaluation_checked(run_dir: Path, tta: str = "none") -> tuple[dict[str, Any] | None, list[str]]:
    """(metrics.json checked against fer.schemas.METRICS_SCHEMA, its problems): (None, []) when
    the model has no such evaluation, (None, problems) when its file is damaged."""
    from fer.schemas import METRICS_SCHEMA, load_checked

    metrics, problems = load_checked(eval_dir(run_dir, tta) / METRICS, METRICS_SCHEMA)
    if problems or metrics is None:
        return None, problems
    classes = metrics.get("classes", CLASSES)
    for split, result in metrics["splits"].items():
        matrix = result["confusion_matrix"]
        if len(matrix) != len(classes) or any(len(row) != len(classes) for row in matrix):
            problems.append(f"{METRICS}: splits.{split}.confusion_matrix is not "
                            f"{len(classes)} x {len(classes)} (one row and column per class)")
    return (None, problems) if problems else (metrics, [])


def read_misclassified(run_dir: Path, tta: str = "none") -> dict[str, np.ndarray] | None:
    """The misclassified test faces of an evaluation; None when missing or damaged."""
    from fer.files import FileProblem, is_regular_file

    path = eval_dir(run_dir, tta) / MISCLASSIFIED
    try:
        if not is_regular_file(path):
            return None
        if path.stat().st_size > MISCLASSIFIED_MAX_BYTES:
            raise FileProblem(f"{MISCLASSIFIED} is too large")
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError):
        return None
    return arrays if _valid_misclassified(arrays) else None


def _valid_misclassified(arrays: dict[str, np.ndarray]) -> bool:
    """Faces (n, 48, 48) with n true and predicted class indices and n confidences."""
    try:
        images, true = arrays["images"], arrays["true"]
        predicted, confidence = arrays["predicted"], arrays["confidence"]
    except KeyError:
        return False
    n = len(true)
    if images.ndim not in (3, 4) or len(images) != n or images.shape[1:3] != (48, 48):
        return False
    if len(predicted) != n or len(confidence) != n or not n:
        return n == 0 and len(predicted) == len(confidence) == len(images) == 0
    if not (np.issubdtype(true.dtype, np.integer) and np.issubdtype(predicted.dtype, np.integer)):
        return False
    return bool(true.min() >= 0 and predicted.min() >= 0 and max(true.max(), predicted.max()) < len(CLASSES)
                and np.isfinite(confidence.astype(float)).all())


def main(argv: list[str] | None = None) -> int:
    from fer.tta import TTA_MODES

    parser = argparse.ArgumentParser(prog="python -m fer.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="",
                        help="a model.keras file or run folder (default: the shipped model)")
    parser.add_argument("--run", default="", help="evaluate this run folder's best model on its own data "
                        "and write its eval/ folder (for stopped runs)")
    parser.add_argument("--data", default="",
                        help="dataset folder, .tar.gz or fer2013.csv "
                             "(default: FER_DATA or data/ in the project)")
    parser.add_argument("--split", default="private", help="private (test), public (val) or train")
    parser.add_argument("--tta", default="none", choices=list(TTA_MODES),
                        help="test-time augmentation: "
                        + "; ".join(f"{k} = {v}" for k, v in TTA_MODES.items()))
    parser.add_argument("--output", default="", help="also write the JSON to this file")
    args = parser.parse_args(argv)

    from fer.data import DataError, load_dataset
    from fer.predict import ModelError, Predictor

    if args.run:
        folder = RunFolder(args.run)
        try:
            summary = evaluate_run(folder.path, tta=args.tta)
            if args.tta == "none" and folder.status_file.is_file():
                folder.write_status(**summary)  # the results the worker would have recorded
        except (DataError, ModelError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({"run": args.run, "tta": args.tta,
                          "eval_dir": str(eval_dir(Path(args.run), args.tta)), **summary}, indent=2))
        return 0
    split_name = SPLIT_ALIASES.get(args.split.lower())
    if split_name is None:
        parser.error(f"--split {args.split!r} is unknown; use private, public or train")
    try:
        # A missing, damaged or non-regular model file, or one whose outputs are not probabilities
        # (NaN weights), is a ModelError: one line on stderr and exit code 2, as for bad data.
        predictor = Predictor.load(args.model or None)
        dataset = load_dataset(args.data or None)
    except (DataError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    split = dataset.split(split_name)
    probs = predictor.predict_faces(split.images, tta=args.tta)
    result = {"model": str(predictor.path), "data": str(dataset.source), "split": split_name,
              "split_description": {"val": dataset.val_description, "test": dataset.test_description,
                                    "train": "train/"}[split_name],
              "tta": args.tta, **metrics(split.labels, probs)}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
