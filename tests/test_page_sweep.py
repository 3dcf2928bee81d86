"""The Sweeps page: creating a sweep from the form, the study view (trials, best trial, charts),
stopping, storage errors, sign-in, and the link from a trial's run on the Runs page.

Studies are built directly in the default SQLite storage with ask/tell and fake runs
(bench.fake_runs.fake_sweep), and start_workers is replaced by a recorder: nothing trains.
"""

from __future__ import annotations

import ast
import itertools
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from app_driver import APP, TIMEOUT, no_exception, open_page, texts
from streamlit.testing.v1 import AppTest

import fer.sweep
from bench.fake_runs import fake_sweep
from fer import PROJECT_ROOT
from fer.runs import experiments_dir
from fer.search_space import distributions
from fer.sweep import default_storage, list_sweeps, load_sweep, sweep_status

STORAGE_KEY = "sweep.storage"
SIGNED_IN = {"is_logged_in": True, "name": "Ada Lovelace", "email": "ada@example.com"}
SIGNED_OUT = {"email": "test@example.com"}  # AppTest's default user: no is_logged_in claim
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-cookie-secret",
        "client_id": "fer-lab", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}
# The pages that must open without Optuna (and the entry point that every page runs).
OPTUNA_FREE = ["streamlit_app.py", "app_pages/runs.py", "app_pages/train.py", "app_pages/evaluate.py",
               "app_pages/predict.py"]


@pytest.fixture
def no_dataset_here(monkeypatch, tmp_path):
    """No FER_DATA (CI sets it to the real dataset) and an empty data/ folder."""
    import fer.data

    monkeypatch.delenv("FER_DATA", raising=False)
    monkeypatch.setattr(fer.data, "DATA_DIR", tmp_path / "no-data")


@pytest.fixture
def started(monkeypatch) -> list[tuple]:
    """start_workers records its calls instead of starting worker processes."""
    calls: list[tuple] = []

    def record(name, storage, count=1, root=None):
        calls.append((name, storage, count))
        return list(range(4000, 4000 + count))

    monkeypatch.setattr(fer.sweep, "start_workers", record)
    return calls


def values(*told):
    """A fake_sweep ``value``: these accuracies in turn (None prunes the trial)."""
    sequence = iter(told)
    return lambda params: next(sequence)


def sweep(name: str = "lr", told=(0.5, 0.6, 0.55), planned: int = 10) -> list[Path]:
    return fake_sweep(experiments_dir(), name, len(told), value=values(*told), planned=planned)


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def click(app: AppTest, label: str) -> AppTest:
    return button(app, label).click().run()


def force_click(app: AppTest, label: str) -> AppTest:
    """Click ``label`` even if disabled, as a hand-made websocket message would (Streamlit drops it)."""
    button(app, label)._value = True
    return app.run()


def click_signed_out(app: AppTest, label: str) -> AppTest:
    """Click ``label``, drawn for a signed-in user, after the user signed out."""
    app.user = dict(SIGNED_IN)
    app.run()
    app.user = dict(SIGNED_OUT)
    return click(app, label)


def widget(app: AppTest, widget_key: str):
    """The widget with ``widget_key``, whatever its kind."""
    for kind in ("text_input", "number_input", "selectbox", "checkbox", "toggle", "multiselect"):
        try:
            return getattr(app, kind)(key=widget_key)
        except KeyError:
            continue
    raise KeyError(widget_key)


def form(app: AppTest, **settings) -> AppTest:
    """Set New sweep form widgets (``sweep.new.<key>``, dots written ``__``), one rerun each as in a
    browser: every change renews the form's submission token."""
    for name, value in settings.items():
        widget(app, "sweep.new." + name.replace("__", ".")).set_value(value)
        app.run()
    return app


def sweeps_here() -> list[str]:
    storage = default_storage()
    return list_sweeps(storage) if Path(storage.removeprefix("sqlite:///")).exists() else []


def errors(app: AppTest) -> str:
    """The error messages as they read (without markdown's escapes)."""
    return "\n".join(texts(app.error)).replace("\\", "")


# ---- no sweeps, creating one ------------------------------------------------------------------


def test_no_sweeps_shows_an_info_and_reading_creates_no_database():
    app = open_page("sweep")
    no_exception(app)
    assert any(text.startswith("No sweeps in") for text in texts(app.info))
    assert button(app, "Create sweep")
    assert not (experiments_dir() / "sweeps.db").exists()


