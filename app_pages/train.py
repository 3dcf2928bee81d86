"""Train: pick a dataset, an architecture and hyperparameters, then launch a background run.

The form's values live in ``st.session_state[FORM]``, not only in the widgets: Streamlit forgets
the state of a widget that is not drawn (another page, another architecture's widgets, a hidden
setting), so every widget is drawn from FORM and writes back to it when the user changes it.
"""

from __future__ import annotations

import secrets
from typing import Any

import streamlit as st

from app_pages.access import actions_allowed, sign_in_notice
from fer.architectures import ARCHITECTURES, architecture_names
from fer.backends import installed_backends
from fer.config import (
    AUGMENTATION,
    DATA_AND_LOSS,
    HARDWARE,
    OPTIMISATION,
    PARAMETERS,
    PRESETS,
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
    default_dataset,
    resolve_location,
    summarize_dataset,
    validation_is_public_test,
)
from fer.devices import mixed_precision_note
from fer.queue import gpu_count, max_runs, queue_positions
from fer.run_folder import RunError, RunFolder
from fer.runs import create_run, experiments_dir, run_path
from fer.train_form import (
    CLONE_REQUEST,
    FORM_SETTINGS,
    architecture_defaults,
    clone_values,
    show_value,
    switch_architecture,
    use_preset,
)
from fer.ui import cli_command, code_span, dataset_counts_frame, escape_markdown, format_param_count
from fer.workers import launch

# The form shows every TrainConfig setting but the architecture and the data (placed on their
# own), grouped as fer.config.PARAMETERS says.
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
FORM = "train.form"  # architecture, data, name, values (setting -> value), user_set (settings typed)
SWITCH_NOTICE = "train.switch_notice"  # which of the user's values an architecture replaced
CLONE_NOTICE = "train.clone_notice"  # (kind, text): the settings of a cloned run, or why not
MISSING = object()


def widget_key(architecture: str, name: str) -> str:
    # Keyed by architecture, so switching architecture draws new widgets from FORM.
    return f"train.{architecture}.{name}"


def new_submission() -> None:
    st.session_state[TOKEN] = secrets.token_hex(8)


def form() -> dict[str, Any]:
    """The form's values for this session, created with the first architecture's defaults."""
    if FORM not in st.session_state:
        architecture = architecture_names()[0]
        st.session_state[FORM] = {"architecture": architecture, "data": "", "name": "",
                                  "values": architecture_defaults(architecture), "user_set": set()}
    return st.session_state[FORM]


def seed(key: str, value: Any) -> None:
    """Give the widget ``key`` the form's value before it is drawn (when Streamlit forgot it)."""
    if st.session_state.get(key, MISSING) != value:
        st.session_state[key] = value


def remember(field: str, key: str) -> None:
    """A text field changed (a widget callback): keep its value in the form."""
    form()[field] = st.session_state[key]
    new_submission()


def remember_setting(name: str) -> None:
    """A setting's widget changed (a widget callback): keep the value, and that the user set it."""
    state = form()
    state["values"][name] = st.session_state[widget_key(state["architecture"], name)]
    state["user_set"].add(name)
    new_submission()


def change_architecture() -> None:
    """The architecture changed (a widget callback): its recommended settings, but the user's own
    values where it prescribes none; a notice names the user's values it replaced."""
    state = form()
    architecture = st.session_state["train.architecture"]
    values, user_set, changes = switch_architecture(state["values"], state["user_set"], architecture)
    state.update(architecture=architecture, values=values, user_set=user_set)
    if changes:
        st.session_state[SWITCH_NOTICE] = (
            f"{ARCHITECTURES[architecture].title} sets its own values for settings you had changed: "
            + ", ".join(escape_markdown(change) for change in changes) + ".")
    else:
        st.session_state.pop(SWITCH_NOTICE, None)
    new_submission()


def preset_title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def preset_help(name: str) -> str:
    settings = PRESETS[name]
    parts = [ARCHITECTURES[settings["architecture"]].title] if "architecture" in settings else []
    parts += [f"{PARAMETERS[key].label.lower()} {show_value(value)}" for key, value in settings.items()
              if key != "architecture"]
    return f"Sets {', '.join(parts)}; your other settings stay."


