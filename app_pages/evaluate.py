"""Evaluate: accuracy, confusion matrix, per-class report and misclassified faces of a model."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import streamlit as st

from fer import CLASSES, DEFAULT_MODEL_DIR, PROJECT_ROOT
from fer.access import actions_allowed, sign_in_notice
from fer.architectures import ARCHITECTURES
from fer.data import SPLIT_TITLES
from fer.evaluate import eval_dir, read_evaluation_checked, read_misclassified
from fer.run_folder import ACTIVE_STATES, METRICS, MISCLASSIFIED, RunError, RunFolder
from fer.runs import list_runs, run_path
from fer.tta import TTA_MODES
from fer.ui import (
    GALLERY_PAGE_SIZE,
    TTA_TITLES,
    confusion_figure,
    escape_markdown,
    misclassified_caption,
    misclassified_order,
    percent,
    report_frame,
    run_file,
    upscale,
)

DEFAULT_KEY = "default"
SOURCE = "evaluate.source"


def has_model_or_evaluation(path: Path) -> bool:
    folder = RunFolder(path)
    return bool(run_file(folder.eval_dir(), METRICS) or run_file(folder.path, folder.model_file.name))


def sources() -> dict[str, tuple[str, Path]]:
    """key -> (label, folder) for the shipped model and every run with a model or an evaluation."""
    found: dict[str, tuple[str, Path]] = {}
    if has_model_or_evaluation(DEFAULT_MODEL_DIR):
        found[DEFAULT_KEY] = ("Shipped default model", DEFAULT_MODEL_DIR)
    for run in list_runs():
        if run.state in ACTIVE_STATES:
            continue
        if has_model_or_evaluation(run.path):
            found[run.run_id] = (f"{run.run_id} ({run.state})", run.path)
    return found


def requested_source(known: dict[str, tuple[str, Path]]) -> str | None:
    run_id = st.query_params.get("run")
    if not run_id:
        return None
    if run_id == DEFAULT_KEY and DEFAULT_KEY in known:
        return run_id
    try:
        run_path(run_id)
    except RunError as exc:
        st.warning(f"Ignored the run in the address: {exc}")
        return None
    if run_id not in known:
        st.warning(f"Ignored the run in the address: run {run_id!r} has no model or evaluation.")
        return None
    return run_id


def sync_query_params() -> None:
    st.query_params["run"] = st.session_state[SOURCE]




@st.cache_data(max_entries=4, show_spinner=False)
def misclassified(folder: str, tta: str, mtime: float) -> dict | None:
    # mtime is part of the cache key, so a re-evaluated run is read again.
    return read_misclassified(Path(folder), tta)


def evaluate_with_tta(folder: Path, mode: str) -> None:
    """Offer to evaluate ``folder``'s model with a TTA mode (its results are written to disk)."""
    st.info(f"This model has not been evaluated with {TTA_TITLES[mode].lower()} test-time "
            f"augmentation yet: the model sees {TTA_MODES[mode]} of every validation and test face "
            "and their predictions are averaged. This takes a minute or so on a CPU.")
    if not actions_allowed():
        sign_in_notice("run an evaluation")
        return
    if not st.button(f"Evaluate with {TTA_TITLES[mode].lower()} TTA", key=f"evaluate.run_tta.{mode}",
                     type="primary"):
        return
    from fer.data import DataError
    from fer.evaluate import evaluate_run
    from fer.predict import ModelError

    with st.spinner("Evaluating…"):
        try:
            evaluate_run(folder, tta=mode)
        except (DataError, ModelError, ValueError, OSError) as exc:
            st.error(f"Could not evaluate: {exc}")
            return
    misclassified.clear()
    st.rerun()


def damaged_evaluation(problems: list[str]) -> None:
    """The problems of a damaged metrics.json (nothing when there are none)."""
    if problems:
        listed = "\n".join(f"- {escape_markdown(problem)}" for problem in problems[:20])
        st.error(f"This evaluation's files are damaged and are not shown; evaluating again replaces "
                 f"them.\n{listed}")


def no_evaluation(folder: Path) -> None:
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


def summary(folder: Path, metrics: dict, baseline: dict | None = None) -> None:
    config, _ = RunFolder(folder).read_config_checked()
    architecture = ARCHITECTURES.get(config.get("architecture", ""))
    if architecture:
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


def split_details(metrics: dict) -> None:
    splits = [split for split in ("test", "val") if split in metrics["splits"]]
    split = st.segmented_control("Split", splits, default=splits[0], format_func=SPLIT_TITLES.get,
                                 required=True, key="evaluate.split")
    result = metrics["splits"][split]
    classes = metrics.get("classes", CLASSES)
    matrix, report = st.columns([3, 2])
    matrix.plotly_chart(confusion_figure(result["confusion_matrix"], classes,
                                         f"Confusion matrix, {SPLIT_TITLES[split]} (rows sum to 100%)"))
    with report:
        st.markdown("**Per-class precision, recall and F1**")
        table = report_frame(result["report"], classes)
        scores = ["precision", "recall", "F1"]
        table[scores] = table[scores] * 100
        st.dataframe(table, column_config={
            name: st.column_config.NumberColumn(format="%.1f%%") for name in scores})


def gallery(key: str, folder: Path, mode: str) -> None:
    st.subheader("Misclassified test faces")
    path = run_file(eval_dir(folder, mode), MISCLASSIFIED)
    data = misclassified(str(folder), mode, path.stat().st_mtime) if path else None
    if data is None:
        st.caption("No misclassified faces were saved for this model.")
        return
    true_filter, predicted_filter = st.columns(2)
    true_classes = true_filter.multiselect("True class", CLASSES, key=f"evaluate.true.{key}",
                                           placeholder="all classes")
    predicted_classes = predicted_filter.multiselect("Predicted class", CLASSES,
                                                     key=f"evaluate.predicted.{key}",
                                                     placeholder="all classes")
    order = misclassified_order(data["true"], data["predicted"], data["confidence"],
                                true_classes or CLASSES, predicted_classes or CLASSES)
    if len(order) == 0:
        st.caption("No misclassified face matches these filters.")
        return
    pages = math.ceil(len(order) / GALLERY_PAGE_SIZE)
    page = 1
    if pages > 1:
        filters = "-".join(true_classes) + "." + "-".join(predicted_classes)
        page = st.pagination(pages, key=f"evaluate.page.{key}.{filters}")
    shown = order[(page - 1) * GALLERY_PAGE_SIZE: page * GALLERY_PAGE_SIZE]
    st.caption(f"{len(order)} of {len(data['true'])} misclassified faces, most confident mistakes "
               f"first; showing {len(shown)} (page {page} of {pages}).")
    st.image([upscale(data["images"][i], 96) for i in shown], width=96,
             caption=[misclassified_caption(data["true"][i], data["predicted"][i], data["confidence"][i])
                      for i in shown])


st.title("Evaluate a model")
known = sources()
if not known:
    st.info("No run has a model yet. Train one first; it is evaluated when training finishes.")
    st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:")
    st.stop()

keys = list(known)
if SOURCE in st.session_state and st.session_state[SOURCE] not in known:
    del st.session_state[SOURCE]
requested = requested_source(known) if SOURCE not in st.session_state else None
key = st.selectbox("Model", keys, index=keys.index(requested) if requested else 0, key=SOURCE,
                   format_func=lambda k: known[k][0], on_change=sync_query_params)
folder = known[key][1]
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
    st.stop()

summary(folder, metrics, baseline if mode != "none" else None)
split_details(metrics)
gallery(key, folder, mode)
