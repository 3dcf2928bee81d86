"""Sweeps: search hyperparameters with Optuna; every trial is an ordinary run on the Runs page.

Optuna is imported only when this page calls fer.sweep (and for its charts), so the other pages
open without it. Creating a sweep, starting workers and stopping are actions: they need a signed-in
user once sign-in is configured, checked in the callbacks that act.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pandas as pd
import streamlit as st

from app_pages.access import actions_allowed, sign_in_notice
from fer.architectures import ARCHITECTURES, architecture_names
from fer.config import PARAMETERS, TrainConfig
from fer.data import DataError, check_data_allowed, resolve_location
from fer.runs import experiments_dir
from fer.search_space import GRID_POINTS, SEARCHABLE, SearchSpaceError, grid_size, validate
from fer.sweep import (
    PRUNER_STARTUP_TRIALS,
    PRUNER_WARMUP_EPOCHS,
    SAMPLERS,
    SweepError,
    SweepSpec,
    create_sweep,
    default_storage,
    list_sweeps,
    load_sweep,
    shown_storage,
    start_workers,
    stop_sweep,
    sweep_status,
)
from fer.ui import escape_markdown, percent

STORAGE = "sweep.storage"
SAVED_STORAGE = "sweep.saved_storage"  # the storage typed, kept while other pages are open
STUDY = "sweep.study"
FLASH = "sweep.flash"  # messages from button callbacks, shown once at the top
TOKEN = "sweep.submission"  # one token per form submission: a double click creates one sweep
ERRORS = "sweep.errors"
SEEN = "sweep.seen"  # study -> when this session last saw it busy (or started its workers)
NEW = "sweep.new"  # prefix of the New sweep form's widget keys

SAMPLER_TITLES = {"tpe": "TPE (learns from earlier trials)", "random": "Random", "grid": "Grid"}
TRIAL_COLORS = {"complete": "blue", "running": "green", "waiting": "violet", "pruned": "orange",
                "fail": "red"}
FINISHED = ("complete", "pruned", "fail")
BATCH_SIZES = [2**power for power in range(3, 10)]  # 8 ... 512
SWEEP_EPOCHS = 10  # trials are short: a sweep compares settings; retrain the best one longer
MAX_WORKERS_HERE = 8
ROW_WIDTHS = [3.2, 1.4, 1.4, 0.7]  # a search-space row: setting, low, high, log
REFRESH_S = 2.0
# Keep refreshing this long after trials were last seen running (a worker asks for its next trial
# a moment after the last one ends) or after workers were started here.
GRACE_S = 30.0


def flash(kind: str, text: str) -> None:
    st.session_state.setdefault(FLASH, []).append((kind, text))


def refused(action: str) -> bool:
    """True (and a message) when the visitor may not act; the buttons are disabled too, but a click
    may still reach the server."""
    if actions_allowed():
        return False
    flash("warning", f"Sign in to {action}: nothing was changed.")
    return True


def mark_busy(name: str) -> None:
    st.session_state.setdefault(SEEN, {})[name] = time.time()


# ---- storage ---------------------------------------------------------------------------------

def remember_storage() -> None:
    st.session_state[SAVED_STORAGE] = st.session_state[STORAGE]


def storage_field() -> str:
    """The storage URL to use: what was typed, or experiments/sweeps.db (always, when signed out:
    another URL would make the server open any file or database)."""
    default = default_storage()
    if STORAGE not in st.session_state:
        st.session_state[STORAGE] = st.session_state.get(SAVED_STORAGE, "")
    allowed = actions_allowed()
    st.text_input(
        "Sweep storage", key=STORAGE, on_change=remember_storage, disabled=not allowed,
        placeholder=shown_storage(default),
        help="An Optuna database URL. Empty: an SQLite file in the experiments folder. A database "
             "server (e.g. postgresql+psycopg2://user:password@host/db) lets workers on several "
             "machines join.")
    typed = st.session_state[STORAGE].strip() if allowed else ""
    return typed or default


def read_sweeps(storage: str) -> list[str] | None:
    """The sweeps in ``storage`` (none for a SQLite file not made yet: reading never creates it);
    None (and the error shown) when it cannot be read or may not be used."""
    try:
        return list_sweeps(storage)
    except (SweepError, OSError) as exc:
        show_problems("Cannot read the sweep storage", problems_of(exc))
        return None


def problems_of(exc: Exception) -> list[str]:
    return list(getattr(exc, "problems", None) or [str(exc)])


def show_problems(title: str, problems: list[str]) -> None:
    st.error(f"{title}:\n" + "\n".join(f"- {escape_markdown(problem)}" for problem in problems))


# ---- the New sweep form ------------------------------------------------------------------------

def sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def key(*parts: str) -> str:
    return ".".join((NEW, *parts))


def new_submission() -> None:
    st.session_state[TOKEN] = secrets.token_hex(8)


def default_name() -> str:
    return time.strftime("sweep-%Y%m%d-%H%M")


def another_sweep() -> None:
    """Ready the form for another sweep with the same settings (a button callback)."""
    st.session_state[key("name")] = default_name()
    new_submission()


def choice_options(name: str) -> list:
    """What a setting's multiselect offers."""
    if name == "batch_size":
        return BATCH_SIZES
    return list(PARAMETERS[name].choices or SEARCHABLE[name]["choices"])


