"""The Train page: dataset check, per-architecture defaults, the CLI line and launching one run."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest
from app_driver import experiments, no_exception, open_page, page_links, texts
from fake_runs import fake_run
from synthetic import write_archive, write_fer_csv, write_image_folder

import fer.backends
import fer.runs
from fer.backends import BACKENDS
from fer.config import TrainConfig
from fer.run_folder import FINAL_STATES, RunFolder
from fer.runs import experiments_dir
from fer.train_form import CLONE_REQUEST
from fer.workers import effective_state, stop

FORM_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("architecture", "data")]


def widget(app, key: str):
    for kind in ("number_input", "checkbox", "selectbox", "text_input"):
        found = [w for w in app.get(kind) if w.key == key]
        if found:
            return found[0]
    raise KeyError(key)


def launch_button(app):
    return next(b for b in app.button if b.label == "Launch training")


@pytest.fixture
def backends_installed(monkeypatch):
    """Pretend exactly these backends are installed (the default is then the first of them)."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)

    def install(*names: str) -> None:
        monkeypatch.setattr(fer.backends, "installed_backends", lambda: list(names))
    return install


@pytest.fixture
def launched(monkeypatch) -> list[Path]:
    """Launch records the run folder instead of starting a worker, so nothing trains."""
    started: list[Path] = []
    monkeypatch.setattr(fer.workers, "launch", started.append)
    return started


def test_every_hyperparameter_has_a_widget_with_help_and_architecture_defaults():
    """Each TrainConfig field is on the form, starts at the architecture's default and has help
    (momentum once the optimizer is SGD)."""
    app = open_page("train")
    no_exception(app)
    defaults = TrainConfig.for_architecture("mini_xception").to_dict()
    for name in FORM_FIELDS:
        if name == "momentum":
            continue
        element = widget(app, f"train.mini_xception.{name}")
        assert element.value == pytest.approx(defaults[name]), name
        assert element.help, f"{name} has no help text"
    widget(app, "train.mini_xception.optimizer").set_value("sgd").run()
    momentum = widget(app, "train.mini_xception.momentum")
    assert momentum.value == pytest.approx(defaults["momentum"]) and momentum.help


def test_switching_architecture_loads_its_defaults():
    """vgg_fer trains with SGD at lr 0.01: its widgets show that, not mini-Xception's values."""
    app = open_page("train")
    app.selectbox(key="train.architecture").set_value("vgg_fer").run()
    assert widget(app, "train.vgg_fer.optimizer").value == "sgd"
    assert widget(app, "train.vgg_fer.learning_rate").value == pytest.approx(0.01)
    assert any("Khaireddin" in text for text in texts(app.markdown))
    assert texts(app.code) == ["python -m fer.train --architecture vgg_fer"]


def test_a_seed_preset_shows_its_notebooks_recipe_and_where_it_departs_from_it():
    """Notebook 002's preset: its own plateau schedule in the widgets, its departures in a caption."""
    app = open_page("train")
    app.selectbox(key="train.architecture").set_value("seed_cnn_c").run()
    no_exception(app)
    assert widget(app, "train.seed_cnn_c.plateau_factor").value == pytest.approx(0.1)
    assert widget(app, "train.seed_cnn_c.plateau_min_lr").value == pytest.approx(1e-5)
    assert widget(app, "train.seed_cnn_c.epochs").value == 15
    assert any("4,478,727 parameters" in text for text in texts(app.markdown))
    assert any(text.startswith("**Differs from its source:**") and "PublicTest" in text
               for text in texts(app.caption))
    assert texts(app.code) == ["python -m fer.train --architecture seed_cnn_c"]


def test_cli_command_spells_out_only_changed_values():
    """The command line repeats what differs from the architecture's defaults, and nothing else."""
    app = open_page("train")
    widget(app, "train.mini_xception.epochs").set_value(3).run()
    widget(app, "train.mini_xception.augment").set_value(False).run()
    app.text_input(key="train.name").set_value("quick-try").run()
    assert texts(app.code) == [
        "python -m fer.train --architecture mini_xception --epochs 3 --no-augment --name quick-try"]


