"""Model files that must not load: NaN weights (a probe batch gives no probabilities), truncated,
empty or corrupt archives, and paths that are not regular files (a named pipe would block).

Each is a ModelError with a clear message in Python, one ``error:`` line and exit code 2 from
``python -m fer.evaluate`` (on TensorFlow and on JAX), and an error message on the Predict page.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, worker_env

from fer import CLASSES, PROJECT_ROOT

keras = pytest.importorskip("keras")

from fer.config import TrainConfig  # noqa: E402
from fer.models import build_model  # noqa: E402
from fer.predict import ModelError, Predictor, probability_problem, probe_faces  # noqa: E402

NAN_MESSAGE = "gives no valid probabilities (NaN or infinite outputs): its weights are damaged"
JAX_ONLY = Path(__file__).resolve().parent / "jax_only.py"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """An untrained mini-Xception saved as .keras, and a copy with one weight set to NaN."""
    folder = tmp_path_factory.mktemp("models")
    model = build_model(TrainConfig(architecture="mini_xception"))
    model.save(folder / "valid.keras")
    weight = model.trainable_weights[0]
    values = np.array(keras.ops.convert_to_numpy(weight))
    values.flat[0] = np.nan
    weight.assign(values)
    model.save(folder / "nan.keras")
    return {"valid": folder / "valid.keras", "nan": folder / "nan.keras"}


def damaged_copy(models: dict[str, Path], folder: Path, kind: str) -> Path:
    """A model.keras in ``folder`` that is truncated, empty, corrupt inside or a zip of other files."""
    data = models["valid"].read_bytes()
    path = folder / "model.keras"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":  # the zip directory is intact; the weights inside fail their CRC
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(256) + data[middle + 256:])
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a model")
    return path


# ---- NaN weights and outputs that are not probabilities ----------------------------------------

def test_a_valid_model_still_loads_and_predicts(models):
    predictor = Predictor.load(models["valid"])
    faces = np.random.default_rng(3).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    probabilities = predictor.predict_faces(faces)
    assert probabilities.shape == (3, len(CLASSES)) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)


def test_nan_weights_are_refused_with_a_clear_message(models):
    with pytest.raises(ModelError, match=r"gives no valid probabilities \(NaN or infinite outputs\)") as info:
        Predictor.load(models["nan"])
    assert str(models["nan"]) in str(info.value) and "retrain" in str(info.value)


def test_a_model_without_a_softmax_is_refused(tmp_path):
    """Logits (a Dense layer with no softmax) are not probabilities either."""
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    outputs = keras.layers.Dense(7, kernel_initializer="ones", bias_initializer="ones")(x)
    path = tmp_path / "logits.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelError, match="no valid probabilities .*not a softmax"):
        Predictor.load(path)


@pytest.mark.parametrize(("outputs", "problem"), [
    (np.full((2, 7), 1 / 7), ""),
    (np.full((2, 7), np.nan), "NaN or infinite"),
    (np.full((2, 7), np.inf), "NaN or infinite"),
    (np.full((2, 7), 3.0), "not in [0, 1]"),
    (np.full((2, 7), 0.1), "sums to 0.7"),
    (np.full((2, 6), 1 / 6), "shape"),
])
def test_probability_problems(outputs, problem):
    found = probability_problem(outputs, 2)
    assert (problem in found) if problem else found == ""


def test_the_probe_is_one_small_deterministic_batch():
    faces = probe_faces()
    assert faces.shape == (2, 48, 48, 1) and faces.dtype == np.float32
    assert (faces[0] == 128).all() and faces[1].std() > 50
    np.testing.assert_array_equal(faces, probe_faces())


def test_evaluate_run_refuses_a_nan_model_before_reading_data(models, tmp_path):
    from fer.evaluate import evaluate_run

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(models["nan"], run / "model.keras")
    with pytest.raises(ModelError, match=NAN_MESSAGE.replace("(", r"\(").replace(")", r"\)")):
        evaluate_run(run)  # no config.json: the model is refused before the dataset is looked for


# ---- damaged files and paths that are not regular files ----------------------------------------

@pytest.mark.parametrize("kind", ["truncated", "empty", "corrupt", "other_zip"])
def test_damaged_files_are_reported_as_damaged(models, tmp_path, kind):
    path = damaged_copy(models, tmp_path, kind)
    with pytest.raises(ModelError, match="is damaged") as info:
        Predictor.load(path)
    assert "File not found" not in str(info.value) and "retrain" in str(info.value)
    with pytest.raises(ModelError, match="is damaged"):
        Predictor.load(tmp_path)  # the run folder that holds it


def test_a_truncated_file_says_incomplete_and_an_empty_one_says_empty(models, tmp_path):
    with pytest.raises(ModelError, match="incomplete"):
        Predictor.load(damaged_copy(models, tmp_path, "truncated"))
    with pytest.raises(ModelError, match="empty"):
        Predictor.load(damaged_copy(models, tmp_path, "empty"))


def test_a_missing_file_is_not_called_damaged(tmp_path):
    with pytest.raises(ModelError, match="no model at") as info:
        Predictor.load(tmp_path / "model.keras")
    assert "damaged" not in str(info.value)


@pytest.mark.timeout(20)
def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: it must never be opened."""
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(ModelError, match="not a regular file"):
        Predictor.load(fifo)
    with pytest.raises(ModelError, match="not a regular file"):
        Predictor.load(tmp_path)  # the run folder whose model.keras is the pipe
    assert time.monotonic() - start < 5