def searched_by_choices(name: str) -> bool:
    return "choices" in SEARCHABLE[name] or bool(PARAMETERS[name].choices)


def number_widget(name: str, bound: str, value: float, disabled: bool) -> None:
    """A low or high bound of a range; whole numbers for integer settings."""
    parameter = PARAMETERS[name]
    low, high = parameter.widget_range
    common = {"key": key("space", name, bound), "label_visibility": "collapsed", "disabled": disabled,
              "on_change": new_submission}
    if isinstance(value, int):
        st.number_input(f"{name} {bound}", value=value, min_value=int(low), max_value=int(high), step=1,
                        **common)
    else:
        st.number_input(f"{name} {bound}", value=float(value), min_value=float(low), max_value=float(high),
                        step=parameter.step, format="%g", **common)


def search_checkbox(name: str) -> bool:
    """Whether ``name`` is searched (learning rate and dropout until the visitor says otherwise)."""
    searched = st.session_state.get(key("space", name, "search"), name in ("learning_rate", "dropout"))
    return st.checkbox(PARAMETERS[name].label, value=searched, key=key("space", name, "search"),
                       help=sentence(f"search {name}: {PARAMETERS[name].full_help}"),
                       on_change=new_submission)


def choices_cell(name: str) -> None:
    """A setting searched over choices: its search checkbox above a multiselect."""
    searched = search_checkbox(name)
    st.multiselect(f"{name} choices", choice_options(name), default=SEARCHABLE[name]["choices"],
                   key=key("space", name, "choices"), label_visibility="collapsed",
                   disabled=not searched, on_change=new_submission)


def range_row(name: str) -> None:
    """A numeric setting: its search checkbox, then low, high and log."""
    suggested = SEARCHABLE[name]
    columns = st.columns(ROW_WIDTHS, vertical_alignment="center")
    with columns[0]:
        searched = search_checkbox(name)
    with columns[1]:
        number_widget(name, "low", suggested["low"], not searched)
    with columns[2]:
        number_widget(name, "high", suggested["high"], not searched)
    columns[3].checkbox(f"{name} log", value=suggested.get("log", False), key=key("space", name, "log"),
                        disabled=not searched, on_change=new_submission, label_visibility="collapsed")


def space_editor() -> None:
    """Every searchable setting: those with choices side by side, then the ranges in two halves."""
    choices = [name for name in SEARCHABLE if searched_by_choices(name)]
    for column, name in zip(st.columns(len(choices), gap="large"), choices, strict=True):
        with column:
            choices_cell(name)
    ranges = [name for name in SEARCHABLE if name not in choices]
    half = (len(ranges) + 1) // 2
    for column, part in zip(st.columns(2, gap="large"), (ranges[:half], ranges[half:]), strict=True):
        with column:
            heading = st.columns(ROW_WIDTHS)
            for cell, text in zip(heading, ("Range", "Low", "High", "Log"), strict=True):
                cell.caption(text)
            for name in part:
                range_row(name)


