"""Model export (fer.export): every format exported from a tiny model and verified with its own
runtime, the command line's refusals, the background job's state, and the Export section of the
Runs and Evaluate pages."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from app_driver import no_exception, open_page, texts
from fake_runs import fake_run
from helpers import run_cli, wait_until, worker_env

from fer import CLASSES, IMAGE_SIZE, PROJECT_ROOT
from fer.export import (
    ACTIVE,
    FORMATS,
    RUNNERS,
    SYNTHETIC_NOTE,
    VERIFY_TOLERANCE,
    WRITERS,
    ExportError,
    export_folder,
    export_one,
    float32_model,
    job_state,
    main,
    model_stamp,
    parse_formats,
    resolve_run,
    run_job,
    start_export,
    stop_export,
    synthetic_faces,
    verification_faces,
)
from fer.run_folder import ExportFolder, RunFolder
from fer.runs import experiments_dir

CLI_TIMEOUT = 600  # TensorFlow's converters take a while on a busy 2-core machine
# Verify on synthetic faces, whatever the machine has (data/ of the project included).
NO_DATA = {"FER_DATA": "/nonexistent/fer2013"}


@pytest.fixture(autouse=True)
def no_shipped_model(tmp_path, monkeypatch):
    """The pages offer only this test's runs, whether or not a default model ships."""
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")


def save_tiny_model(path: Path) -> Path:
    """A small untrained CNN from raw 0-255 pixels to 7 probabilities, saved as .keras."""
    import keras

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax")(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(path)
    return path


def keras_probabilities(model_file: Path, faces: np.ndarray) -> np.ndarray:
    import keras

    model = keras.saving.load_model(model_file, compile=False)
    return np.asarray(model(faces.astype(np.float32)[..., None], training=False))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(model folder, --out folder, the CLI's JSON) for one `--format all` export of a tiny model."""
    model_dir = tmp_path_factory.mktemp("tiny-model")
    save_tiny_model(model_dir / "model.keras")
    out = tmp_path_factory.mktemp("exported")
    result = run_cli(["fer.export", "--run", model_dir, "--format", "all", "--out", out, "--faces", "40"],
                     timeout=CLI_TIMEOUT, **NO_DATA)
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, out, json.loads(result.stdout)


# ---- each format, exported and verified -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_is_exported_and_verified_on_synthetic_faces(exported, fmt):
    _, out, summary = exported
    result = summary["results"][fmt]
    assert result.get("error") is None
    assert result["verified"] is True and 0 <= result["max_abs_diff"] <= VERIFY_TOLERANCE
    assert result["agreement"] == 1.0 and result["faces"] == 40
    assert SYNTHETIC_NOTE in result["faces_source"]
    assert result["bytes"] == (out / FORMATS[fmt].download).stat().st_size > 0


@pytest.mark.slow
def test_onnx_file_gives_the_keras_models_probabilities_in_a_fresh_session(exported):
    import onnxruntime

    model_dir, out, _ = exported
    faces = synthetic_faces(5)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx = session.run(None, {session.get_inputs()[0].name: faces.astype(np.float32)[..., None]})[0]
    np.testing.assert_allclose(onnx, keras_probabilities(model_dir / "model.keras", faces), atol=1e-5)


@pytest.mark.slow
def test_tflite_file_runs_in_litert_with_any_batch_size(exported):
    from ai_edge_litert.interpreter import Interpreter

    model_dir, out, _ = exported
    faces = synthetic_faces(3)
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], [3, IMAGE_SIZE, IMAGE_SIZE, 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], faces.astype(np.float32)[..., None])
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(target["index"]),
                               keras_probabilities(model_dir / "model.keras", faces), atol=1e-5)


@pytest.mark.slow
def test_savedmodel_is_offered_as_one_zip_of_its_folder(exported):
    _, out, _ = exported
    with zipfile.ZipFile(out / "saved_model.zip") as archive:
        names = archive.namelist()
    assert "saved_model/saved_model.pb" in names
    assert (out / "saved_model" / "saved_model.pb").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.slow
