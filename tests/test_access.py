"""Access: the dashboard listens on localhost only, and once sign-in ([auth]) is configured only
signed-in users may act (launch, check a dataset, stop / resume / delete, TTA evaluation, uploads).

AppTest simulates both sides: ``at.secrets["auth"]`` configures sign-in and ``at.user`` is what the
pages read as ``st.user`` (``{"is_logged_in": True, ...}`` for a signed-in user).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import streamlit as st
from app_driver import APP, TIMEOUT, experiments, no_exception, texts
from fake_runs import fake_run, hold_run_lock, release
from streamlit.runtime.secrets import Secrets
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

import app_pages.access
import fer.workers
from fer import PROJECT_ROOT
from fer.runs import experiments_dir
from fer.workers import effective_state

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-cookie-secret",
        "client_id": "fer-lab", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}
SIGNED_IN = {"is_logged_in": True, "name": "Ada Lovelace", "email": "ada@example.com"}
SIGNED_OUT = {"email": "test@example.com"}  # AppTest's default user: no is_logged_in claim


def open_as(page: str, auth: bool, user: dict | None = None, query_params: dict | None = None,
            access: dict | None = None) -> AppTest:
    """``app_pages/<page>.py`` with or without an [auth] secrets section (and ``access`` as its
    [access] section), as ``user``.

    Secrets are always given, so a developer's own .streamlit/secrets.toml cannot change the result.
    """
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.secrets.update({"auth": dict(AUTH)} if auth else {"unrelated": "value"})
    if access is not None:
        app.secrets["access"] = access
    app.user = dict(user or SIGNED_OUT)
    app.run()
    app.query_params.update(query_params or {})
    return app.switch_page(f"app_pages/{page}.py").run()


def notices(app: AppTest) -> list[str]:
    return [text for text in texts(app.warning) if text.startswith("Sign in to")]


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def force_click(app: AppTest, label: str) -> AppTest:
    """Click ``label`` even if disabled, as a hand-made websocket message would (Streamlit drops it)."""
    button(app, label)._value = True  # bypass AppTest's "a browser cannot click a disabled button"
    return app.run()


@pytest.fixture(autouse=True)
def no_shipped_model(tmp_path, monkeypatch):
    """Only this test's runs are offered as models, whether or not a default model ships."""
    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")


@pytest.fixture
def launched(monkeypatch) -> list[Path]:
    """Launch records the run folder instead of starting a worker, so nothing trains."""
    started: list[Path] = []
    monkeypatch.setattr(fer.workers, "launch", started.append)
    return started


@pytest.fixture
def live_run():
    """A 'running' run whose worker is a sleeping process holding the run's lock."""
    run_dir = fake_run(experiments_dir(), "live", state="running", evaluation=False)
    worker = hold_run_lock(run_dir)
    yield run_dir, worker
    release(worker)


@pytest.fixture
def fake_predictor(monkeypatch) -> Path:
    """A run with a (fake) model.keras that "loads" without Keras: the page only needs a predictor."""
    run_dir = fake_run(experiments_dir(), "model", evaluation=False)
    monkeypatch.setattr("fer.predict.Predictor.load", classmethod(lambda cls, path: object()))
    return run_dir


# --- the shipped configuration ---------------------------------------------------------------


def test_config_binds_to_localhost_and_sends_no_usage_statistics():
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert config["browser"]["gatherUsageStats"] is False


def test_secrets_file_is_kept_out_of_git_and_the_config_is_not():
    lines = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert ".streamlit/secrets.toml" in lines
    assert not any(line.strip() in (".streamlit", ".streamlit/", ".streamlit/*") for line in lines)


def test_no_secrets_file_means_auth_is_not_configured_and_actions_are_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr(st, "secrets", Secrets())
    with patch_config_options({"secrets.files": [str(tmp_path / "missing" / "secrets.toml")]}):
        assert app_pages.access.auth_configured() is False
        assert app_pages.access.actions_allowed() is True


