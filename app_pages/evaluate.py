"""Evaluate: accuracy, confusion matrix, per-class report and misclassified faces of a model."""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path

import streamlit as st

from app_pages.access import actions_allowed, sign_in_notice
from app_pages.default_view import default_model_actions, fallback_notice, show_message
from app_pages.explain_view import gallery_pictures
from app_pages.export_view import export_section
from fer import CLASSES, DEFAULT_MODEL_DIR, PROJECT_ROOT
from fer.architectures import ARCHITECTURES
from fer.data import SPLIT_TITLES
from fer.default_model import current_default
from fer.ensemble import (
    MAX_MEMBERS,
    MIN_MEMBERS,
    EnsembleError,
    find_ensembles,
    is_ensemble,
    make_ensemble,
    model_file,
    read_manifest,
)
from fer.ensemble import summary as ensemble_summary
from fer.evaluate import (
    JOB_ACTIVE_STATES,
    EvaluationJobError,
    eval_dir,
    one_class_warning,
    read_evaluation_checked,
    read_job,
    read_misclassified,
    start_job,
    stop_job,
)
from fer.run_folder import ACTIVE_STATES, METRICS, MISCLASSIFIED, RunError, RunFolder
from fer.runs import list_runs, run_path
from fer.tta import TTA_MODES
from fer.ui import (
    GALLERY_PAGE_SIZE,
    TTA_TITLES,
    code_span,
    confusion_difference_figure,
    confusion_figure,
    escape_markdown,
    f1_delta_figure,
    f1_delta_frame,
    job_progress,
    misclassified_caption,
    misclassified_order,
    percent,
    report_frame,
    run_file,
    selected_cell,
)

DEFAULT_KEY = "default"
SOURCE = "evaluate.source"
PICK = "evaluate.pick"  # a model to pick on the next run (a new ensemble)
# How often the progress of a background evaluation is read again (seconds).
JOB_REFRESH_S = 1.0


def has_model_or_evaluation(path: Path) -> bool:
    folder = RunFolder(path)
    return bool(run_file(folder.eval_dir(), METRICS) or run_file(folder.path, model_file(path).name))


def sources() -> dict[str, tuple[str, Path]]:
    """key -> (label, folder) for the shipped model, every run with a model or an evaluation, and
    every ensemble."""
    found: dict[str, tuple[str, Path]] = {}
    if has_model_or_evaluation(DEFAULT_MODEL_DIR):
        found[DEFAULT_KEY] = ("Shipped default model", DEFAULT_MODEL_DIR)
    for run in list_runs():
        if run.state in ACTIVE_STATES:
            continue
        if has_model_or_evaluation(run.path):
            found[run.run_id] = (f"{run.run_id} ({run.state})", run.path)
    for folder in find_ensembles():
        found.setdefault(folder.name, (f"{folder.name} ({ensemble_summary(folder)})", folder))
    return found


def ensemble_candidates(known: dict[str, tuple[str, Path]]) -> dict[str, str]:
    """run id -> label of the runs whose networks can join an ensemble (a model.keras, not training)."""
    return {key: label for key, (label, folder) in known.items()
            if key != DEFAULT_KEY and not is_ensemble(folder)
            and run_file(folder, RunFolder(folder).model_file.name) is not None}


def make_ensemble_section(known: dict[str, tuple[str, Path]]) -> None:
    """"Make an ensemble of these runs": choose runs and a name; the ensemble is made (its members'
    files checked and copied) and evaluated in the background, then shown here."""
    candidates = ensemble_candidates(known)
    with st.expander("Make an ensemble of these runs", icon=":material/join:"):
        st.caption("An ensemble averages the probabilities of several runs' networks: usually a point "
                   "or two more accurate than its best member, and as many times slower. It is kept as "
                   "a folder of copies of the members' models beside the runs, and can be evaluated, "
                   "used on Predict and exported like a run.")
        if len(candidates) < MIN_MEMBERS:
            st.caption(f"It needs at least {MIN_MEMBERS} runs with a model; "
                       f"{'one is' if len(candidates) == 1 else f'{len(candidates)} are'} here.")
            return
        if not actions_allowed():
            sign_in_notice("make an ensemble")
            return
        with st.form("evaluate.ensemble"):
            chosen = st.multiselect("Runs", list(candidates), format_func=candidates.get,
                                    max_selections=MAX_MEMBERS, key="evaluate.ensemble.runs")
            name = st.text_input("Name", value=f"ensemble-{time.strftime('%Y%m%d-%H%M%S')}",
                                 key="evaluate.ensemble.name", max_chars=100)
            submitted = st.form_submit_button("Make the ensemble", icon=":material/join:", type="primary")
        if not submitted:
            return
        try:
            folder = make_ensemble([known[key][1] for key in chosen], name.strip())
        except EnsembleError as exc:
            st.error(f"Could not make the ensemble: {escape_markdown(str(exc))}")
            return
        from fer.predict import ModelError

        try:
            start_job(folder, "none")
        except (EvaluationJobError, ModelError, OSError) as exc:
            st.warning(f"Made {escape_markdown(folder.name)}, but could not start its evaluation: "
                       f"{escape_markdown(str(exc))}")
        st.session_state[PICK] = folder.name  # picked on the next run, before the picker is drawn
        st.rerun()