def test_hardware_settings_reach_the_command_line_and_the_created_run(tiny_data, backends_installed,
                                                                      launched):
    """Backend, devices and determinism sit with mixed precision and end up in config.json."""
    backends_installed(*BACKENDS)
    app = open_page("train")
    assert widget(app, "train.mini_xception.backend").options == list(BACKENDS)
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    for name, value in (("backend", "jax"), ("devices", 2), ("batch_size", 8), ("deterministic", False)):
        widget(app, f"train.mini_xception.{name}").set_value(value).run()
    assert texts(app.code)[0].endswith("--batch-size 8 --backend jax --devices 2 --no-deterministic")
    launch_button(app).click().run()
    no_exception(app)
    assert not app.error
    (run_dir,) = launched
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["backend"], config["devices"], config["deterministic"]) == ("jax", 2, False)


def test_devices_that_do_not_divide_the_batch_size_are_refused_naming_both(tiny_data, launched):
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    widget(app, "train.mini_xception.batch_size").set_value(64).run()
    widget(app, "train.mini_xception.devices").set_value(3).run()
    launch_button(app).click().run()
    no_exception(app)
    assert "batch_size=64 must be a multiple of devices=3" in app.error[0].value
    assert launched == [] and experiments(experiments_dir()) == []


def test_backend_that_is_not_installed_cannot_be_launched_and_says_how_to_install(backends_installed):
    backends_installed("tensorflow")
    app = open_page("train")
    assert not app.error and not launch_button(app).disabled
    backend = widget(app, "train.mini_xception.backend")
    assert backend.value == "tensorflow"
    assert backend.format_func("jax") == "jax (not installed)"
    backend.set_value("jax").run()
    no_exception(app)
    assert "jax is not installed here: `pip install -r requirements-jax.txt`" in app.error[0].value
    assert launch_button(app).disabled


def test_check_dataset_shows_class_counts_per_split(tiny_data):
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    next(b for b in app.button if b.label == "Check dataset").click().run()
    no_exception(app)
    assert not app.error
    counts = app.dataframe[0].value
    assert list(counts.loc["happy"]) == [4, 1, 1]
    assert list(counts.loc["total"]) == [28, 7, 7]


def test_check_dataset_reports_a_missing_folder_as_an_error(tmp_path):
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tmp_path / "nowhere")).run()
    next(b for b in app.button if b.label == "Check dataset").click().run()
    no_exception(app)
    assert "does not exist" in app.error[0].value


def test_invalid_run_name_is_refused_with_a_message(tiny_data):
    """A name that could escape the experiments folder creates nothing and says why."""
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    app.text_input(key="train.name").set_value("../escape").run()
    launch_button(app).click().run()
    no_exception(app)
    assert "invalid run id" in app.error[0].value
    assert experiments(experiments_dir()) == []
    assert not launch_button(app).disabled  # nothing was launched: the form can be fixed and retried


def test_missing_dataset_is_refused_before_a_run_is_created(tmp_path):
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tmp_path / "nowhere")).run()
    launch_button(app).click().run()
    assert "does not exist" in app.error[0].value
    assert experiments(experiments_dir()) == []