def test_create_sweep_from_the_form_stores_it_and_starts_the_workers_asked_for(started, tiny_data):
    app = open_page("sweep")
    form(app, name="from-form", trials=5, data=str(tiny_data), workers=2, space__batch_size__search=True)
    click(app, "Create sweep")
    no_exception(app)
    assert sweeps_here() == ["from-form"]
    _, spec = load_sweep("from-form", default_storage())
    assert spec.trials == 5 and spec.sampler == "tpe" and spec.pruning
    assert spec.fixed == {"max_train_samples": 0, "epochs": 10, "data": str(tiny_data)}
    assert set(spec.space) == {"learning_rate", "dropout", "batch_size"}
    assert spec.space["learning_rate"] == {"low": 1e-4, "high": 1e-2, "log": True}
    assert started == [("from-form", default_storage(), 2)]
    assert any("Created sweep" in text and "started 2 workers" in text for text in texts(app.success))
    assert app.query_params["study"] == "from-form"
    assert app.selectbox(key="sweep.study").value == "from-form"
    # A second click on the same submission creates nothing more and says nothing wrong.
    assert button(app, "Create sweep").disabled
    assert not app.error


def test_a_bad_search_space_shows_every_problem_and_creates_nothing(started):
    app = open_page("sweep")
    form(app, workers=0, space__learning_rate__low=0.1, space__dropout__low=0.7,
         space__optimizer__search=True, space__optimizer__choices=[])
    click(app, "Create sweep")
    no_exception(app)
    shown = errors(app)
    assert "learning_rate: low (0.1) must be below high (0.01)" in shown
    assert "dropout: low (0.7) must be below high (0.6)" in shown
    assert "optimizer: choices must be a list of 1 to" in shown
    assert sweeps_here() == [] and started == []


def test_a_dataset_outside_the_allowed_folders_is_refused_before_anything_is_created(started):
    app = open_page("sweep")
    form(app, data="/etc")
    click(app, "Create sweep")
    no_exception(app)
    assert "outside the allowed folders" in errors(app)
    assert sweeps_here() == [] and started == []


def test_without_a_dataset_here_the_sweep_is_created_but_no_worker_starts(started, no_dataset_here):
    app = open_page("sweep")
    form(app, name="elsewhere")
    click(app, "Create sweep")
    no_exception(app)
    assert sweeps_here() == ["elsewhere"] and started == []
    assert any("started no worker here: no dataset given" in text for text in texts(app.warning))


def test_grid_sampler_shows_the_grid_size_and_that_trials_are_capped_at_it():
    app = open_page("sweep")
    form(app, sampler="grid", space__batch_size__search=True)
    captions = " ".join(texts(app.caption))
    # learning rate and dropout: 3 values each; batch size: 3 choices.
    assert "Grid of **27** points (3 values per range, every choice): 20 trials run" in captions
    form(app, trials=40)
    assert "Grid of **27** points (3 values per range, every choice): 27 trials run" in " ".join(
        texts(app.caption))


# ---- the study view ---------------------------------------------------------------------------


def test_study_view_shows_trials_the_best_trial_with_its_evaluate_link_and_charts():
    runs = sweep("lr", told=(0.5, 0.6, 0.55, None))
    app = open_page("sweep", {"study": "lr"})
    no_exception(app)
    assert app.selectbox(key="sweep.study").value == "lr"
    assert any("3 complete" in m.value and "1 pruned" in m.value for m in app.markdown)
    table = app.dataframe[0].value
    assert list(table.columns) == ["trial", "state", "val acc", "learning_rate", "dropout", "batch_size",
                                   "run", "host", "error"]
    assert list(table["trial"]) == [0, 1, 2, 3]
    assert list(table["state"]) == ["complete", "complete", "complete", "pruned"]
    assert table["val acc"].tolist()[:3] == pytest.approx([50.0, 60.0, 55.0])
    assert list(table["run"]) == [run.name for run in runs]
    assert [metric.value for metric in app.get("metric")] == ["60.0%"]
    links = [(link.value, link.proto.page, link.proto.query_string) for link in app.get("page_link")]
    assert ("Evaluate this run", "evaluate", "run=lr-t001") in links
    charts = app.get("plotly_chart")
    importances_caption = [text for text in texts(app.caption) if text.startswith("Parameter importances")]
    assert len(charts) == 3 or (len(charts) == 2 and importances_caption)
    assert any(text == "4 of 10 trials finished" for text in [p.proto.text for p in app.get("progress")])


def test_a_running_trial_shows_as_running_without_a_value():
    sweep("busy", told=(0.5,))
    study, spec = load_sweep("busy", default_storage())
    study.ask(distributions(spec.space)).set_user_attr("run", "busy-t001")
    app = open_page("sweep", {"study": "busy"})
    no_exception(app)
    assert any("1 running" in m.value and "1 complete" in m.value for m in app.markdown)
    table = app.dataframe[0].value
    assert list(table["state"]) == ["complete", "running"]
    assert table["val acc"].isna().tolist() == [False, True]