def apply_preset_button(name: str) -> None:
    """A preset's button was clicked (a callback): its settings, and a notice of what changed."""
    state = form()
    old_architecture = state["architecture"]
    architecture, values, user_set, changes = use_preset(old_architecture, state["values"],
                                                         state["user_set"], PRESETS[name])
    state.update(architecture=architecture, values=values, user_set=user_set)
    parts = [f"architecture {ARCHITECTURES[old_architecture].title} → {ARCHITECTURES[architecture].title}"
             ] if architecture != old_architecture else []
    parts += [escape_markdown(change) for change in changes]
    st.session_state[SWITCH_NOTICE] = (f"Preset {preset_title(name).lower()}: "
                                       + (", ".join(parts) if parts else "nothing to change") + ".")
    new_submission()


def take_clone_request() -> None:
    """Put the run that a "Clone settings into Train" button named into the form."""
    run_id = st.session_state.pop(CLONE_REQUEST, None)
    if run_id is None:
        return
    state = form()
    try:
        folder = RunFolder(run_path(str(run_id)))
        raw = folder.read_config_values() if folder.path.is_dir() else None
        if raw is None:
            raise RunError(f"run {run_id} no longer exists or its config.json cannot be read")
        cloned = clone_values(raw, state["architecture"])
    except (RunError, ConfigError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        title = f"Cannot clone the settings of run **{escape_markdown(str(run_id))}**:\n"
        st.session_state[CLONE_NOTICE] = ("error", title + "\n".join(f"- {escape_markdown(problem)}"
                                                                      for problem in problems))
        return
    state.update(architecture=cloned.architecture, data=cloned.data, name="", values=cloned.values,
                 user_set=cloned.user_set)
    text = f"Settings from run **{escape_markdown(run_id)}**."
    if cloned.problems:
        text += " These could not be taken as they were:\n" + "\n".join(
            f"- {escape_markdown(problem)}" for problem in cloned.problems)
    st.session_state[CLONE_NOTICE] = ("warning" if cloned.problems else "success", text)
    st.session_state.pop(SWITCH_NOTICE, None)
    new_submission()


def public_test_validation(data: str) -> bool | None:
    """Whether the dataset's validation split is PublicTest (None: not known without unpacking,
    not readable, or the visitor may not read datasets)."""
    if not actions_allowed():
        return None
    try:
        return validation_is_public_test(check_data_allowed(data))
    except DataError:
        return None


def shown(name: str, values: dict[str, Any], public_test: bool | None) -> bool:
    """Whether the form draws ``name``: momentum only for SGD, the validation fraction only when
    the data has no PublicTest split (its value is kept either way)."""
    if name == "momentum":
        return values["optimizer"] == "sgd"
    if name == "validation_split":
        return public_test is not True
    return True


def backend_label(backend: str) -> str:
    return backend if backend in installed_backends() else f"{backend} (not installed)"


def missing_backend(backend: str) -> str | None:
    """Why ``backend`` cannot train here, or None when its framework is installed."""
    if backend in installed_backends():
        return None
    return f"{backend} is not installed here: `{INSTALL_COMMANDS[backend]}`"


def hyperparameter_widget(architecture: str, name: str, value: Any) -> Any:
    """The widget of setting ``name``, showing ``value`` (the form's)."""
    parameter = PARAMETERS[name]
    help_text = parameter.full_help
    key = widget_key(architecture, name)
    seed(key, value)
    common = {"key": key, "help": help_text[0].upper() + help_text[1:] + ".",
              "on_change": remember_setting, "args": (name,)}
    if parameter.choices:
        if name == "backend":
            common["format_func"] = backend_label
        return st.selectbox(parameter.label, list(parameter.choices), **common)
    if isinstance(value, bool):
        return st.checkbox(parameter.label, **common)
    low, high = parameter.widget_range
    if isinstance(value, int):
        return int(st.number_input(parameter.label, step=1, min_value=int(low), max_value=int(high),
                                   **common))
    return float(st.number_input(parameter.label, min_value=float(low), max_value=float(high),
                                 step=parameter.step, format="%g", **common))


def settings_column(group: str, values: dict[str, Any], public_test: bool | None) -> None:
    st.markdown(f"**{group}**")
    for name in settings_in(group):
        if shown(name, values, public_test):
            hyperparameter_widget(form()["architecture"], name, values[name])
            if name == "mixed_precision" and values[name]:
                note = mixed_precision_note(values["backend"], gpu_count() > 0)
                st.caption(f"Mixed precision here: {note}.")
        elif name == "validation_split":
            st.caption("Validation: the dataset's PublicTest split, so no fraction of train is held "
                       "out.")


def form_values() -> dict[str, Any]:
    """The launch form as plain values."""
    state = form()
    return {"architecture": state["architecture"], "data": state["data"].strip(), **state["values"]}


def launch_run(token: str) -> None:
    """Create and start a run, once per form submission (a double click starts one run)."""
    if token is None or st.session_state.get(TOKEN) != token:
        return
    if not actions_allowed():  # the button is disabled too, but a click may still reach the server
        st.session_state[ERRORS] = ["sign in first: only signed-in users may launch training"]
        return
    st.session_state[TOKEN] = None
    values = form_values()
    name = form()["name"].strip()
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
        st.error(escape_markdown(exc))
        return
    st.caption(f"Read from {code_span(summary.source)}. "
               f"Validation: {escape_markdown(summary.val_description)}; "
               f"test: {escape_markdown(summary.test_description)}.")
    st.dataframe(dataset_counts_frame(summary.counts, SPLIT_TITLES), width="content")
    for warning in summary.warnings:
        st.warning(escape_markdown(warning))


def launched_run() -> str | None:
    """The run this form launched last, while it exists (a deleted run's notice goes, and Launch is
    ready again)."""
    run_id = st.session_state.get(LAUNCHED)
    if run_id is None:
        return None
    try:
        exists = RunFolder(run_path(run_id)).is_run()
    except RunError:
        exists = False
    if not exists:
        st.session_state.pop(LAUNCHED, None)
        st.session_state.pop(QUEUED, None)
        if st.session_state.get(TOKEN) is None:
            new_submission()
        return None
    return run_id


# Streamlit forgot the widgets (the user was on another page): a fresh submission, so Launch is ready.
returning = FORM in st.session_state and "train.architecture" not in st.session_state
if TOKEN not in st.session_state or (returning and st.session_state[TOKEN] is None):
    new_submission()
take_clone_request()
state = form()

st.title("Train a model")
clone_notice = st.session_state.pop(CLONE_NOTICE, None)
if clone_notice:
    getattr(st, clone_notice[0])(clone_notice[1])

st.subheader("Dataset")
try:
    default_location = default_dataset()  # what an empty field means, named (a run stores it)
except DataError:
    default_location = None
seed("train.data", state["data"])
data = st.text_input(
    PARAMETERS["data"].label, key="train.data", on_change=remember, args=("data", "train.data"),
    placeholder=str(default_location) if default_location else "no dataset found; enter a path",
    help="A folder with train/<emotion>/ and test/<emotion>/, a .tar.gz of it, or fer2013.csv. "
         "Empty uses the default shown in grey. Only paths inside data/, FER_DATA or a folder "
         "listed in FER_DATA_ROOTS are read.",
)
dataset_section(data, state["values"]["validation_split"], state["values"]["seed"])

st.subheader("Model")
with st.container(horizontal=True, vertical_alignment="center"):
    st.markdown("Presets:")
    for preset in PRESETS:
        st.button(preset_title(preset), key=f"train.preset.{preset}", icon=":material/bolt:",
                  on_click=apply_preset_button, args=(preset,), help=preset_help(preset))
seed("train.architecture", state["architecture"])
architecture = st.selectbox(
    PARAMETERS["architecture"].label, architecture_names(), key="train.architecture",
    on_change=change_architecture, format_func=lambda name: ARCHITECTURES[name].title,
)
switch_notice = st.session_state.pop(SWITCH_NOTICE, None)
if switch_notice:
    st.info(switch_notice, icon=":material/swap_horiz:")
info = ARCHITECTURES[architecture]
st.markdown(f"{info.description}  \n**Source:** {info.source} · **Size:** {format_param_count(info.params)}")
if info.differences:
    st.caption(f"**Differs from its source:** {escape_markdown(info.differences)}")

values = state["values"]
public_test = public_test_validation(data)
st.subheader("Hyperparameters")
for column, group in zip(st.columns(len(MAIN_GROUPS)), MAIN_GROUPS, strict=True):
    with column:
        settings_column(group, values, public_test)
with st.expander("Advanced settings"):
    for column, group in zip(st.columns(len(ADVANCED_GROUPS)), ADVANCED_GROUPS, strict=True):
        with column:
            settings_column(group, values, public_test)

st.subheader("Launch")
seed("train.name", state["name"])
run_name = st.text_input("Run name (optional)", key="train.name", on_change=remember,
                         args=("name", "train.name"),
                         help="Letters, digits, '.', '_' and '-'; empty = date-architecture-random.")
st.markdown("Equivalent command line:")
st.code(cli_command(form_values(), run_name.strip()), language="bash", wrap_lines=True)

launched = launched_run()
token = st.session_state[TOKEN]
backend_problem = missing_backend(values["backend"])
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