def form_space() -> dict[str, dict]:
    """The search space as the form says it (unvalidated)."""
    space: dict[str, dict] = {}
    for name in SEARCHABLE:
        if not st.session_state.get(key("space", name, "search")):
            continue
        if searched_by_choices(name):
            space[name] = {"choices": list(st.session_state.get(key("space", name, "choices"), []))}
        else:
            space[name] = {"low": st.session_state[key("space", name, "low")],
                           "high": st.session_state[key("space", name, "high")],
                           "log": bool(st.session_state.get(key("space", name, "log")))}
    return space


def form_fixed(space: dict[str, dict]) -> dict[str, Any]:
    """The settings every trial shares; the number of epochs only when it is not searched."""
    fixed: dict[str, Any] = {"max_train_samples": int(st.session_state[key("max_train_samples")])}
    if "epochs" not in space:
        fixed["epochs"] = int(st.session_state[key("epochs")])
    data = st.session_state[key("data")].strip()
    if data:
        fixed["data"] = data
    return fixed


def form_spec() -> SweepSpec:
    space = form_space()
    return SweepSpec(architecture=st.session_state[key("architecture")], space=space,
                     trials=int(st.session_state[key("trials")]), fixed=form_fixed(space),
                     sampler=st.session_state[key("sampler")], pruning=bool(st.session_state[key("pruning")]))


def data_problem(data: str | None) -> str | None:
    """Why the dashboard may not train on ``data`` (empty: the default here), or None. Only data/,
    FER_DATA and FER_DATA_ROOTS are read, as on the Train page."""
    try:
        resolve_location(check_data_allowed(data or None))
    except DataError as exc:
        return str(exc)
    return None


def start_here(name: str, storage: str, spec: SweepSpec, count: int) -> tuple[bool, str]:
    """Start ``count`` workers here: (whether they started, what happened, as a clause)."""
    problem = data_problem(spec.fixed.get("data"))
    if problem:
        return False, f"started no worker here: {problem}"
    try:
        pids = start_workers(name, storage, count)
    except (SweepError, OSError) as exc:
        return False, f"started no worker here: {'; '.join(problems_of(exc))}"
    mark_busy(name)
    logs = experiments_dir() / ".sweeps" / name
    return True, (f"started {len(pids)} worker{'' if len(pids) == 1 else 's'} here (pid "
                  f"{', '.join(map(str, pids))}; logs in `{logs}`)")


def create(token: str | None, storage: str) -> None:
    """Create the sweep of the form (a button callback), once per submission; every problem is
    listed under the button."""
    if token is None or st.session_state.get(TOKEN) != token:
        return
    if not actions_allowed():
        st.session_state[ERRORS] = ["sign in first: only signed-in users may create sweeps"]
        return
    name = st.session_state[key("name")].strip()
    spec = form_spec()
    problems = []
    if spec.fixed.get("data") and (problem := data_problem(spec.fixed["data"])):
        problems.append(problem)
    try:
        spec = spec.checked()
    except SweepError as exc:
        problems += exc.problems
    if not problems:
        try:
            spec = create_sweep(name, spec, storage)
        except (SweepError, OSError) as exc:
            problems += problems_of(exc)
    if problems:
        st.session_state[ERRORS] = problems
        return
    st.session_state[TOKEN] = None
    st.session_state[STUDY] = name
    st.query_params["study"] = name
    text = (f"Created sweep **{escape_markdown(name)}**: {spec.planned_trials} trials of "
            f"{ARCHITECTURES[spec.architecture].title}")
    count = int(st.session_state[key("workers")])
    started = True
    if count:
        started, clause = start_here(name, storage, spec, count)
        text += f"; {clause}"
    flash("success" if started else "warning", text + ".")