# ---- the evaluation CLI --------------------------------------------------------------------------

def model_file(models: dict[str, Path], folder: Path, kind: str) -> Path:
    if kind == "nan":
        return Path(shutil.copy(models["nan"], folder / "model.keras"))
    if kind == "fifo":
        os.mkfifo(folder / "model.keras")
        return folder / "model.keras"
    return damaged_copy(models, folder, kind)


@pytest.mark.timeout(200)
@pytest.mark.parametrize(("kind", "message"), [("nan", NAN_MESSAGE), ("truncated", "is damaged"),
                                               ("fifo", "not a regular file")])
def test_evaluate_cli_prints_the_refusal_and_exits_2(models, tmp_path, kind, message):
    path = model_file(models, tmp_path, kind)
    result = run_cli(["fer.evaluate", "--model", path], timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert f"error: {path}" in result.stderr or f"error: refused {path}" in result.stderr, output[-3000:]
    assert message in result.stderr and "Traceback" not in output


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_evaluate_cli_refuses_nan_weights_on_jax_too(models):
    """The probe goes through the JAX prediction path (one compiled call) as well."""
    result = subprocess.run([sys.executable, JAX_ONLY, "fer.evaluate", "--model", models["nan"]],
                            cwd=PROJECT_ROOT, env=worker_env(KERAS_BACKEND="jax"), capture_output=True,
                            text=True, timeout=240, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert NAN_MESSAGE in result.stderr and "Traceback" not in output


# ---- the Predict page ----------------------------------------------------------------------------

@pytest.mark.slow
def test_predict_page_shows_the_nan_refusal_as_an_error(models, tmp_path, monkeypatch):
    from app_driver import figures, no_exception, open_page, texts
    from fake_runs import fake_run

    from fer.run_folder import RunFolder
    from fer.runs import experiments_dir

    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    run = fake_run(experiments_dir(), "nan-weights", evaluation=False)
    shutil.copy(models["nan"], RunFolder(run).model_file)
    app = open_page("predict")
    no_exception(app)
    chosen = Path(app.selectbox(key="predict.model").value)
    assert chosen.resolve() == RunFolder(run).model_file.resolve()
    errors = texts(app.error)
    assert len(errors) == 1 and errors[0].startswith("Could not load the model nan-weights")
    assert NAN_MESSAGE in errors[0]
    assert not figures(app)
