"""The Train page: dataset check, per-architecture defaults, the CLI line and launching one run."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from app_driver import experiments, no_exception, open_page, page_links, texts

import fer.backends
import fer.runs
from fer.backends import BACKENDS
from fer.config import TrainConfig
from fer.run_folder import FINAL_STATES, RunFolder
from fer.runs import experiments_dir
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
    """Each TrainConfig field is on the form, starts at the architecture's default and has help."""
    app = open_page("train")
    no_exception(app)
    defaults = TrainConfig.for_architecture("mini_xception").to_dict()
    for name in FORM_FIELDS:
        element = widget(app, f"train.mini_xception.{name}")
        assert element.value == pytest.approx(defaults[name]), name
        assert element.help, f"{name} has no help text"


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