def grid_note(architecture: str) -> None:
    """The grid's size for the space as it stands, or why it cannot be counted yet."""
    space = form_space()
    try:
        size = grid_size(validate(space, architecture, form_fixed(space)))
    except SearchSpaceError:
        st.caption("Grid size: fix the search space below to see it.")
        return
    trials = int(st.session_state[key("trials")])
    st.caption(f"Grid of **{size}** points ({GRID_POINTS} values per range, every choice): "
               f"{min(trials, size)} trial{'' if min(trials, size) == 1 else 's'} run, each point once "
               f"at most.")


def new_sweep_form(storage: str, expanded: bool) -> None:
    if TOKEN not in st.session_state:
        new_submission()
    if key("name") not in st.session_state:
        st.session_state[key("name")] = default_name()
    with st.expander("New sweep", icon=":material/add:", expanded=expanded):
        first = st.columns([2, 2, 1, 2])
        first[0].text_input("Sweep name", key=key("name"), on_change=new_submission,
                            help="Up to 60 letters, digits, '.', '_' and '-'. Trials are the runs "
                                 "NAME-t000, NAME-t001, …")
        architecture = first[1].selectbox(
            PARAMETERS["architecture"].label, architecture_names(), key=key("architecture"),
            format_func=lambda name: ARCHITECTURES[name].title, on_change=new_submission)
        first[2].number_input("Trials", min_value=1, max_value=10_000, value=20, step=1, key=key("trials"),
                              on_change=new_submission, help="How many runs the sweep trains.")
        sampler = first[3].selectbox(
            "Sampler", SAMPLERS, key=key("sampler"), format_func=SAMPLER_TITLES.get,
            on_change=new_submission,
            help="TPE proposes settings near the best trials so far; random samples evenly; grid tries "
                 f"every combination of {GRID_POINTS} values per range and every choice.")
        st.toggle("Prune unpromising trials", value=True, key=key("pruning"), on_change=new_submission,
                  help="Median pruner on validation accuracy per epoch: a trial below the median of "
                       "the earlier trials at the same epoch is stopped (after "
                       f"{PRUNER_STARTUP_TRIALS} finished trials, from epoch {PRUNER_WARMUP_EPOCHS + 1}).")
        grid_slot = st.empty()  # filled once the space's widgets below are drawn
        fixed_settings(architecture)
        st.markdown("**Search space** · tick the settings to search (a range, or choices); every other "
                    "setting is the architecture's default. *Log* samples a range evenly in its "
                    "logarithm, for rates that span powers of ten.")
        space_editor()
        if sampler == "grid":
            with grid_slot:
                grid_note(architecture)
        create_controls(storage)


def fixed_settings(architecture: str) -> None:
    """The settings every trial shares."""
    st.markdown("**Every trial** · settings the trials share")
    columns = st.columns([1, 1, 3])
    epochs_searched = st.session_state.get(key("space", "epochs", "search"), False)
    columns[0].number_input(
        PARAMETERS["epochs"].label, min_value=1, max_value=10_000, value=SWEEP_EPOCHS, step=1,
        key=key("epochs"), on_change=new_submission, disabled=epochs_searched,
        help="Short trials compare settings; retrain the best one longer. "
             + ("Searched below." if epochs_searched else
                f"Default for {ARCHITECTURES[architecture].title}: "
                f"{TrainConfig.for_architecture(architecture).epochs}."))
    columns[1].number_input(PARAMETERS["max_train_samples"].label, min_value=0, max_value=10_000_000,
                            value=0, step=1000, key=key("max_train_samples"), on_change=new_submission,
                            help=sentence(PARAMETERS["max_train_samples"].full_help))
    columns[2].text_input(PARAMETERS["data"].label, key=key("data"), on_change=new_submission,
                          placeholder="empty: each worker's default (FER_DATA or data/)",
                          help="Only paths inside data/, FER_DATA or a folder listed in FER_DATA_ROOTS "
                               "are read, as on the Train page.")


