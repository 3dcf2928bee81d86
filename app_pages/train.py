"""Train: pick a dataset, an architecture and hyperparameters, then launch a background run."""

from __future__ import annotations

import secrets
from typing import Any

import streamlit as st

from fer.access import actions_allowed, sign_in_notice
from fer.architectures import ARCHITECTURES, architecture_names
from fer.backends import installed_backends
from fer.config import (
    AUGMENTATION,
    DATA_AND_LOSS,
    HARDWARE,
    OPTIMISATION,
    PARAMETERS,
    REGULARISATION,
    SCHEDULE,
    ConfigError,
    TrainConfig,
)
from fer.data import (
    SPLIT_TITLES,
    DataError,
    DatasetSummary,
    check_data_allowed,
    default_data_location,
    resolve_location,
    summarize_dataset,
)
from fer.queue import max_runs, queue_positions
from fer.run_folder import RunError
from fer.runs import create_run, experiments_dir, run_path
from fer.ui import cli_command, dataset_counts_frame, escape_markdown, format_param_count
from fer.workers import launch

# The form shows every TrainConfig setting but the architecture and the data (placed on their
# own), grouped as fer.config.PARAMETERS says.
FORM_SETTINGS = [name for name, parameter in PARAMETERS.items() if parameter.group]
MAIN_GROUPS = (OPTIMISATION, REGULARISATION, HARDWARE)
ADVANCED_GROUPS = (SCHEDULE, AUGMENTATION, DATA_AND_LOSS)


def settings_in(group: str) -> list[str]:
    return [name for name in FORM_SETTINGS if PARAMETERS[name].group == group]


# How to install each backend's framework (one per fer.backends.BACKENDS); a backend that is not
# installed cannot be launched.
INSTALL_COMMANDS = {"tensorflow": "pip install -r requirements.txt",
                    "jax": "pip install -r requirements-jax.txt"}
TOKEN = "train.submission"  # one token per form submission; a launch consumes it
LAUNCHED = "train.launched"
QUEUED = "train.queued"  # the launched run's place in the queue (None: it started at once)
ERRORS = "train.errors"


def widget_key(architecture: str, name: str) -> str:
    # Keyed by architecture, so switching architecture shows that architecture's defaults.
    return f"train.{architecture}.{name}"


def new_submission() -> None:
    st.session_state[TOKEN] = secrets.token_hex(8)


def backend_label(backend: str) -> str:
    return backend if backend in installed_backends() else f"{backend} (not installed)"


def missing_backend(backend: str) -> str | None:
    """Why ``backend`` cannot train here, or None when its framework is installed."""
    if backend in installed_backends():
        return None
    return f"{backend} is not installed here: `{INSTALL_COMMANDS[backend]}`"


def hyperparameter_widget(architecture: str, name: str, default: Any) -> Any:
    parameter = PARAMETERS[name]
    help_text = parameter.full_help
    common = {"key": widget_key(architecture, name), "help": help_text[0].upper() + help_text[1:] + ".",
              "on_change": new_submission}
    if parameter.choices:
        options = list(parameter.choices)
        if name == "backend":
            common["format_func"] = backend_label
        return st.selectbox(parameter.label, options, index=options.index(default), **common)
    if isinstance(default, bool):
        return st.checkbox(parameter.label, value=default, **common)
    low, high = parameter.widget_range
    if isinstance(default, int):
        return int(st.number_input(parameter.label, value=default, step=1, min_value=int(low),
                                   max_value=int(high), **common))
    return float(st.number_input(parameter.label, value=float(default), min_value=float(low),
                                 max_value=float(high), step=parameter.step, format="%g", **common))


def form_values(architecture: str, data: str) -> dict[str, Any]:
    """The launch form as plain values, read from the widgets' state."""
    defaults = TrainConfig.for_architecture(architecture).to_dict()
    values = {name: st.session_state.get(widget_key(architecture, name), defaults[name])
              for name in FORM_SETTINGS}
    return {"architecture": architecture, "data": data.strip(), **values}


def launch_run(token: str) -> None:
    """Create and start a run, once per form submission (a double click starts one run)."""
    if token is None or st.session_state.get(TOKEN) != token:
        return
    if not actions_allowed():  # the button is disabled too, but a click may still reach the server
        st.session_state[ERRORS] = ["sign in first: only signed-in users may launch training"]
        return
    st.session_state[TOKEN] = None
    architecture = st.session_state["train.architecture"]
    values = form_values(architecture, st.session_state.get("train.data", ""))
    name = st.session_state.get("train.name", "").strip()
    try:
        config = TrainConfig.from_dict(values)
        problem = missing_backend(config.backend)
        if problem:
            raise ConfigError([problem])
        if name:
            run_path(name)  # a clear message for a bad name before anything is created
        resolve_location(check_data_allowed(config.data))  # only data/, FER_DATA, FER_DATA_ROOTS
        run_dir = create_run(config, run_id=name or None)
    except ConfigError as exc:
        st.session_state[ERRORS] = exc.problems
        st.session_state[TOKEN] = token
        return
    except (DataError, RunError, OSError) as exc:
        st.session_state[ERRORS] = [str(exc)]
        st.session_state[TOKEN] = token
        return
    try:
        pid = launch(run_dir)
    except (RunError, OSError) as exc:
        st.session_state[ERRORS] = [f"run {run_dir.name} was created but did not start: {exc}; "
                                    "resume it from the Runs page"]
        pid = None
    st.session_state[LAUNCHED] = run_dir.name
    st.session_state[QUEUED] = queue_positions(run_dir.parent).get(run_dir.name) if pid is None else None