@pytest.mark.slow
def test_launch_creates_one_run_on_double_click(tiny_data):
    """A second click of the same submission starts nothing; the one run really trains."""
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    for name, value in (("epochs", 1), ("batch_size", 8), ("augment", False)):
        widget(app, f"train.mini_xception.{name}").set_value(value).run()
    launch_button(app).click().run()
    no_exception(app)
    runs = experiments(experiments_dir())
    assert len(runs) == 1
    run_dir = experiments_dir() / runs[0]
    try:
        # The same submission again, as a second click that reaches the server would be.
        button = launch_button(app)
        assert button.disabled
        button._value = True  # bypass AppTest's "a browser cannot click a disabled button"
        app.run()
        assert experiments(experiments_dir()) == runs
        assert ("Watch it on the Runs page", "runs") in [(label, Path(page).stem) for label, page in
                                                         page_links(app)]
        assert any(runs[0] in text for text in texts(app.success))
        # Changing a setting makes a new submission: the button is ready again.
        widget(app, "train.mini_xception.seed").set_value(7).run()
        assert not launch_button(app).disabled

        deadline = time.monotonic() + 120
        while effective_state(run_dir) not in FINAL_STATES and time.monotonic() < deadline:
            time.sleep(1)
        state = effective_state(run_dir)
        log = (run_dir / "train.log").read_text(errors="replace")[-2000:]
        assert state in ("running", "finished"), (
            f"{state}: {RunFolder(run_dir).read_status().get('error')}\n{log}")
        if state == "finished":
            assert (run_dir / "model.keras").is_file()
            assert (run_dir / "eval" / "metrics.json").is_file()
    finally:
        stop(run_dir, wait=10)



# ---- the form kept for the session, presets, launched notice, conditional settings, clone ----------

def clone_button(app, run_id: str):
    return next(b for b in app.button if b.key == f"clone.{run_id}")


def test_switching_architecture_keeps_the_users_values_and_names_the_ones_it_replaces():
    """The subset size and seed the user typed survive; epochs, which VGG-FER prescribes, changes and
    the page says so."""
    app = open_page("train")
    for name, value in (("epochs", 30), ("max_train_samples", 2000), ("seed", 7)):
        widget(app, f"train.mini_xception.{name}").set_value(value).run()
    app.selectbox(key="train.architecture").set_value("vgg_fer").run()
    no_exception(app)
    assert widget(app, "train.vgg_fer.epochs").value == 300
    assert widget(app, "train.vgg_fer.max_train_samples").value == 2000
    assert widget(app, "train.vgg_fer.seed").value == 7
    assert widget(app, "train.vgg_fer.optimizer").value == "sgd"  # untouched: the architecture's own
    assert texts(app.info) == ["VGG-FER (Khaireddin & Chen) sets its own values for settings you had "
                               "changed: epochs 30 → 300."]
    assert texts(app.code) == ["python -m fer.train --architecture vgg_fer --max-train-samples 2000 --seed 7"]
    app.selectbox(key="train.architecture").set_value("mini_xception").run()
    assert widget(app, "train.mini_xception.max_train_samples").value == 2000
    assert widget(app, "train.mini_xception.epochs").value == 75  # no longer the user's own value
    assert not app.info  # nothing the user set was replaced this time


def test_the_form_is_kept_when_leaving_the_page_and_coming_back(tiny_data):
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    app.selectbox(key="train.architecture").set_value("vgg_fer").run()
    widget(app, "train.vgg_fer.epochs").set_value(12).run()
    widget(app, "train.vgg_fer.augment").set_value(False).run()
    app.text_input(key="train.name").set_value("try-1").run()
    command = texts(app.code)
    app.switch_page("app_pages/runs.py").run()
    app.switch_page("app_pages/train.py").run()
    no_exception(app)
    assert app.text_input(key="train.data").value == str(tiny_data)
    assert app.selectbox(key="train.architecture").value == "vgg_fer"
    assert widget(app, "train.vgg_fer.epochs").value == 12
    assert widget(app, "train.vgg_fer.augment").value is False
    assert app.text_input(key="train.name").value == "try-1"
    assert texts(app.code) == command


def test_launched_notice_only_for_a_run_that_exists_and_launch_is_ready_again(tiny_data, launched):
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    launch_button(app).click().run()
    (run_dir,) = launched
    assert any(run_dir.name in text for text in texts(app.success))
    assert launch_button(app).disabled  # one launch per submission
    app.switch_page("app_pages/runs.py").run()
    app.switch_page("app_pages/train.py").run()
    assert any(run_dir.name in text for text in texts(app.success))  # the run still exists
    assert not launch_button(app).disabled
    launch_button(app).click().run()
    assert len(launched) == 2 and launch_button(app).disabled
    for path in launched:
        shutil.rmtree(path)
    app.run()
    no_exception(app)
    assert not any("Launched run" in text for text in texts(app.success))
    assert not launch_button(app).disabled