def create_controls(storage: str) -> None:
    """Workers to start, the Create button and what came of the last click."""
    token = st.session_state[TOKEN]
    columns = st.columns([1, 1, 3], vertical_alignment="bottom")
    columns[0].number_input("Workers to start here now", min_value=0, max_value=MAX_WORKERS_HERE, value=1,
                            step=1, key=key("workers"), on_change=new_submission,
                            help="Background processes on this machine that run trials one after "
                                 "another (the run queue decides how many train at once). 0: start "
                                 "them later, here or on other machines.")
    columns[1].button("Create sweep", type="primary", icon=":material/tune:", on_click=create,
                      args=(token, storage), disabled=token is None or not actions_allowed())
    errors = st.session_state.pop(ERRORS, None)
    if errors:
        show_problems("Cannot create the sweep", errors)
    if token is None:
        st.button("Set up another sweep", on_click=another_sweep)


# ---- one study -----------------------------------------------------------------------------------

def sync_study() -> None:
    st.query_params["study"] = st.session_state[STUDY]


def choose_study(names: list[str]) -> str:
    """The study to show: the last one picked, else ?study=NAME, else the last in the list."""
    if st.session_state.get(STUDY) not in names:
        wanted = st.query_params.get("study")
        if wanted and wanted not in names:
            st.warning(f"There is no sweep {escape_markdown(wanted)!r} in this storage; if it lives in "
                       "another database, enter its URL above.")
        st.session_state[STUDY] = wanted if wanted in names else names[-1]
    return st.selectbox("Sweep", names, key=STUDY, on_change=sync_study)


def start_one(name: str, storage: str) -> None:
    """Start a worker of ``name`` here (a button callback)."""
    if refused("start sweep workers"):
        return
    try:
        _, spec = load_sweep(name, storage)
    except (SweepError, OSError) as exc:
        flash("error", "Cannot start a worker: " + "; ".join(problems_of(exc)))
        return
    started, clause = start_here(name, storage, spec, 1)
    flash("success" if started else "warning", clause[0].upper() + clause[1:] + ".")


def stop(name: str, storage: str) -> None:
    """Stop a sweep (a button callback)."""
    if refused("stop sweeps"):
        return
    try:
        stop_sweep(name, storage)
    except (SweepError, OSError) as exc:
        flash("error", "Cannot stop the sweep: " + "; ".join(problems_of(exc)))
        return
    flash("info", f"Stopping sweep {escape_markdown(name)}: no new trials; running trials stop within "
                  "seconds.")


def study_actions(name: str, storage: str, status: dict[str, Any]) -> None:
    locked = not actions_allowed()
    over = status["done"] or status["stopped"]
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button("Start a worker here", icon=":material/play_arrow:", disabled=locked or over,
                  on_click=start_one, args=(name, storage),
                  help="A background process here that runs trials until the sweep is done or stopped.")
        with st.popover("Stop sweep", icon=":material/stop:", disabled=locked or status["stopped"]):
            confirmed = st.checkbox(f"Yes, stop {name}: no new trials, running trials stop",
                                    key=f"sweep.confirm_stop.{name}")
            st.button("Stop now", type="primary", key=f"sweep.stop.{name}", disabled=locked or not confirmed,
                      on_click=stop, args=(name, storage))
        st.button("Refresh", icon=":material/refresh:")
    with st.expander("Add workers on other machines"):
        st.markdown("Every machine that can reach the storage can run trials (with fer-lab and the "
                    "dataset installed); on each one:")
        st.code(f"python -m fer.sweep --storage '{shown_storage(storage)}' worker --study {name}",
                language="bash", wrap_lines=True)
        if shown_storage(storage) != storage:
            st.caption("The storage's password is left out here: put it in the URL.")


def settings_caption(spec: dict[str, Any]) -> str:
    """Architecture, sampler, pruning, shared settings and searched ranges in one line."""
    architecture = ARCHITECTURES.get(spec["architecture"])
    parts = [architecture.title if architecture else spec["architecture"],
             SAMPLER_TITLES.get(spec["sampler"], spec["sampler"]).split(" (")[0] + " sampler",
             "pruning on" if spec["pruning"] else "no pruning"]
    parts += [f"{name} = {value}" for name, value in spec["fixed"].items()]
    for name, entry in spec["space"].items():
        if "choices" in entry:
            parts.append(f"searching {name} in {', '.join(map(str, entry['choices']))}")
        else:
            parts.append(f"searching {name} {entry['low']:g} to {entry['high']:g}"
                         f"{' (log)' if entry['log'] else ''}")
    return escape_markdown(" · ".join(parts))


