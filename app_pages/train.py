"""Train: pick a dataset, an architecture and hyperparameters, then launch a background run."""

from __future__ import annotations

import secrets
from typing import Any

import streamlit as st

from fer.architectures import ARCHITECTURES, architecture_names
from fer.backends import BACKENDS, installed_backends
from fer.config import (
    LR_SCHEDULES,
    MAX_DEVICES,
    OPTIMIZERS,
    PARAMETER_HELP,
    PLATEAU_MONITORS,
    ConfigError,
    TrainConfig,
)
from fer.data import (
    SPLIT_TITLES,
    DataError,
    DatasetSummary,
    default_data_location,
    resolve_location,
    summarize_dataset,
)
from fer.runs import RunError, create_run, launch, run_path
from fer.ui import cli_command, dataset_counts_frame, escape_markdown, format_param_count

# Widget label and range per hyperparameter (the ranges fer.config validates); help texts come
# from fer.config.PARAMETER_HELP, shared with the CLI.
CHOICES = {"optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES, "plateau_monitor": PLATEAU_MONITORS,
           "backend": BACKENDS}
WIDGETS: dict[str, dict[str, Any]] = {
    "epochs": {"label": "Epochs", "min_value": 1, "max_value": 10_000},
    "batch_size": {"label": "Batch size", "min_value": 1, "max_value": 4096},
    "optimizer": {"label": "Optimizer"},
    "learning_rate": {"label": "Learning rate", "min_value": 1e-7, "max_value": 10.0, "step": 1e-4,
                      "format": "%g"},
    "lr_schedule": {"label": "Learning-rate schedule"},
    "dropout": {"label": "Dropout", "min_value": 0.0, "max_value": 0.95, "step": 0.05, "format": "%g"},
    "l2": {"label": "L2 weight penalty", "min_value": 0.0, "max_value": 1.0, "step": 1e-4, "format": "%g"},
    "early_stopping_patience": {
        "label": "Early-stopping patience", "min_value": 0, "max_value": 10_000},
    "augment": {"label": "Augment training images"},
    "momentum": {"label": "Momentum (sgd)", "min_value": 0.0, "max_value": 0.999, "step": 0.01,
                 "format": "%g"},
    "weight_decay": {"label": "Weight decay", "min_value": 0.0, "max_value": 1.0, "step": 1e-4,
                     "format": "%g"},
    "plateau_monitor": {"label": "Plateau monitor"},
    "plateau_factor": {"label": "Plateau factor", "min_value": 0.01, "max_value": 0.99, "step": 0.05,
                       "format": "%g"},
    "plateau_patience": {"label": "Plateau patience", "min_value": 1, "max_value": 1000},
    "plateau_min_lr": {"label": "Plateau minimum learning rate", "min_value": 0.0, "max_value": 1.0,
                       "step": 1e-6, "format": "%g"},
    "flip": {"label": "Horizontal flips"},
    "rotation": {"label": "Rotation (degrees)", "min_value": 0.0, "max_value": 180.0, "step": 1.0,
                 "format": "%g"},
    "zoom": {"label": "Zoom", "min_value": 0.0, "max_value": 0.9, "step": 0.05, "format": "%g"},
    "translation": {"label": "Translation", "min_value": 0.0, "max_value": 0.9, "step": 0.05,
                    "format": "%g"},
    "shear": {"label": "Shear (degrees)", "min_value": 0.0, "max_value": 45.0, "step": 0.1, "format": "%g"},
    "erasing": {"label": "Random erasing", "min_value": 0.0, "max_value": 1.0, "step": 0.05,
                "format": "%g"},
    "crop": {"label": "Random crop side (0 = off)", "min_value": 0, "max_value": 47},
    "validation_split": {
        "label": "Validation fraction", "min_value": 0.01, "max_value": 0.49, "step": 0.01, "format": "%g"},
    "max_train_samples": {"label": "Max training images", "min_value": 0, "max_value": 10_000_000},
    "class_weights": {"label": "Balance classes"},
    "label_smoothing": {"label": "Label smoothing", "min_value": 0.0, "max_value": 0.9, "step": 0.05,
                        "format": "%g"},
    "seed": {"label": "Seed", "min_value": 0, "max_value": 2**31 - 1},
    "mixed_precision": {"label": "Mixed precision"},
    "backend": {"label": "Keras backend"},
    "devices": {"label": "Devices", "min_value": 1, "max_value": MAX_DEVICES},
    "deterministic": {"label": "Deterministic"},
}
MAIN_GROUPS = {
    "Optimisation": ["epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule"],
    "Regularisation": ["dropout", "l2", "early_stopping_patience", "augment"],
    "Hardware": ["backend", "devices", "mixed_precision", "deterministic"],
}
ADVANCED_GROUPS = {
    "Optimizer and schedule": ["momentum", "weight_decay", "plateau_monitor", "plateau_factor",
                               "plateau_patience", "plateau_min_lr"],
    "Augmentation": ["flip", "rotation", "zoom", "translation", "shear", "erasing", "crop"],
    "Data and loss": ["validation_split", "max_train_samples", "class_weights", "label_smoothing",
                      "seed"],
}
# How to install each backend's framework (one per fer.backends.BACKENDS); a backend that is not
# installed cannot be launched.
INSTALL_COMMANDS = {"tensorflow": "pip install -r requirements.txt",
                    "jax": "pip install -r requirements-jax.txt"}
