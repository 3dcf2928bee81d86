"""fer.evaluate: metrics on known answers and the eval/ folder round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic import face

from fer import CLASSES
from fer.data import Split
from fer.evaluate import metrics, read_evaluation, read_misclassified, write_evaluation


def one_hot(predicted: list[int], confidence: float = 0.9) -> np.ndarray:
    """Probabilities that put ``confidence`` on each predicted class and spread the rest."""
    probabilities = np.full((len(predicted), len(CLASSES)), (1 - confidence) / (len(CLASSES) - 1))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def split_of(labels: list[int], prefix: str) -> Split:
    images = np.stack([face(label, i) for i, label in enumerate(labels)])
    return Split(images, np.array(labels, dtype=np.int64), [f"{prefix}/{i}.png" for i in range(len(labels))])


def test_metrics_on_known_answers():
    """Accuracy, and a confusion matrix whose rows are the true classes (angry row, happy column...)."""
    labels = np.array([0, 0, 3, 3, 6, 6, 4])
    predicted = [0, 3, 3, 3, 4, 6, 4]
    result = metrics(labels, one_hot(predicted))
    assert result["n"] == 7
    assert result["accuracy"] == pytest.approx(5 / 7)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (7, 7) and matrix.sum() == 7
    assert matrix[0, 0] == 1 and matrix[0, 3] == 1  # an angry face taken for happy: row angry
    assert matrix[6, 4] == 1 and matrix[4, 6] == 0  # a neutral face taken for sad: row neutral
    assert matrix.sum(axis=1).tolist() == np.bincount(labels, minlength=7).tolist()
    report = result["report"]
    assert report["happy"]["recall"] == 1.0 and report["happy"]["precision"] == pytest.approx(2 / 3)
    assert report["disgust"]["support"] == 0 and report["disgust"]["f1-score"] == 0.0


def test_metrics_use_the_canonical_class_order():
    """Column i of the probabilities is fer.CLASSES[i], whatever order folders had on disk."""
    labels = np.array([CLASSES.index("neutral")])
    result = metrics(labels, one_hot([6]))
    assert result["accuracy"] == 1.0 and result["confusion_matrix"][6][6] == 1
    assert list(result["report"])[:7] == list(CLASSES)


def test_write_read_evaluation_round_trip(tmp_path):
    """write_evaluation's files read back: metrics.json, predictions.csv and the misclassified faces."""
    splits = {"val": split_of([0, 1, 2], "val"), "test": split_of([3, 4, 5, 6], "test")}
    probabilities = {"val": one_hot([0, 1, 2]), "test": one_hot([3, 5, 5, 0], confidence=0.7)}
    result = write_evaluation(tmp_path / "eval", splits, probabilities, {"val_description": "PublicTest"})

    stored = read_evaluation(tmp_path)
    assert stored == result
    assert stored["classes"] == list(CLASSES) and stored["val_description"] == "PublicTest"
    assert stored["splits"]["val"]["accuracy"] == 1.0
    assert stored["splits"]["test"]["accuracy"] == 0.5

    frame = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert frame["split"].tolist() == ["val"] * 3 + ["test"] * 4
    assert frame["name"].tolist() == splits["val"].names + splits["test"].names
    assert frame["true"].tolist()[3:] == ["happy", "sad", "surprise", "neutral"]
    assert frame["predicted"].tolist()[3:] == ["happy", "surprise", "surprise", "angry"]
    assert frame["confidence"].tolist()[3:] == pytest.approx([0.7] * 4, abs=1e-5)
    assert frame["p_neutral"].iloc[-1] == pytest.approx(0.05, abs=1e-5)

    wrong = read_misclassified(tmp_path)
    assert wrong["true"].tolist() == [4, 6]
    assert wrong["predicted"].tolist() == [5, 0]
    assert wrong["names"].tolist() == ["test/1.png", "test/3.png"]
    np.testing.assert_array_equal(wrong["images"], splits["test"].images[[1, 3]])
    assert wrong["confidence"].tolist() == pytest.approx([0.7, 0.7])
    assert not list((tmp_path / "eval").glob("*.tmp*"))


def test_all_correct_gives_an_empty_misclassified_file(tmp_path):
    """A perfect test split still writes misclassified.npz, with zero faces in it."""
    splits = {"test": split_of([1, 2], "test")}
    write_evaluation(tmp_path / "eval", splits, {"test": one_hot([1, 2])})
    wrong = read_misclassified(tmp_path)
    assert wrong["images"].shape == (0, 48, 48) and len(wrong["names"]) == 0