def is_busy(name: str, status: dict[str, Any]) -> bool:
    """Whether to refresh the view: trials run or wait, or did within GRACE_S (or workers were
    started here), and the sweep is not done."""
    if status["counts"].get("running") or status["counts"].get("waiting"):
        mark_busy(name)
        return True
    seen = st.session_state.get(SEEN, {}).get(name, 0.0)
    return not status["done"] and time.time() - seen < GRACE_S


def status_line(status: dict[str, Any]) -> str:
    counts = status["counts"]
    order = sorted(counts, key=lambda state: list(TRIAL_COLORS).index(state) if state in TRIAL_COLORS else 99)
    parts = [f":{TRIAL_COLORS.get(state, 'gray')}-badge[{counts[state]} {state}]" for state in order]
    parts.append(f"{status['planned']} planned")
    if status["stopped"]:
        parts.append(":orange-badge[stopped]")
    elif status["done"]:
        parts.append(":blue-badge[done]")
    return " · ".join(parts) if counts else "No trials yet · " + " · ".join(parts)


def short(value: Any) -> Any:
    """A parameter value for a table: floats to four significant digits."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def params_text(params: dict[str, Any]) -> str:
    return " · ".join(f"`{name}` = {short(value)}" for name, value in params.items())


def best_trial(best: dict[str, Any] | None) -> None:
    if best is None:
        st.caption("No complete trial yet: the best one shows here.")
        return
    with st.container(border=True):
        left, right = st.columns([1, 3], vertical_alignment="center")
        left.metric("Best validation accuracy", percent(best["value"]),
                    help="The trial's best epoch on PublicTest (the test split never chooses).")
        right.markdown(f"**Best: trial {best['number']}** · run `{best['run'] or '–'}`  \n"
                       + params_text(best["params"]))
        if best["run"]:
            right.page_link("app_pages/evaluate.py", label="Evaluate this run", icon=":material/grid_on:",
                            query_params={"run": best["run"]})
            if right.button("Clone settings into Train", key="sweep.clone_best",
                            icon=":material/content_copy:",
                            help="Open the Train page with this trial's settings, e.g. to train it longer."):
                from app_pages.clone_link import request_clone  # switches to the Train page

                request_clone(best["run"])


def trials_frame(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial: number, state, value in percent, each parameter, run, host, error (or
    why a trial the study failed reads complete: its run finished after its worker died)."""
    names = list(dict.fromkeys(name for trial in trials for name in trial["params"]))
    rows = [{"trial": trial["number"], "state": trial["state"],
             "val acc": None if trial["value"] is None else trial["value"] * 100,
             **{name: short(trial["params"].get(name)) for name in names},
             "run": trial["run"], "host": trial["host"],
             "error": trial["error"] or trial.get("note")} for trial in trials]
    return pd.DataFrame(rows, columns=["trial", "state", "val acc", *names, "run", "host", "error"])


def trials_table(trials: list[dict[str, Any]]) -> None:
    frame = trials_frame(trials)
    # Four significant digits, not four decimals: a learning rate of 0.00014 must not read 0.0001.
    floats = {name: st.column_config.NumberColumn(format="%.4g") for name in frame.columns[3:-3]
              if any(isinstance(trial["params"].get(name), float) for trial in trials)}
    st.dataframe(frame, hide_index=True, placeholder="–", column_config={
        **floats, "val acc": st.column_config.NumberColumn(format="%.1f%%"),
        "run": st.column_config.TextColumn(help="The trial's run folder (Runs page)")})