@st.cache_data(ttl=30, show_spinner="Reading the dataset…")
def dataset_summary(location: str, validation_split: float, seed: int) -> DatasetSummary:
    return summarize_dataset(location or None, validation_split, seed)


def dataset_section(data: str, validation_split: float, seed: int) -> None:
    allowed = actions_allowed()  # checking reads any path on the server: an action, not reading
    if st.button("Check dataset", icon=":material/fact_check:", disabled=not allowed) and allowed:
        st.session_state["train.checked"] = data
    if not allowed:
        sign_in_notice("check a dataset or launch training")
        return
    if st.session_state.get("train.checked") != data:
        return
    try:
        # Refused before anything is read, so the page never tells what lies outside the roots.
        summary = dataset_summary(str(check_data_allowed(data)), validation_split, seed)
    except DataError as exc:
        st.error(str(exc))
        return
    st.caption(f"Read from `{summary.source}`. Validation: {escape_markdown(summary.val_description)}; "
               f"test: {escape_markdown(summary.test_description)}.")
    st.dataframe(dataset_counts_frame(summary.counts, SPLIT_TITLES), width="content")
    for warning in summary.warnings:
        st.warning(warning)


if TOKEN not in st.session_state:
    new_submission()

st.title("Train a model")

st.subheader("Dataset")
default_location = default_data_location()
data = st.text_input(
    PARAMETERS["data"].label, key="train.data", on_change=new_submission,
    placeholder=str(default_location) if default_location else "no dataset found; enter a path",
    help="A folder with train/<emotion>/ and test/<emotion>/, a .tar.gz of it, or fer2013.csv. "
         "Empty uses the default shown in grey. Only paths inside data/, FER_DATA or a folder "
         "listed in FER_DATA_ROOTS are read.",
)
# The split depends on two advanced settings; their widgets come later, so read their state.
current = form_values(st.session_state.get("train.architecture", architecture_names()[0]), data)
dataset_section(data, current["validation_split"], current["seed"])

st.subheader("Model")
architecture = st.selectbox(
    PARAMETERS["architecture"].label, architecture_names(), key="train.architecture",
    on_change=new_submission, format_func=lambda name: ARCHITECTURES[name].title,
)
info = ARCHITECTURES[architecture]
st.markdown(f"{info.description}  \n**Source:** {info.source} · **Size:** {format_param_count(info.params)}")
if info.differences:
    st.caption(f"**Differs from its source:** {escape_markdown(info.differences)}")

defaults = TrainConfig.for_architecture(architecture).to_dict()
st.subheader("Hyperparameters")
for column, group in zip(st.columns(len(MAIN_GROUPS)), MAIN_GROUPS, strict=True):
    with column:
        st.markdown(f"**{group}**")
        for name in settings_in(group):
            hyperparameter_widget(architecture, name, defaults[name])
with st.expander("Advanced settings"):
    for column, group in zip(st.columns(len(ADVANCED_GROUPS)), ADVANCED_GROUPS, strict=True):
        with column:
            st.markdown(f"**{group}**")
            for name in settings_in(group):
                hyperparameter_widget(architecture, name, defaults[name])

st.subheader("Launch")
run_name = st.text_input("Run name (optional)", key="train.name", on_change=new_submission,
                         help="Letters, digits, '.', '_' and '-'; empty = date-architecture-random.")
st.markdown("Equivalent command line:")
st.code(cli_command(form_values(architecture, data), run_name.strip()), language="bash", wrap_lines=True)

token = st.session_state[TOKEN]
backend_problem = missing_backend(form_values(architecture, data)["backend"])
if backend_problem:
    st.error(f"Cannot launch: {backend_problem} (or pick another Keras backend under **Hardware**).")
st.button("Launch training", type="primary", icon=":material/rocket_launch:", on_click=launch_run,
          args=(token,), disabled=token is None or backend_problem is not None or not actions_allowed(),
          help="Starts a background worker; this form is ready again once you change a setting.")
if not actions_allowed():
    st.caption("Sign in (under **Dataset** or in the sidebar) to launch training.")
errors = st.session_state.pop(ERRORS, None)
if errors:
    st.error("Cannot launch:\n" + "\n".join(f"- {problem}" for problem in errors))
launched = st.session_state.get(LAUNCHED)
if launched:
    place = st.session_state.get(QUEUED)
    if place:
        st.success(f"Queued run **{launched}** at place {place}: {max_runs(experiments_dir())} run(s) "
                   "train at once (set it in the sidebar); it starts when a run ends.")
    else:
        st.success(f"Launched run **{launched}**.")
    st.page_link("app_pages/runs.py", label="Watch it on the Runs page", icon=":material/monitoring:",
                 query_params={"run": launched})
    if token is None:
        st.button("Launch another run with these settings", on_click=new_submission)