TOKEN = "train.submission"  # one token per form submission; a launch consumes it
LAUNCHED = "train.launched"
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
    spec = dict(WIDGETS[name])
    label = spec.pop("label")
    common = {"key": widget_key(architecture, name), "help": PARAMETER_HELP[name].capitalize() + ".",
              "on_change": new_submission}
    if name in CHOICES:
        options = list(CHOICES[name])
        if name == "backend":
            common["format_func"] = backend_label
        return st.selectbox(label, options, index=options.index(default), **common)
    if isinstance(default, bool):
        return st.checkbox(label, value=default, **common)
    if isinstance(default, int):
        return int(st.number_input(label, value=default, step=1, **spec, **common))
    return float(st.number_input(label, value=float(default), **spec, **common))


def form_values(architecture: str, data: str) -> dict[str, Any]:
    """The launch form as plain values, read from the widgets' state."""
    defaults = TrainConfig.for_architecture(architecture).to_dict()
    values = {name: st.session_state.get(widget_key(architecture, name), defaults[name]) for name in WIDGETS}
    return {"architecture": architecture, "data": data.strip(), **values}


def launch_run(token: str) -> None:
    """Create and start a run, once per form submission (a double click starts one run)."""
    if token is None or st.session_state.get(TOKEN) != token:
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
        resolve_location(config.data or None)
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
        launch(run_dir)
    except (RunError, OSError) as exc:
        st.session_state[ERRORS] = [f"run {run_dir.name} was created but did not start: {exc}; "
                                    "resume it from the Runs page"]
    st.session_state[LAUNCHED] = run_dir.name


@st.cache_data(ttl=30, show_spinner="Reading the dataset…")
def dataset_summary(location: str, validation_split: float, seed: int) -> DatasetSummary:
    return summarize_dataset(location or None, validation_split, seed)


def dataset_section(data: str, validation_split: float, seed: int) -> None:
    if st.button("Check dataset", icon=":material/fact_check:"):
        st.session_state["train.checked"] = data
    if st.session_state.get("train.checked") != data:
        return
    try:
        summary = dataset_summary(data.strip(), validation_split, seed)
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
    "Dataset location", key="train.data", on_change=new_submission,
    placeholder=str(default_location) if default_location else "no dataset found; enter a path",
    help="A folder with train/<emotion>/ and test/<emotion>/, a .tar.gz of it, or fer2013.csv. "
         "Empty uses the default shown in grey.",
)
# The split depends on two advanced settings; their widgets come later, so read their state.
current = form_values(st.session_state.get("train.architecture", architecture_names()[0]), data)
dataset_section(data, current["validation_split"], current["seed"])

st.subheader("Model")
architecture = st.selectbox(
    "Architecture", architecture_names(), key="train.architecture", on_change=new_submission,
    format_func=lambda name: ARCHITECTURES[name].title,
)
info = ARCHITECTURES[architecture]
st.markdown(f"{info.description}  \n**Source:** {info.source} · **Size:** {format_param_count(info.params)}")
if info.differences:
    st.caption(f"**Differs from its source:** {escape_markdown(info.differences)}")

defaults = TrainConfig.for_architecture(architecture).to_dict()
st.subheader("Hyperparameters")
for column, (group, names) in zip(st.columns(len(MAIN_GROUPS)), MAIN_GROUPS.items(), strict=True):
    with column:
        st.markdown(f"**{group}**")
        for name in names:
            hyperparameter_widget(architecture, name, defaults[name])
with st.expander("Advanced settings"):
    for column, (group, names) in zip(st.columns(len(ADVANCED_GROUPS)), ADVANCED_GROUPS.items(), strict=True):
        with column:
            st.markdown(f"**{group}**")
            for name in names:
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
          args=(token,), disabled=token is None or backend_problem is not None,
          help="Starts a background worker; this form is ready again once you change a setting.")
errors = st.session_state.pop(ERRORS, None)
if errors:
    st.error("Cannot launch:\n" + "\n".join(f"- {problem}" for problem in errors))
launched = st.session_state.get(LAUNCHED)
if launched:
    st.success(f"Launched run **{launched}**.")
    st.page_link("app_pages/runs.py", label="Watch it on the Runs page", icon=":material/monitoring:",
                 query_params={"run": launched})
    if token is None:
        st.button("Launch another run with these settings", on_click=new_submission)