@pytest.mark.parametrize("text", [
    '[auth\nredirect_uri = "http://localhost:8501/oauth2callback"\n',  # a missing ]
    '[access]\nallowed = ["ada@example.com"]\nlog = "C:\\Users\\ada\\fer.log"\n',  # \U in a basic string
], ids=["missing-bracket", "windows-path"])
def test_a_secrets_file_that_cannot_be_read_locks_every_action_with_a_reason(tmp_path, tiny_data, launched,
                                                                              text):
    """Streamlit reads an unparsable secrets file as no file at all (sign-in off for everyone):
    fer-lab fails closed instead, and says why on every page."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(text)
    with patch_config_options({"secrets.files": [str(secrets)]}):
        assert "cannot be read" in app_pages.access.secrets_problem()
        assert app_pages.access.auth_configured() is True and app_pages.access.actions_allowed() is False
        for page in ("train", "runs", "predict", "dataset"):
            app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
            app.run()
            app = app.switch_page(f"app_pages/{page}.py").run()
            no_exception(app)
            assert any(text.startswith("Every action is locked") and "secrets.toml" in text
                       for text in texts(app.sidebar.error)), page
        app.switch_page("app_pages/train.py").run()
        app.text_input(key="train.data").set_value(str(tiny_data)).run()
        assert button(app, "Launch training").disabled
        force_click(app, "Launch training")
        no_exception(app)
        assert launched == [] and experiments(experiments_dir()) == []
    secrets.write_text('[unrelated]\nvalue = 1\n')
    with patch_config_options({"secrets.files": [str(secrets)]}):
        assert app_pages.access.secrets_problem() is None


def test_email_verified_counts_only_when_absent_or_true():
    assert [app_pages.access.email_verified(claim) for claim in (None, True, "true", " True ")] == [True] * 4
    assert not any(app_pages.access.email_verified(claim) for claim in (False, "false", "no", 0, 1, "", []))


# --- auth configured, visitor not signed in: reading works, acting does not -------------------


def test_signed_out_visitor_cannot_launch_or_check_a_dataset(tiny_data, launched):
    app = open_as("train", auth=True)
    no_exception(app)
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    assert button(app, "Check dataset").disabled and button(app, "Launch training").disabled
    assert notices(app) and "Sign in" in [b.label for b in app.button]
    force_click(app, "Check dataset")
    assert not app.dataframe  # no class counts were read
    force_click(app, "Launch training")
    no_exception(app)
    assert launched == [] and experiments(experiments_dir()) == []


def test_signed_out_visitor_cannot_delete_or_resume_a_run_but_can_read_it():
    run_dir = fake_run(experiments_dir(), "keep", state="stopped")
    app = open_as("runs", auth=True)
    no_exception(app)
    assert list(app.dataframe[0].value["run"]) == ["keep"]  # the list and the curves stay open
    assert notices(app)
    assert button(app, "Resume").disabled and button(app, "Delete permanently").disabled
    app.checkbox(key="confirm.keep").check().run()
    force_click(app, "Delete permanently")
    no_exception(app)
    assert run_dir.is_dir() and (run_dir / "model.keras").is_file()
    force_click(app, "Resume")
    assert effective_state(run_dir) == "stopped"


def test_signed_out_visitor_cannot_stop_a_run(live_run):
    run_dir, worker = live_run
    app = open_as("runs", auth=True)
    assert button(app, "Stop").disabled
    force_click(app, "Stop")
    no_exception(app)
    assert worker.poll() is None  # the worker was not signalled
    assert effective_state(run_dir) == "running"


def test_signed_out_visitor_is_not_offered_a_tta_evaluation():
    fake_run(experiments_dir(), "evaluated")
    app = open_as("evaluate", auth=True)
    no_exception(app)
    assert app.get("metric")  # the evaluation stays readable
    app.button_group(key="evaluate.tta").set_value("flip").run()
    no_exception(app)
    assert notices(app)
    assert not [b for b in app.button if b.key == "evaluate.run_tta.flip"]


def test_signed_out_visitor_is_not_offered_uploads_or_the_camera(fake_predictor):
    app = open_as("predict", auth=True)
    no_exception(app)
    assert not app.get("file_uploader") and not app.get("camera_input")
    assert not [toggle for toggle in app.toggle if toggle.key == "predict.camera_on"]
    assert notices(app) == ["Sign in to upload photos or videos or use the camera: this dashboard lets only "
                            "signed-in users act on it."]


def test_sidebar_offers_sign_in_and_a_misconfigured_sign_in_is_a_message():
    app = open_as("runs", auth=True)
    assert any("Not signed in" in text for text in texts(app.sidebar.caption))
    app.sidebar.button(key="access.sign_in.sidebar").click().run()
    no_exception(app)
    # Here either Authlib is missing or the [auth] secrets are AppTest's, not a secrets.toml.
    assert any(text.startswith("Cannot sign in:") for text in texts(app.error))


def test_actions_check_the_user_when_they_run_not_only_when_their_buttons_are_drawn(tiny_data, launched):
    """Buttons drawn for a signed-in user, clicked after the user signed out: nothing happens."""
    app = open_as("train", auth=True, user=SIGNED_IN)
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    app.user = dict(SIGNED_OUT)
    button(app, "Launch training").click().run()
    no_exception(app)
    assert launched == [] and experiments(experiments_dir()) == []
    assert any("sign in first" in text for text in texts(app.error))

    run_dir = fake_run(experiments_dir(), "keep", state="stopped")
    app = open_as("runs", auth=True, user=SIGNED_IN)
    app.checkbox(key="confirm.keep").check().run()
    app.user = dict(SIGNED_OUT)
    button(app, "Delete permanently").click().run()
    no_exception(app)
    assert run_dir.is_dir()
    assert any("Sign in to delete runs" in text for text in texts(app.warning))


# --- auth configured, user signed in: everything works -----------------------------------------


def test_signed_in_user_sees_who_and_can_sign_out():
    app = open_as("runs", auth=True, user=SIGNED_IN)
    assert any("Ada Lovelace" in text for text in texts(app.sidebar.caption))
    assert not notices(app)
    app.sidebar.button(key="access.sign_out").click().run()
    no_exception(app)
    assert app.user == {"is_logged_in": False}
    assert app_pages.access.SIGN_IN_ERROR not in app.session_state
    assert any("Not signed in" in text for text in texts(app.sidebar.caption))


def test_signed_in_user_can_launch_and_delete(tiny_data, launched):
    app = open_as("train", auth=True, user=SIGNED_IN)
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    button(app, "Launch training").click().run()
    no_exception(app)
    assert len(launched) == 1 and not app.error
    app = open_as("runs", auth=True, user=SIGNED_IN)
    app.checkbox(key=f"confirm.{launched[0].name}").check().run()
    button(app, "Delete permanently").click().run()
    no_exception(app)
    assert not launched[0].exists()


def test_signed_in_user_can_upload(fake_predictor):
    app = open_as("predict", auth=True, user=SIGNED_IN)
    no_exception(app)
    assert app.get("file_uploader") and not notices(app)


# --- auth configured with an [access] allowed list ------------------------------------------------


@pytest.mark.parametrize("allowed", [["ada@example.com"], ["ADA@Example.com "], ["@example.com"],
                                     "ada@example.com", ["bob@example.org", "@example.com"]])
def test_a_user_on_the_allowed_list_can_launch(tiny_data, launched, allowed):
    app = open_as("train", auth=True, user=SIGNED_IN, access={"allowed": allowed})
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    button(app, "Launch training").click().run()
    no_exception(app)
    assert len(launched) == 1 and not app.error


@pytest.mark.parametrize("access, user", [
    ({"allowed": ["bob@example.org"]}, SIGNED_IN),
    ({"allowed": ["@example.org"]}, SIGNED_IN),
    ({"allowed": ["@example.com"]}, {**SIGNED_IN, "email": "ada@example.com.evil.org"}),
    ({"allowed": ["ada@example.com"]}, {**SIGNED_IN, "email_verified": False}),
    ({"allowed": ["ada@example.com"]}, {**SIGNED_IN, "email_verified": "false"}),
    ({"allowed": ["ada@example.com"]}, {**SIGNED_IN, "email_verified": 0}),
    ({"allowed": ["ada@example.com"]}, {"is_logged_in": True, "name": "Ada"}),  # no e-mail claim
    ({"allowed": 42}, SIGNED_IN),  # a list that is not one allows nobody
    ({}, SIGNED_IN),  # an [access] section without a list too
], ids=["other-user", "other-domain", "domain-suffix", "unverified", "unverified-as-text",
    "unverified-as-0", "no-email", "not-a-list", "no-list"])
def test_a_signed_in_user_off_the_allowed_list_can_look_but_not_act(tiny_data, launched, access, user):
    app = open_as("train", auth=True, user=user, access=access)
    no_exception(app)
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    assert button(app, "Launch training").disabled
    refusals = [text for text in texts(app.warning)
                if text.startswith("You cannot ") and "launch training" in text]
    assert refusals and "allowed" in refusals[0] and "Sign in" not in [b.label for b in app.button]
    assert any("you can look, but not act" in text for text in texts(app.sidebar.caption))
    force_click(app, "Launch training")
    no_exception(app)
    assert launched == [] and experiments(experiments_dir()) == []


def test_an_allowed_list_without_auth_changes_nothing(tiny_data, launched):
    """[access] narrows who of the signed-in users may act; with no sign-in (localhost) it is moot."""
    app = open_as("train", auth=False, access={"allowed": ["bob@example.org"]})
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    button(app, "Launch training").click().run()
    assert len(launched) == 1


# --- no auth configured (a dashboard on localhost): as before ----------------------------------


def test_without_auth_everything_works_and_nothing_mentions_signing_in(tiny_data, launched):
    app = open_as("train", auth=False)
    app.text_input(key="train.data").set_value(str(tiny_data)).run()
    button(app, "Check dataset").click().run()
    assert list(app.dataframe[0].value.loc["total"]) == [28, 7, 7]
    button(app, "Launch training").click().run()
    no_exception(app)
    assert len(launched) == 1
    assert not notices(app) and not app.sidebar.button
    app = open_as("runs", auth=False)
    app.checkbox(key=f"confirm.{launched[0].name}").check().run()
    button(app, "Delete permanently").click().run()
    assert not launched[0].exists()


def test_without_auth_uploads_are_offered(fake_predictor):
    app = open_as("predict", auth=False)
    no_exception(app)
    assert app.get("file_uploader") and not notices(app)