def test_momentum_shows_only_for_sgd_and_keeps_its_value():
    app = open_page("train")
    keys = [w.key for w in app.number_input]
    assert "train.mini_xception.momentum" not in keys
    widget(app, "train.mini_xception.optimizer").set_value("sgd").run()
    widget(app, "train.mini_xception.momentum").set_value(0.8).run()
    widget(app, "train.mini_xception.optimizer").set_value("adam").run()
    assert "train.mini_xception.momentum" not in [w.key for w in app.number_input]
    widget(app, "train.mini_xception.optimizer").set_value("sgd").run()
    assert widget(app, "train.mini_xception.momentum").value == pytest.approx(0.8)


def test_validation_fraction_shows_only_when_the_data_has_no_public_test(tiny_data, tmp_path):
    key = "train.mini_xception.validation_split"
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    assert key not in [w.key for w in app.number_input]
    assert any("PublicTest split" in text for text in texts(app.caption))
    plain = write_image_folder(tmp_path / "plain", train=4, test=1, kaggle=False)
    app.text_input(key="train.data").set_value(str(plain)).run()
    no_exception(app)
    assert widget(app, key).value == pytest.approx(0.1)
    csv = write_fer_csv(tmp_path / "fer2013.csv")
    app.text_input(key="train.data").set_value(str(csv)).run()
    assert key not in [w.key for w in app.number_input]


def test_validation_fraction_is_shown_while_it_cannot_be_told(tiny_data, tmp_path, monkeypatch):
    """An archive that was never unpacked (unpacking takes seconds) or a missing folder: shown."""
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))
    archive = write_archive(tiny_data, tmp_path / "fer2013_images.tar.gz")
    app = open_page("train")
    for location in (archive, tmp_path / "nowhere"):
        app.text_input(key="train.data").set_value(str(location)).run()
        no_exception(app)
        assert widget(app, "train.mini_xception.validation_split").value == pytest.approx(0.1)
    app.text_input(key="train.data").set_value(str(archive)).run()
    next(b for b in app.button if b.label == "Check dataset").click().run()  # unpacks it
    app.run()
    assert "train.mini_xception.validation_split" not in [w.key for w in app.number_input]


def test_clone_settings_from_the_runs_page_fills_the_train_form(tiny_data):
    root = experiments_dir()
    run_dir = fake_run(root, "source-run")
    config = {**TrainConfig.for_architecture("vgg_fer").to_dict(), "data": str(tiny_data), "epochs": 12,
              "max_train_samples": 500, "learning_rate": 0.02}
    (run_dir / "config.json").write_text(json.dumps(config))
    app = open_page("train")
    widget(app, "train.mini_xception.seed").set_value(9).run()  # replaced by the run's settings
    app.switch_page("app_pages/runs.py").run()
    app.query_params["run"] = "source-run"
    clone_button(app, "source-run").click().run()
    no_exception(app)
    assert app.title[0].value == "Train a model"
    assert texts(app.success) == ["Settings from run **source-run**."]
    assert app.selectbox(key="train.architecture").value == "vgg_fer"
    assert app.text_input(key="train.data").value == str(tiny_data)
    assert widget(app, "train.vgg_fer.epochs").value == 12
    assert widget(app, "train.vgg_fer.max_train_samples").value == 500
    assert widget(app, "train.vgg_fer.learning_rate").value == pytest.approx(0.02)
    assert widget(app, "train.vgg_fer.seed").value == 42
    assert texts(app.code) == ["python -m fer.train --architecture vgg_fer --data " + str(tiny_data)
                               + " --epochs 12 --learning-rate 0.02 --max-train-samples 500"]