def test_reading_a_run_without_evaluation_gives_none(tmp_path):
    """Runs that were stopped before evaluating have no eval/: the readers say None."""
    assert read_evaluation(tmp_path) is None
    assert read_misclassified(tmp_path) is None
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "misclassified.npz").write_bytes(b"garbage")
    (tmp_path / "eval" / "metrics.json").write_text("{")
    assert read_misclassified(tmp_path) is None
    assert read_evaluation(tmp_path) is None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_evaluate_run_reproduces_the_workers_evaluation(trained_run, tmp_path):
    """Re-evaluating a run (as for a stopped one) rebuilds eval/ with the worker's numbers."""
    import shutil

    from fer.evaluate import evaluate_run

    assert trained_run.returncode == 0, trained_run.output[-4000:]
    copy = shutil.copytree(trained_run.path, tmp_path / "copy")
    shutil.rmtree(copy / "eval")
    summary = evaluate_run(copy)
    original = read_evaluation(trained_run.path)["splits"]
    assert summary == {"val_accuracy": pytest.approx(original["val"]["accuracy"]),
                       "test_accuracy": pytest.approx(original["test"]["accuracy"])}
    assert read_evaluation(copy)["splits"]["test"]["confusion_matrix"] == original["test"]["confusion_matrix"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ten_crop_evaluation_is_written_beside_the_plain_one(trained_run, tmp_path):
    """``--run DIR --tta ten_crop`` writes eval-ten_crop/ and leaves eval/ and status.json alone."""
    import json
    import shutil

    from helpers import run_cli

    assert trained_run.returncode == 0, trained_run.output[-4000:]
    copy = shutil.copytree(trained_run.path, tmp_path / "copy")
    plain = (copy / "eval" / "metrics.json").read_text()
    status = (copy / "status.json").read_text()
    result = run_cli(["fer.evaluate", "--run", copy, "--tta", "ten_crop"], timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    printed = json.loads(result.stdout)
    stored = read_evaluation(copy, "ten_crop")
    assert stored["tta"] == "ten_crop"
    assert printed["test_accuracy"] == pytest.approx(stored["splits"]["test"]["accuracy"])
    assert read_misclassified(copy, "ten_crop") is not None
    assert (copy / "eval" / "metrics.json").read_text() == plain
    assert (copy / "status.json").read_text() == status


def test_unknown_tta_mode_is_refused_by_the_cli(tmp_path):
    from helpers import run_cli

    result = run_cli(["fer.evaluate", "--run", tmp_path, "--tta", "five_crop"], timeout=60)
    assert result.returncode == 2 and "ten_crop" in result.stderr


def forged_npz(path, shape, dtype="|u1", data=b"") -> None:
    """An .npz whose images.npy declares ``shape`` (a header is a few bytes whatever it declares)."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", header.getvalue() + data)  # the header starts with the magic


@pytest.mark.parametrize("case", ["declared-20M-faces", "zeros-that-unpack-to-300MB"])
def test_a_misclassified_file_that_would_unpack_to_too_much_is_never_loaded(tmp_path, monkeypatch, case):
    """A 713-byte file declaring (20 M, 48, 48) faces, or a 300 MB array of zeros compressed to a
    few hundred KB: refused from their headers (the page then shows no gallery), no MemoryError."""
    import fer.evaluate

    run_dir = tmp_path / "run"
    (run_dir / "eval").mkdir(parents=True)
    path = run_dir / "eval" / "misclassified.npz"
    if case == "declared-20M-faces":
        forged_npz(path, (20_000_000, 48, 48))
    else:
        np.savez_compressed(path, images=np.zeros((300 << 20,), np.uint8), true=np.zeros(1, int))
    assert path.stat().st_size < 1 << 20
    assert fer.evaluate.npz_unpacked_bytes(path) > fer.evaluate.MISCLASSIFIED_MAX_UNPACKED

    def never(*args, **kwargs):
        raise AssertionError("np.load was called on a file refused by its headers")

    monkeypatch.setattr(fer.evaluate.np, "load", never)
    assert read_misclassified(run_dir) is None


def test_a_misclassified_file_of_object_arrays_or_a_bad_header_reads_as_missing(tmp_path):
    (tmp_path / "eval").mkdir()
    forged_npz(tmp_path / "eval" / "misclassified.npz", (3,), dtype="|O")
    assert read_misclassified(tmp_path) is None
    (tmp_path / "eval" / "misclassified.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert read_misclassified(tmp_path) is None