def requested_source(known: dict[str, tuple[str, Path]]) -> str | None:
    run_id = st.query_params.get("run")
    if not run_id:
        return None
    if run_id == DEFAULT_KEY and DEFAULT_KEY in known:
        return run_id
    try:
        run_path(run_id)
    except RunError as exc:
        st.warning(f"Ignored the run in the address: {escape_markdown(exc)}")
        return None
    if run_id not in known:
        st.warning(f"Ignored the run in the address: run {code_span(run_id)} has no model or evaluation.")
        return None
    return run_id


def sync_query_params() -> None:
    st.query_params["run"] = st.session_state[SOURCE]




@st.cache_data(max_entries=4, show_spinner=False)
def misclassified(folder: str, tta: str, mtime: float) -> dict | None:
    # mtime is part of the cache key, so a re-evaluated run is read again.
    return read_misclassified(Path(folder), tta)


def evaluate_with_tta(folder: Path, mode: str) -> None:
    """Offer to evaluate ``folder``'s model with a TTA mode in the background, or show the progress
    of the evaluation under way (its results are written to disk)."""
    job = read_job(folder, mode)
    state = job.get("state", "")
    if state in JOB_ACTIVE_STATES:
        evaluation_progress(str(folder), mode)
        return
    title = TTA_TITLES[mode].lower()
    if mode == "none":
        st.info("This ensemble has not been evaluated yet: every member sees every validation and "
                "test face and their probabilities are averaged. It runs in the background; this page "
                "and the rest of the dashboard stay usable meanwhile.")
    else:
        st.info(f"This model has not been evaluated with {title} test-time augmentation yet: the model "
                f"sees {TTA_MODES[mode]} of every validation and test face and their predictions are "
                "averaged. It runs in the background and takes a few minutes on a CPU; this page and the "
                "rest of the dashboard stay usable meanwhile.")
    done = f" (batch {job.get('batch') or 0} of {job['batches']})" if job.get("batches") else ""
    if state == "stopped":
        st.warning(f"The last {title} evaluation was stopped before it finished{done}.")
    elif state == "interrupted":
        st.warning(f"The last {title} evaluation ended without finishing{done}: its process was killed "
                   "or the computer restarted. Evaluate again.")
    elif state == "failed":
        st.error(f"Could not evaluate: {escape_markdown(job.get('error') or 'unknown error')}")
    if not actions_allowed():
        sign_in_notice("run an evaluation")
        return
    label = "Evaluate this ensemble" if mode == "none" else f"Evaluate with {title} TTA"
    if not st.button(label, key=f"evaluate.run_tta.{mode}", type="primary"):
        return
    from fer.predict import ModelError

    try:
        start_job(folder, mode)
    except EvaluationJobError:
        pass  # started meanwhile (another click or another browser): its progress shows
    except (ModelError, ValueError, OSError) as exc:
        st.error(f"Could not evaluate: {exc}")
        return
    st.rerun()


@st.fragment(run_every=JOB_REFRESH_S)
def evaluation_progress(folder: str, mode: str) -> None:
    """The live progress of the background evaluation of ``folder``'s model with ``mode``, with Stop;
    the whole page is shown again when it ends."""
    job = read_job(Path(folder), mode)
    if job.get("state") not in JOB_ACTIVE_STATES:
        misclassified.clear()
        st.rerun()
    fraction, text = job_progress(job)
    stopping = RunFolder(folder).eval_stop_requested(mode)
    if stopping:
        text = "Stopping after the batch in progress…"
    what = "without" if mode == "none" else f"with {TTA_TITLES[mode].lower()}"
    st.progress(fraction, text=f"Evaluating {what} test-time augmentation: {text}")
    st.caption("It runs in the background: leave this page or use the rest of the dashboard "
               "meanwhile; its results show here when it is done.")
    if stopping:
        return
    if not actions_allowed():
        sign_in_notice("stop an evaluation")
        return
    if st.button("Stop the evaluation", key=f"evaluate.stop_tta.{mode}", icon=":material/stop:"):
        stop_job(Path(folder), mode)
        st.rerun(scope="fragment")