def test_clone_reports_what_the_form_cannot_show_and_keeps_the_rest():
    root = experiments_dir()
    run_dir = fake_run(root, "odd-run")
    config = {**TrainConfig.for_architecture("mini_xception").to_dict(), "architecture": "retired_net",
              "epochs": 20, "dropout": 0.97, "batch_size": -3, "colour": "red"}
    (run_dir / "config.json").write_text(json.dumps(config))
    app = open_page("train")
    app.session_state[CLONE_REQUEST] = "odd-run"
    app.run()
    no_exception(app)
    (warning,) = texts(app.warning)
    assert warning.startswith("Settings from run **odd-run**. These could not be taken as they were:")
    for part in ("architecture 'retired\\_net' is not available here; kept mini-Xception",
                 "dropout=0.97 is outside what the form can show (0 to 0.95); kept 0",
                 "batch\\_size=-3 is out of range", "colour is not a setting here; ignored"):
        assert part in warning, part
    assert widget(app, "train.mini_xception.epochs").value == 20
    assert widget(app, "train.mini_xception.batch_size").value == 64


def test_clone_of_a_deleted_run_says_so_and_changes_nothing():
    app = open_page("train")
    widget(app, "train.mini_xception.epochs").set_value(9).run()
    app.session_state[CLONE_REQUEST] = "gone-run"
    app.run()
    no_exception(app)
    assert "Cannot clone the settings of run **gone-run**" in app.error[0].value
    assert "no longer exists" in app.error[0].value
    assert widget(app, "train.mini_xception.epochs").value == 9


def test_clone_settings_of_a_sweeps_best_trial():
    pytest.importorskip("optuna", reason="sweeps need optuna")
    from bench.fake_runs import fake_sweep

    told = iter((0.5, 0.6))
    fake_sweep(experiments_dir(), "lr", 2, value=lambda params: next(told))
    app = open_page("sweep", {"study": "lr"})
    next(b for b in app.button if b.key == "sweep.clone_best").click().run()
    no_exception(app)
    assert texts(app.success) == ["Settings from run **lr-t001**."]
    assert widget(app, "train.mini_xception.epochs").value == 5  # the trial's run: 5 epochs, batch 8
    assert widget(app, "train.mini_xception.batch_size").value == 8


def test_a_preset_sets_its_values_and_lists_what_it_changed():
    """The quick trial on top of VGG-FER with 30 epochs typed: mini-Xception, its subset and epochs,
    and a notice naming each change; the seed the user typed stays."""
    app = open_page("train")
    app.selectbox(key="train.architecture").set_value("vgg_fer").run()
    widget(app, "train.vgg_fer.epochs").set_value(30).run()
    widget(app, "train.vgg_fer.seed").set_value(3).run()
    next(b for b in app.button if b.key == "train.preset.quick_trial").click().run()
    no_exception(app)
    preset = TrainConfig.for_preset("quick_trial", seed=3).to_dict()
    assert app.selectbox(key="train.architecture").value == preset["architecture"] == "mini_xception"
    for name in FORM_FIELDS:
        if name != "momentum":
            assert widget(app, f"train.mini_xception.{name}").value == pytest.approx(preset[name]), name
    assert texts(app.info) == ["Preset quick trial: architecture VGG-FER (Khaireddin & Chen) → "
                               "mini-Xception, epochs 30 → 6, max training images 0 → 15000."]


@pytest.mark.parametrize("flags, says", [
    ("avx2 avx512_bf16", "bfloat16 convolutions on this CPU (avx512_bf16)"),
    ("avx2 fma", "the run trains in float32"),
])
def test_ticking_mixed_precision_says_what_this_cpu_computes_in(monkeypatch, backends_installed, flags, says):
    import fer.devices

    backends_installed("tensorflow")
    monkeypatch.setattr(fer.devices, "cpu_bfloat16",
                        lambda: next((f for f in fer.devices.CPU_BFLOAT16_FLAGS if f in flags.split()), None))
    monkeypatch.setattr("fer.queue.gpu_count", lambda: 0)
    app = open_page("train")
    assert not any("Mixed precision here" in text for text in texts(app.caption))
    widget(app, "train.mini_xception.mixed_precision").check().run()
    no_exception(app)
    assert any(text.startswith("Mixed precision here:") and says in text for text in texts(app.caption))