@st.cache_data(max_entries=16, show_spinner="Drawing the charts…")
def study_figures(name: str, storage: str, finished: tuple) -> dict[str, Any]:
    """Optuna's charts of the study (``finished`` keys the cache: the finished trials); a text
    instead of the importances when they cannot be computed."""
    import optuna.visualization as charts

    study, _ = load_sweep(name, storage)
    target = "Validation accuracy"
    figures: dict[str, Any] = {
        "history": charts.plot_optimization_history(study, target_name=target),
        "parallel": charts.plot_parallel_coordinate(study, target_name=target),
    }
    if sum(state == "complete" for _, state, _ in finished) < 2:
        figures["importances"] = "Parameter importances need at least 2 complete trials."
    else:
        try:
            figures["importances"] = charts.plot_param_importances(study, target_name=target)
        except Exception as exc:  # noqa: BLE001 - too few or too alike trials: say so, draw the rest
            figures["importances"] = f"Parameter importances cannot be computed yet ({type(exc).__name__})."
    for figure in figures.values():
        if not isinstance(figure, str):
            figure.update_layout(height=380, margin={"t": 50, "b": 40})
    figures["history"].update_yaxes(tickformat=".0%")
    # The legend in a row above the plot, not over its points.
    figures["history"].update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02,
                                             "yanchor": "bottom"}, margin={"t": 80})
    if not isinstance(figures["importances"], str):
        # The bars' value labels may run past the axis into a right margin wide enough for them.
        figures["importances"].update_traces(cliponaxis=False)
        figures["importances"].update_layout(margin={"r": 50})
    figures["parallel"].update_layout(margin={"l": 110})  # room for the objective axis's title
    return figures


def study_charts(name: str, storage: str, status: dict[str, Any]) -> None:
    finished = tuple((trial["number"], trial["state"], trial["value"]) for trial in status["trials"]
                     if trial["state"] in FINISHED)
    if not any(state == "complete" for _, state, _ in finished):
        st.caption("The charts appear after the first complete trial.")
        return
    try:
        figures = study_figures(name, storage, finished)
    except (SweepError, OSError) as exc:
        show_problems("Cannot draw the charts", problems_of(exc))
        return
    left, right = st.columns(2)
    left.plotly_chart(figures["history"])
    if isinstance(figures["importances"], str):
        right.caption(figures["importances"])
    else:
        right.plotly_chart(figures["importances"])
    st.plotly_chart(figures["parallel"])


def study_view(name: str, storage: str, was_busy: bool) -> None:
    """Status, progress, best trial, trials and charts, read from the storage on every call."""
    try:
        status = sweep_status(name, storage)
    except (SweepError, OSError) as exc:
        show_problems("Cannot read the sweep", problems_of(exc))
        return
    if was_busy and not is_busy(name, status):
        st.rerun()  # The sweep went quiet: refresh the whole page and stop polling.
    st.markdown(status_line(status))
    finished = sum(status["counts"].get(state, 0) for state in FINISHED)
    st.progress(min(1.0, finished / status["planned"]),
                text=f"{finished} of {status['planned']} trials finished")
    best_trial(status["best"])
    if status["trials"]:
        trials_table(status["trials"])
    study_charts(name, storage, status)


def study_section(names: list[str], storage: str) -> None:
    name = choose_study(names)
    try:
        status = sweep_status(name, storage)
    except (SweepError, OSError) as exc:
        show_problems("Cannot read the sweep", problems_of(exc))
        return
    st.caption(settings_caption(status["spec"]))
    study_actions(name, storage, status)
    busy = is_busy(name, status)
    st.fragment(study_view, run_every=REFRESH_S if busy else None)(name, storage, busy)


st.title("Sweeps")
for kind, message in st.session_state.pop(FLASH, []):
    getattr(st, kind)(message)
st.caption("A sweep trains many runs with settings an Optuna sampler proposes and keeps the best "
           "validation accuracy; each trial is an ordinary run on the Runs page.")
if not actions_allowed():
    sign_in_notice("create, start or stop sweeps")
storage = storage_field()
names = read_sweeps(storage)
if names is None:
    st.stop()
if not names:
    st.info(f"No sweeps in `{shown_storage(storage)}` yet: create one below.")
new_sweep_form(storage, expanded=not names)
if names:
    study_section(names, storage)