def damaged_evaluation(problems: list[str]) -> None:
    """The problems of a damaged metrics.json (nothing when there are none)."""
    if problems:
        listed = "\n".join(f"- {escape_markdown(problem)}" for problem in problems[:20])
        st.error(f"This evaluation's files are damaged and are not shown; evaluating again replaces "
                 f"them.\n{listed}")


def no_evaluation(folder: Path) -> None:
    if is_ensemble(folder):
        evaluate_with_tta(folder, "none")
        return
    try:
        shown = folder.relative_to(PROJECT_ROOT)
    except ValueError:
        shown = folder
    st.info(
        "This model has no evaluation yet: a run is evaluated on its validation and test splits "
        "when its training finishes. Resume it on the Runs page to let it finish, or evaluate the "
        "best model it saved so far from a terminal; this writes the evaluation this page shows:"
    )
    st.code(f"python -m fer.evaluate --run {shlex.quote(str(shown))}", language="bash")


def ensemble_members(folder: Path) -> None:
    """The members of an ensemble: where each came from and its validation accuracy."""
    try:
        members = read_manifest(folder)["members"]
    except EnsembleError as exc:
        st.error(escape_markdown(str(exc)))
        return
    rows = [{"member": member["name"], "architecture": member.get("architecture"),
             "validation accuracy": member.get("val_accuracy"),
             "ten-crop side": member.get("crop") or None} for member in members]
    st.caption(f"Ensemble of {len(members)} networks; its probabilities are their average.")
    st.dataframe(rows, hide_index=True, column_config={
        "validation accuracy": st.column_config.NumberColumn(format="percent")})


def summary(folder: Path, metrics: dict, baseline: dict | None = None) -> None:
    config, _ = RunFolder(folder).read_config_checked()
    architecture = ARCHITECTURES.get(config.get("architecture", ""))
    if is_ensemble(folder):
        ensemble_members(folder)
    elif architecture:
        st.caption(f"{architecture.title} · up to {config.get('epochs', '?')} epochs · "
                   f"batch {config.get('batch_size', '?')} · {config.get('optimizer', '?')} "
                   f"lr {config.get('learning_rate', '?')}")
    columns = st.columns(len(metrics["splits"]) + 1)
    for column, split in zip(columns, ("val", "test"), strict=False):
        if split not in metrics["splits"]:
            continue
        result = metrics["splits"][split]
        description = metrics.get(f"{split}_description") or SPLIT_TITLES[split]
        base = (baseline or {}).get("splits", {}).get(split, {}).get("accuracy")
        delta = f"{(result['accuracy'] - base) * 100:+.1f} points vs no TTA" if base is not None else None
        column.metric(f"{SPLIT_TITLES[split]} accuracy", percent(result["accuracy"]), delta=delta,
                      help=f"{result['n']} faces: {description}", border=True)
        column.caption(f"{result['n']} faces · {escape_markdown(description)}")


def filter_keys(key: str) -> tuple[str, str]:
    """The session keys of the gallery's true-class and predicted-class filters for model ``key``."""
    return f"evaluate.true.{key}", f"evaluate.predicted.{key}"


def matrix_key(key: str, mode: str, split: str) -> str:
    """The confusion matrix chart's key; "clear filter" changes it, which clears its selection."""
    return f"evaluate.matrix.{key}.{mode}.{split}.{st.session_state.get(f'evaluate.nonce.{key}', 0)}"


def apply_cell(key: str, chart: str, cell: tuple[str, str] | None) -> None:
    """Filter the gallery to a newly clicked confusion-matrix cell (true, predicted). A cell is
    applied once, so the filters can be changed afterwards while it stays selected."""
    applied = f"evaluate.applied.{chart}"
    if cell is None:
        st.session_state.pop(applied, None)
        return
    if st.session_state.get(applied) == cell:
        return
    st.session_state[applied] = cell
    true_key, predicted_key = filter_keys(key)
    st.session_state[true_key], st.session_state[predicted_key] = [cell[0]], [cell[1]]


def clear_filters(key: str) -> None:
    true_key, predicted_key = filter_keys(key)
    st.session_state[true_key], st.session_state[predicted_key] = [], []
    nonce = f"evaluate.nonce.{key}"
    st.session_state[nonce] = st.session_state.get(nonce, 0) + 1