def test_the_command_for_other_machines_joins_the_sweep():
    sweep("joined", told=(0.5,))
    app = open_page("sweep", {"study": "joined"})
    command = next(code.value for code in app.code if "fer.sweep" in code.value)
    # The same command with --max-trials 0: the worker opens the sweep and ends without a trial.
    arguments = shlex.split(command)[1:] + ["--max-trials", "0"]
    result = subprocess.run([sys.executable, *arguments], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "this worker ran 0 trial(s)" in result.stdout


def test_importances_need_two_complete_trials_and_say_so():
    sweep("one", told=(0.5,))
    app = open_page("sweep", {"study": "one"})
    no_exception(app)
    assert len(app.get("plotly_chart")) == 2  # history and parallel coordinates
    assert "Parameter importances need at least 2 complete trials." in texts(app.caption)


def test_a_sweep_without_trials_has_no_charts_yet():
    sweep("empty", told=())
    app = open_page("sweep")
    no_exception(app)
    assert not app.get("plotly_chart")
    assert "The charts appear after the first complete trial." in texts(app.caption)


def test_an_unknown_study_in_the_address_is_a_warning_and_another_is_shown():
    sweep("real", told=(0.5,))
    app = open_page("sweep", {"study": "nope"})
    no_exception(app)
    assert any("There is no sweep 'nope'" in text for text in texts(app.warning))
    assert app.selectbox(key="sweep.study").value == "real"


def test_stop_sets_the_stopped_flag_after_a_confirmation():
    sweep("halt", told=(0.5,))
    app = open_page("sweep", {"study": "halt"})
    assert button(app, "Stop now").disabled  # not confirmed yet
    app.checkbox(key="sweep.confirm_stop.halt").check().run()
    click(app, "Stop now")
    no_exception(app)
    assert sweep_status("halt", default_storage())["stopped"] is True
    assert any(text.startswith("Stopping sweep halt") for text in texts(app.info))
    assert any("stopped" in m.value for m in app.markdown)


def test_start_a_worker_here_needs_a_dataset_here(started, tiny_data, monkeypatch, no_dataset_here):
    sweep("work", told=(0.5,))
    app = open_page("sweep", {"study": "work"})
    click(app, "Start a worker here")
    no_exception(app)
    assert started == []
    assert any("started no worker here: no dataset given" in text.lower() for text in texts(app.warning))
    monkeypatch.setenv("FER_DATA", str(tiny_data))
    click(app, "Start a worker here")
    assert started == [("work", default_storage(), 1)]
    assert any(text.startswith("Started 1 worker here") for text in texts(app.success))


@pytest.mark.parametrize("url", ["notadb://x", "postgresql://nobody@127.0.0.1:1/x", "not a url"])
def test_a_bad_storage_url_is_an_error_not_a_traceback(url):
    app = open_page("sweep")
    app.text_input(key=STORAGE_KEY).set_value(url).run()
    no_exception(app)
    assert "Cannot read the sweep storage" in errors(app)
    assert not [b for b in app.button if b.label == "Create sweep"]


def test_another_sqlite_storage_is_read_and_not_created_until_a_sweep_is(tmp_path, started):
    other = tmp_path / "elsewhere" / "other.db"
    other.parent.mkdir()  # Create makes the database, never the folders on its way
    app = open_page("sweep")
    app.text_input(key=STORAGE_KEY).set_value(f"sqlite:///{other}").run()
    assert any(str(other) in text for text in texts(app.info)) and not other.exists()
    form(app, name="there", workers=0)
    click(app, "Create sweep")
    no_exception(app)
    assert list_sweeps(f"sqlite:///{other}") == ["there"] and sweeps_here() == []


@pytest.mark.parametrize("case", ["another-programs-db", "empty-conf", "pysqlite-url", "missing-folders",
                                  "outside-the-roots"])
def test_a_storage_url_never_writes_where_it_should_not(tmp_path, started, case):
    """Looking at a storage creates nothing and changes nothing; Create makes a new database only in
    a folder that exists, inside the experiments or dataset folders, never over another file."""
    import sqlite3

    from fer.sweep import SweepError, check_sqlite_storage, sweep_status

    target = {"another-programs-db": tmp_path / "app.db", "empty-conf": tmp_path / "empty.conf",
              "pysqlite-url": tmp_path / "new.db", "missing-folders": tmp_path / "a" / "b" / "c" / "x.db",
              "outside-the-roots": Path("/var/tmp") / f"fer-lab-test-{os.getpid()}.db"}[case]
    if case == "another-programs-db":
        with sqlite3.connect(target) as connection:
            connection.execute("CREATE TABLE notes (text TEXT)")
    elif case == "empty-conf":
        target.write_bytes(b"")
    before = target.read_bytes() if target.exists() else None
    url = f"sqlite+pysqlite:///{target}" if case == "pysqlite-url" else f"sqlite:///{target}"
    app = open_page("sweep")
    app.text_input(key=STORAGE_KEY).set_value(url).run()
    no_exception(app)
    with pytest.raises(SweepError):
        sweep_status("any", url)
    if case == "pysqlite-url":  # a new file in an allowed folder: created by Create only
        assert not target.exists()
        form(app, name="here", workers=0)
        click(app, "Create sweep")
        no_exception(app)
        assert list_sweeps(url) == ["here"]
        return
    if not errors(app):  # the page read it as "no sweeps yet": Create must refuse it
        form(app, name="here", workers=0)
        click(app, "Create sweep")
        no_exception(app)
    assert "sweep storage" in errors(app)
    assert (target.read_bytes() if target.exists() else None) == before
    assert not (tmp_path / "a").exists()
    with pytest.raises(SweepError):
        check_sqlite_storage(url, create=True)


# ---- sign-in --------------------------------------------------------------------------------------


def open_with_sign_in(user: dict, query_params: dict | None = None) -> AppTest:
    """The Sweeps page with sign-in configured, for ``user``."""
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.secrets.update({"auth": dict(AUTH)})
    app.user = dict(user)
    app.run()
    app.query_params.update(query_params or {})
    return app.switch_page("app_pages/sweep.py").run()


def test_signed_out_visitor_can_read_a_sweep_but_not_create_start_or_stop(started):
    sweep("guarded", told=(0.5, 0.6))
    app = open_with_sign_in(SIGNED_OUT, {"study": "guarded"})
    no_exception(app)
    assert app.dataframe and app.get("metric")  # reading stays open
    assert any(text.startswith("Sign in to create, start or stop sweeps") for text in texts(app.warning))
    assert app.text_input(key=STORAGE_KEY).disabled
    for label in ("Create sweep", "Start a worker here", "Stop now"):
        assert button(app, label).disabled, label
    app.checkbox(key="sweep.confirm_stop.guarded").check().run()
    force_click(app, "Stop now")
    force_click(app, "Start a worker here")
    force_click(app, "Create sweep")
    no_exception(app)
    assert sweep_status("guarded", default_storage())["stopped"] is False
    assert sweeps_here() == ["guarded"] and started == []


def test_actions_check_the_user_when_they_run_not_only_when_their_buttons_are_drawn(
        started, tiny_data, monkeypatch):
    monkeypatch.setenv("FER_DATA", str(tiny_data))
    sweep("guarded", told=(0.5,))
    app = open_with_sign_in(SIGNED_IN, {"study": "guarded"})
    app.checkbox(key="sweep.confirm_stop.guarded").check().run()
    click_signed_out(app, "Stop now")
    assert any(text.startswith("Sign in to stop sweeps") for text in texts(app.warning))
    click_signed_out(app, "Start a worker here")
    assert any(text.startswith("Sign in to start sweep workers") for text in texts(app.warning))
    click_signed_out(app, "Create sweep")
    assert "sign in first" in errors(app)
    no_exception(app)
    assert sweep_status("guarded", default_storage())["stopped"] is False
    assert sweeps_here() == ["guarded"] and started == []


# ---- the Runs page and other pages ------------------------------------------------------------


def test_a_trial_run_on_the_runs_page_links_to_its_sweep():
    runs = sweep("linked", told=(0.5,))
    app = open_page("runs", {"run": runs[0].name})
    no_exception(app)
    assert any("trial 0 of sweep linked" in text for text in texts(app.caption))
    links = [(link.value, link.proto.page, link.proto.query_string) for link in app.get("page_link")]
    assert ("Sweep linked", "sweeps", "study=linked") in links


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth of its syntax tree."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_other_pages_do_not_import_optuna_directly_or_through_their_imports():
    modules = set(itertools.chain.from_iterable(imported_modules(PROJECT_ROOT / p) for p in OPTUNA_FREE))
    assert not [name for name in modules if name.split(".")[0] == "optuna"]
    # What they import does not pull Optuna in either (fer.sweep imports it only when called).
    ours = sorted(name for name in modules if name.split(".")[0] in ("fer", "app_pages"))
    probe = f"import sys\nfor name in {ours!r}:\n    __import__(name)\nprint('optuna' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