def test_a_model_saved_under_jax_exports_under_tensorflow(tmp_path):
    model_file = tmp_path / "jax-model" / "model.keras"
    script = ("import sys; from pathlib import Path; sys.path.insert(0, 'tests'); "
              "from test_export import save_tiny_model; save_tiny_model(Path(sys.argv[1]))")
    built = subprocess.run([sys.executable, "-c", script, str(model_file)], cwd=PROJECT_ROOT,
                           env=worker_env(KERAS_BACKEND="jax"), capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    result = run_cli(["fer.export", "--run", model_file.parent, "--format", "tflite",
                      "--out", tmp_path / "out", "--faces", "16"], timeout=CLI_TIMEOUT, **NO_DATA)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["results"]["tflite"]["verified"] is True


def test_a_mixed_precision_model_is_exported_in_float32(tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        save_tiny_model(tmp_path / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    plain = float32_model(model)
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    faces = synthetic_faces(4).astype(np.float32)[..., None]
    np.testing.assert_allclose(np.asarray(plain(faces)), np.asarray(model(faces)), atol=1e-3)
    assert float32_model(plain) is plain


def fake_format(monkeypatch, write, shift: float = 0.0) -> None:
    """The ONNX format with a stand-in converter and a runtime that answers 1/7 + ``shift``."""
    monkeypatch.setitem(WRITERS, "onnx", write)
    monkeypatch.setitem(RUNNERS, "onnx", lambda path: lambda batch: np.full((len(batch), 7), 1 / 7 + shift))


def test_an_export_whose_predictions_differ_is_not_verified(tmp_path, monkeypatch):
    fake_format(monkeypatch, lambda model, path: path.write_bytes(b"onnx"), shift=0.01)
    faces, reference = np.zeros((3, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32), np.full((3, 7), 1 / 7)
    result = export_one(None, "onnx", tmp_path, faces, reference, "3 faces", "1:1")
    assert result["verified"] is False and result["max_abs_diff"] == pytest.approx(0.01)
    assert "differ from the Keras model's by up to 0.01" in result["error"]
    assert (tmp_path / "model.onnx").read_bytes() == b"onnx"


def test_a_converter_failure_is_recorded_and_leaves_no_file(tmp_path, monkeypatch):
    def explode(model, path):
        path.write_bytes(b"half")
        raise RuntimeError("converter exploded\nwith details")

    fake_format(monkeypatch, explode)
    (tmp_path / "model.onnx").write_bytes(b"the previous export")
    faces, reference = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32), np.full((2, 7), 1 / 7)
    result = export_one(None, "onnx", tmp_path, faces, reference, "2 faces", "1:1")
    assert result["error"] == "RuntimeError: converter exploded" and result["verified"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_bytes() == b"the previous export"


# ---- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--run", "no-such-run"], "neither a folder nor a run id"),
    (["--run", "default", "--format", "pdf"], "--format 'pdf' is unknown"),
    (["--run", "default", "--faces", "-3"], "--faces -3 is negative"),
])
def test_bad_arguments_exit_2_with_a_sentence(args, message, capsys):
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and "Traceback" not in error


def test_a_folder_without_a_model_is_refused(tmp_path, capsys):
    assert main(["--run", str(tmp_path), "--format", "onnx"]) == 2
    assert "no model at" in capsys.readouterr().err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    run_dir = fake_run(experiments_dir(), "fake", evaluation=False)
    (tmp_path / "taken").write_text("x")
    assert main(["--run", "fake", "--format", "keras", "--out", str(tmp_path / "taken")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert not ExportFolder.of_run(run_dir).path.exists()


def test_truncated_model_is_refused_before_anything_is_exported(tmp_path):
    run_dir = fake_run(experiments_dir(), "cut", evaluation=False)
    RunFolder(run_dir).model_file.write_bytes(b"PK\x03\x04 cut short")
    result = run_cli(["fer.export", "--run", "cut", "--format", "onnx"], timeout=60)
    assert result.returncode == 2
    assert "damaged" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ExportError, match="damaged"):
        start_export(run_dir, ["onnx"])


@pytest.mark.slow
def test_a_zip_that_is_not_a_keras_model_fails_the_job_with_a_clear_message(tmp_path):
    run_dir = fake_run(experiments_dir(), "notkeras", evaluation=False)
    with zipfile.ZipFile(RunFolder(run_dir).model_file, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    result = run_cli(["fer.export", "--run", "notkeras", "--format", "keras"], timeout=CLI_TIMEOUT, **NO_DATA)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    state, job = job_state(ExportFolder.of_run(run_dir))
    assert state == "failed" and "model.keras" in job["error"]


def test_format_names():
    assert parse_formats("all") == ["keras", "savedmodel", "tflite", "onnx"]
    assert parse_formats("onnx") == ["onnx"]
    with pytest.raises(ExportError, match="unknown"):
        parse_formats("tf")


def test_run_ids_and_default_resolve_to_model_folders(monkeypatch, tmp_path):
    run_dir = fake_run(experiments_dir(), "named", evaluation=False)
    assert resolve_run("named") == run_dir
    assert resolve_run(str(run_dir)) == run_dir
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "shipped")
    assert resolve_run("default") == tmp_path / "shipped"


def test_the_shipped_models_exports_go_to_the_cache_not_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    assert export_folder(tmp_path / "shipped").path == tmp_path / "cache" / "exports" / "default_model"
    run_dir = fake_run(experiments_dir(), "mine", evaluation=False)
    assert export_folder(run_dir).path == run_dir / "export"


# ---- faces the exports are checked on ---------------------------------------------------------


def test_without_a_dataset_exports_are_checked_on_synthetic_faces_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA", "")
    monkeypatch.setattr("fer.data.DATA_DIR", tmp_path / "no-data")
    faces, source = verification_faces(tmp_path, 12)
    assert faces.shape == (12, IMAGE_SIZE, IMAGE_SIZE) and faces.dtype == np.uint8
    assert source == f"12 {SYNTHETIC_NOTE}"
    assert faces.std() > 10 and len({face.tobytes() for face in faces}) == 12


def test_with_a_dataset_exports_are_checked_on_its_test_faces(tiny_data, monkeypatch):
    monkeypatch.setenv("FER_DATA", str(tiny_data))
    faces, source = verification_faces(Path("/nonexistent-model-folder"), 100)
    assert len(faces) == len(CLASSES)  # tiny_data has one PrivateTest face per class
    assert source.startswith(f"{len(CLASSES)} real test faces") and "PrivateTest" in source


# ---- the background job -----------------------------------------------------------------------


def test_a_running_job_whose_process_is_gone_reads_failed(tmp_path):
    folder = ExportFolder(tmp_path / "export")
    folder.write_job(state="running", pid=None, started=time.time())
    state, job = job_state(folder)
    assert state == "failed" and "ended unexpectedly" in job["error"]


def test_a_job_just_queued_reads_queued_until_its_process_takes_the_lock(tmp_path):
    folder = ExportFolder(tmp_path / "export")
    folder.write_job(state="queued", queued=time.time(), pid=None)
    assert job_state(folder)[0] == "queued"


def test_a_page_export_is_refused_with_a_message_while_a_command_line_export_holds_the_lock(tmp_path):
    """An export from the command line holds the folder's lock before its job file says so; the
    page's export used to start anyway and be dropped without a word."""
    from fake_runs import LOCK_HOLDER

    run_dir = fake_run(experiments_dir(), "busy", evaluation=False)
    save_tiny_model(RunFolder(run_dir).model_file)
    folder = export_folder(run_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder.lock)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExportError, match="already running"):
            start_export(run_dir, ["keras"])
        assert folder.read_job().get("state") is None  # nothing was queued
    finally:
        holder.kill()
        holder.wait()


def test_a_damaged_job_file_reads_as_no_export(tmp_path):
    folder = ExportFolder(tmp_path / "export")
    folder.path.mkdir()
    folder.job_file.write_text('{"state": "exploded", "results": {"pdf": {}}}')
    assert job_state(folder) == ("none", {})


# ---- the Export section of the pages ----------------------------------------------------------


def fake_export(run_dir: Path, fmt: str = "onnx", **changes) -> Path:
    """An export folder as a finished export of ``fmt`` leaves it (the file's bytes are fake)."""
    folder = export_folder(run_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    (folder.path / FORMATS[fmt].download).write_bytes(b"x" * 2000)
    result = {"bytes": 2000, "max_abs_diff": 1.5e-06, "agreement": 1.0, "faces": 1000,
              "faces_source": "1000 real test faces: PrivateTest (test/PrivateTest_*)",
              "runtime": FORMATS[fmt].runtime, "export_s": 4.2, "verify_s": 1.0, "verified": True,
              "model_stamp": model_stamp(RunFolder(run_dir).model_file), **changes}
    folder.write_job(state="finished", pid=None, formats=[fmt], ended=time.time())
    folder.write_result(fmt, result)
    return folder.path


def export_table(app):
    """The table of exports and their checks."""
    return next(frame.value for frame in app.dataframe if "max abs difference" in frame.value.columns)


def export_downloads(app) -> list[str]:
    return [d.label for d in app.get("download_button") if d.key.startswith("export.download.")]


@pytest.mark.parametrize("page", ["runs", "evaluate"])
def test_finished_exports_are_offered_with_their_size_and_difference(page):
    run_dir = fake_run(experiments_dir(), "done")
    fake_export(run_dir, "onnx")
    app = open_page(page)
    no_exception(app)
    assert export_downloads(app) == ["ONNX (.onnx) · 2.0 kB"]
    assert export_table(app).to_dict("records") == [{
        "format": "ONNX (.onnx)", "size": "2.0 kB", "max abs difference": "1.5e-06",
        "same top class": "100.0%", "loaded back with": "ONNX Runtime", "export time": "4 s",
        "verified": "yes"}]
    assert any("real test faces: PrivateTest" in text for text in texts(app.caption))
    assert app.selectbox(key="export.format.done").options == [
        "All four formats", "Keras (.keras)", "TensorFlow SavedModel (.zip)", "LiteRT (.tflite)",
        "ONNX (.onnx)"]


def test_an_export_of_an_older_model_is_flagged(tmp_path):
    run_dir = fake_run(experiments_dir(), "changed", evaluation=False)
    fake_export(run_dir, "tflite", model_stamp="1:2")
    app = open_page("runs")
    assert export_downloads(app) == ["LiteRT (.tflite) · 2.0 kB"]
    assert any("model changed after this export" in text for text in texts(app.warning))


def test_a_failed_export_shows_why_and_its_log():
    run_dir = fake_run(experiments_dir(), "broken", evaluation=False)
    folder = export_folder(run_dir)
    folder.write_job(state="failed", error="exporting ONNX needs TensorFlow")
    folder.log_file.write_text("error: exporting ONNX needs TensorFlow\n")
    app = open_page("runs")
    no_exception(app)
    assert any("The export failed: exporting ONNX needs TensorFlow" in text for text in texts(app.error))
    app.toggle(key="export.log.broken").set_value(True).run()
    assert "needs TensorFlow" in app.code[0].value


def test_exporting_a_damaged_model_says_so_on_the_page():
    run_dir = fake_run(experiments_dir(), "damaged", evaluation=False)
    RunFolder(run_dir).model_file.write_bytes(b"")
    app = open_page("runs")
    app.button(key="export.start.damaged").click().run()
    no_exception(app)
    errors = texts(app.error)
    assert any(text.startswith("Could not start the export:") and "empty" in text for text in errors)
    assert not export_folder(run_dir).job_file.exists()


def test_signed_out_visitors_cannot_export(monkeypatch):
    fake_run(experiments_dir(), "locked", evaluation=False)
    monkeypatch.setattr("app_pages.export_view.actions_allowed", lambda: False)
    started = []
    monkeypatch.setattr("app_pages.export_view.start_export", lambda *args: started.append(args))
    app = open_page("runs")
    assert app.button(key="export.start.locked").disabled
    assert any(text.startswith("Sign in to export models") for text in texts(app.caption))
    app.button(key="export.start.locked")._value = True  # as a hand-made websocket message would
    app.run()
    no_exception(app)
    assert started == []


def test_no_export_section_while_a_run_trains_or_without_a_model():
    fake_run(experiments_dir(), "nomodel", model=False, evaluation=False)
    app = open_page("runs")
    assert not [b for b in app.button if b.key and b.key.startswith("export.start.")]


@pytest.mark.slow
def test_export_button_runs_the_export_in_the_background_and_offers_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA", "")
    run_dir = fake_run(experiments_dir(), "real", evaluation=False)
    save_tiny_model(RunFolder(run_dir).model_file)
    app = open_page("runs")
    app.selectbox(key="export.format.real").set_value("keras").run()
    app.button(key="export.start.real").click().run()
    no_exception(app)
    folder = export_folder(run_dir)
    wait_until(lambda: job_state(folder)[0] in ("finished", "failed"), CLI_TIMEOUT, "the export to end",
               poll=0.5, log=folder.log_file)
    assert job_state(folder)[0] == "finished", folder.log_file.read_text()[-3000:]
    app.run()
    no_exception(app)
    assert [label.split(" · ")[0] for label in export_downloads(app)] == ["Keras (.keras)"]
    assert export_table(app).loc[0, "same top class"] == "100.0%"


@pytest.mark.slow
def test_stop_ends_a_running_export_keeping_the_formats_already_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA", "")
    run_dir = fake_run(experiments_dir(), "stopme", evaluation=False)
    # A full mini-Xception: its conversions take seconds each, long enough to stop one midway.
    from fer.config import TrainConfig
    from fer.models import build_model

    build_model(TrainConfig(architecture="mini_xception")).save(RunFolder(run_dir).model_file)
    folder = export_folder(run_dir)
    start_export(run_dir, list(FORMATS))
    wait_until(lambda: "keras" in folder.read_job().get("results", {}) or job_state(folder)[0] not in ACTIVE,
               CLI_TIMEOUT, "the first format", poll=0.2, log=folder.log_file)
    assert job_state(folder)[0] == "running", folder.log_file.read_text()[-3000:]
    app = open_page("runs")
    no_exception(app)
    started = time.monotonic()
    app.button(key="export.stop.stopme").click().run()  # waits up to 5 s for the process to end
    no_exception(app)
    assert time.monotonic() - started < 10
    state, job = job_state(folder)
    assert state == "stopped" and job["ended"] >= job["started"] and job["phase"] is None, job
    assert "onnx" not in job["results"] and job["results"]["keras"]["verified"]  # ONNX comes last
    assert (folder.path / FORMATS["keras"].download).is_file()
    assert not list(folder.path.glob(".staging-*"))  # the format being converted left nothing
    assert "[fer] export stopped" in folder.log_file.read_text()
    assert any("export was stopped" in text for text in texts(app.info))
    assert not [b for b in app.button if b.key == "export.stop.stopme"]
    assert stop_export(run_dir) is False  # nothing left to stop
    # The next export starts.
    start_export(run_dir, ["keras"])
    wait_until(lambda: job_state(folder)[0] not in ACTIVE, CLI_TIMEOUT, "the next export", poll=0.2,
               log=folder.log_file)
    assert job_state(folder)[0] == "finished" and not list(folder.path.glob(".staging-*"))


def test_an_export_stopped_before_its_process_began_never_starts(tmp_path):
    model_dir = tmp_path / "model"
    folder = export_folder(model_dir)
    folder.path.mkdir(parents=True)
    folder.write_job(state="queued", queued=time.time(), pid=None, formats=["onnx"])
    assert stop_export(model_dir) is True  # no process holds the lock yet: only the request
    assert run_job(model_dir, ["onnx"]) == {"model": str(model_dir), "out": str(folder.path),
                                            "stopped": True, "results": {}}
    assert job_state(folder)[0] == "stopped"