def split_details(key: str, metrics: dict, mode: str) -> str:
    """The split's confusion matrix (click a cell to filter the gallery) and report; returns the split."""
    splits = [split for split in ("test", "val") if split in metrics["splits"]]
    split = st.segmented_control("Split", splits, default=splits[0], format_func=SPLIT_TITLES.get,
                                 required=True, key="evaluate.split")
    result = metrics["splits"][split]
    classes = metrics.get("classes", CLASSES)
    matrix, report = st.columns([3, 2])
    chart = matrix_key(key, mode, split)
    event = matrix.plotly_chart(
        confusion_figure(result["confusion_matrix"], classes,
                         f"Confusion matrix, {SPLIT_TITLES[split]} (rows sum to 100%)", selectable=True),
        key=chart, on_select="rerun", selection_mode="points")
    apply_cell(key, chart, selected_cell((event or {}).get("selection"), classes))
    matrix.caption("Click a cell to see its misclassified test faces in the gallery below (or choose "
                   "the classes there)." + (" The gallery holds test faces only." if split != "test" else ""))
    with report:
        st.markdown("**Per-class precision, recall and F1**")
        table = report_frame(result["report"], classes)
        scores = ["precision", "recall", "F1"]
        table[scores] = table[scores] * 100
        st.dataframe(table, column_config={
            name: st.column_config.NumberColumn(format="%.1f%%") for name in scores})
    return split


def gallery(key: str, folder: Path, mode: str) -> None:
    st.subheader("Misclassified test faces")
    path = run_file(eval_dir(folder, mode), MISCLASSIFIED)
    data = misclassified(str(folder), mode, path.stat().st_mtime) if path else None
    if data is None:
        st.caption("No misclassified faces were saved for this model.")
        return
    true_key, predicted_key = filter_keys(key)
    true_filter, predicted_filter, clear = st.columns([5, 5, 2], vertical_alignment="bottom")
    true_classes = true_filter.multiselect("True class", CLASSES, key=true_key, placeholder="all classes")
    predicted_classes = predicted_filter.multiselect("Predicted class", CLASSES, key=predicted_key,
                                                     placeholder="all classes")
    clear.button("Clear filter", key=f"evaluate.clear.{key}", on_click=clear_filters, args=(key,),
                 disabled=not (true_classes or predicted_classes), icon=":material/filter_alt_off:")
    order = misclassified_order(data["true"], data["predicted"], data["confidence"],
                                true_classes or CLASSES, predicted_classes or CLASSES)
    if len(order) == 0:
        same = len(true_classes) == len(predicted_classes) == 1 and true_classes == predicted_classes
        st.caption("That cell holds the faces classified correctly; the gallery shows mistakes only."
                   if same else "No misclassified face matches these filters.")
        return
    pages = math.ceil(len(order) / GALLERY_PAGE_SIZE)
    page = 1
    if pages > 1:
        filters = "-".join(true_classes) + "." + "-".join(predicted_classes)
        page = st.pagination(pages, key=f"evaluate.page.{key}.{filters}")
    shown = order[(page - 1) * GALLERY_PAGE_SIZE: page * GALLERY_PAGE_SIZE]
    st.caption(f"{len(order)} of {len(data['true'])} misclassified faces, most confident mistakes "
               f"first; showing {len(shown)} (page {page} of {pages}).")
    st.image(gallery_pictures(f"evaluate.gradcam.{key}", folder, data, shown), width=96,
             caption=[misclassified_caption(data["true"][i], data["predicted"][i], data["confidence"][i])
                      for i in shown])


def short_name(key: str) -> str:
    return "shipped model" if key == DEFAULT_KEY else key


def comparison(key: str, metrics: dict, mode: str, split: str) -> None:
    """This model against a second one: both confusion matrices, their difference and the change
    of F1 per class, on the same split (and test-time augmentation when the second has it)."""
    st.subheader("Compare with another model")
    others = [other for other in known if other != key]
    if not others:
        st.caption("Train another model to compare it with this one.")
        return
    other = st.selectbox("Second model", others, index=None, key=f"evaluate.compare.{key}",
                         format_func=lambda k: known[k][0], placeholder="Choose a model to compare")
    if other is None:
        return
    other_metrics, problems = read_evaluation_checked(known[other][1], mode)
    if other_metrics is None and not problems and mode != "none":
        other_metrics, problems = read_evaluation_checked(known[other][1])
        if other_metrics is not None:
            st.caption(f"{escape_markdown(other)} has no {TTA_TITLES[mode].lower()} evaluation: "
                       "compared with its evaluation without test-time augmentation.")
    if other_metrics is None:
        damaged_evaluation(problems)
        if not problems:
            st.info(f"{escape_markdown(known[other][0])} has no evaluation yet.")
        return
    classes = metrics.get("classes", CLASSES)
    if other_metrics.get("classes", CLASSES) != classes or split not in other_metrics["splits"]:
        st.info(f"{escape_markdown(known[other][0])} was evaluated on other classes or splits; "
                "it cannot be compared with this model.")
        return
    mine, theirs = metrics["splits"][split], other_metrics["splits"][split]
    names = (short_name(key), short_name(other))
    if mine["n"] != theirs["n"]:
        st.warning(f"The two evaluations used different faces ({mine['n']} and {theirs['n']}): "
                   "the models were evaluated on different data, so the comparison is rough.")
    first, second = st.columns(2)
    for column, name, result in ((first, names[0], mine), (second, names[1], theirs)):
        column.metric(f"{name}: {SPLIT_TITLES[split]} accuracy", percent(result["accuracy"]), border=True,
                      delta=None if result is theirs else
                      f"{(mine['accuracy'] - theirs['accuracy']) * 100:+.1f} points vs {names[1]}")
        title = f"{name}, {SPLIT_TITLES[split]}"
        column.plotly_chart(confusion_figure(result["confusion_matrix"], classes, title, tickangle=-45),
                            key=f"evaluate.compare_matrix.{name}")
    difference, f1 = st.columns([3, 2])
    difference.plotly_chart(confusion_difference_figure(mine["confusion_matrix"], theirs["confusion_matrix"],
                                                        names, classes))
    frame = f1_delta_frame(mine["report"], theirs["report"], names, classes)
    # As tall as the difference matrix beside it; the table goes below both, where its columns fit.
    f1.plotly_chart(f1_delta_figure(frame).update_layout(height=520))
    labels = {frame.columns[0]: f"F1 of {names[0]}", frame.columns[1]: f"F1 of {names[1]}"}
    st.dataframe(frame * 100, column_config={
        **{column: st.column_config.NumberColumn(label, format="%.1f") for column, label in labels.items()},
        frame.columns[-1]: st.column_config.NumberColumn("change (points)", format="%+.1f")})
    st.caption(f"Blue cells and green bars: {escape_markdown(names[0])} has the larger share or the better "
               f"F1; red: {escape_markdown(names[1])}. Differences are in percentage points.")


st.title("Evaluate a model")
known = sources()
if not known:
    st.info("No run has a model yet. Train one first; it is evaluated when training finishes.")
    st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:")
    st.stop()

keys = list(known)
if st.session_state.get(PICK) in known:
    st.session_state[SOURCE] = st.session_state.pop(PICK)
    sync_query_params()
if SOURCE in st.session_state and st.session_state[SOURCE] not in known:
    del st.session_state[SOURCE]
requested = requested_source(known) if SOURCE not in st.session_state else None
fallback_notice()
chosen_default = current_default().source  # the page starts from the default model
start = requested or (chosen_default if chosen_default in known else None)
key = st.selectbox("Model", keys, index=keys.index(start) if start else 0, key=SOURCE,
                   format_func=lambda k: known[k][0] + (" · the default" if k == chosen_default else ""),
                   on_change=sync_query_params)
folder = known[key][1]
show_message()
if key != DEFAULT_KEY:
    with st.container(horizontal=True, vertical_alignment="center"):
        default_model_actions(key, folder, key=f"evaluate.default.{key}")
make_ensemble_section(known)
export_section(folder, key)  # export and download as .keras, SavedModel, LiteRT, ONNX
baseline, problems = read_evaluation_checked(folder)
if baseline is None:
    damaged_evaluation(problems)
    no_evaluation(folder)
    st.stop()

mode = st.segmented_control(
    "Test-time augmentation", list(TTA_MODES), default="none", required=True, key="evaluate.tta",
    format_func=TTA_TITLES.get,
    help="; ".join(f"{TTA_TITLES[name]}: {text}" for name, text in TTA_MODES.items()))
metrics, problems = (baseline, []) if mode == "none" else read_evaluation_checked(folder, mode)
if metrics is None:
    damaged_evaluation(problems)
    evaluate_with_tta(folder, mode)
    st.divider()
    st.caption("Meanwhile, the results without test-time augmentation:")
    mode, metrics = "none", baseline

summary(folder, metrics, baseline if mode != "none" else None)
if hint := one_class_warning(metrics):
    st.warning(hint, icon=":material/warning:")
split = split_details(key, metrics, mode)
gallery(key, folder, mode)
comparison(key, metrics, mode, split)
