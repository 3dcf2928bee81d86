"""Runs: every training run, live curves and progress, stop / resume / delete and downloads."""

from __future__ import annotations

import streamlit as st

from app_pages.access import actions_allowed, sign_in_notice
from app_pages.curves_view import live_curves
from app_pages.default_view import default_model_actions, fallback_notice, show_message
from app_pages.export_view import export_section
from app_pages.notes_view import notes_summary
from fer.architectures import ARCHITECTURES
from fer.evaluate import one_class_warning, read_evaluation
from fer.queue import max_runs, queue_positions
from fer.run_folder import ACTIVE_STATES, METRICS, RESUMABLE_STATES, RunError, RunFolder
from fer.runs import RunSummary, experiments_dir, list_runs, load_run, run_path
from fer.ui import (
    code_span,
    comparison_frame,
    escape_markdown,
    percent,
    read_run_file,
    run_file,
    run_row,
    runs_table,
    state_badge,
)
from fer.workers import delete, resume, stop

SELECTED = "runs.selected"
FLASH = "runs.flash"  # messages from button callbacks, shown once at the top
CHANGED = "runs.changed"  # a callback changed a run: refresh the whole page


def flash(kind: str, text: str) -> None:
    st.session_state.setdefault(FLASH, []).append((kind, text))


def sync_query_params() -> None:
    st.query_params["run"] = st.session_state.get(SELECTED, [])


def forget(run_id: str) -> None:
    selected = [rid for rid in st.session_state.get(SELECTED, []) if rid != run_id]
    st.session_state[SELECTED] = selected
    st.query_params["run"] = selected


def act(action: str, run_id: str) -> None:
    """Stop, resume or delete a run (a button callback); errors become messages, not tracebacks."""
    if not actions_allowed():  # the buttons are disabled too, but a click may still reach the server
        flash("warning", f"Sign in to {action} runs: run {run_id} was left as it is.")
        st.session_state[CHANGED] = True
        return
    try:
        path = run_path(run_id)
        if action == "stop":
            waiting = load_run(path).status.get("pid") is None
            stopped = stop(path)
            flash("info" if stopped else "warning",
                  (f"Removed run {run_id} from the queue." if waiting else
                   f"Asked run {run_id} to stop after the current batch.") if stopped
                  else f"Run {run_id} was not training.")
        elif action == "resume":
            resume(path)
            flash("success", f"Resumed run {run_id}.")
        elif action == "delete":
            kept = delete(path)
            forget(run_id)
            flash("success", f"Deleted run {run_id}." if kept is None else
                  f"Deleted run {run_id}: it was a link, now removed; the folder it pointed to is "
                  f"kept at `{kept}`.")
    except (RunError, OSError) as exc:
        flash("error", str(exc))
    st.session_state[CHANGED] = True


def requested_runs(known: list[str]) -> list[str]:
    """Run ids from ``?run=...``, validated; bad ones are reported and ignored."""
    valid = []
    for run_id in st.query_params.get_all("run"):
        try:
            run_path(run_id)
        except RunError as exc:
            st.warning(f"Ignored the run in the address: {escape_markdown(exc)}")
            continue
        if run_id in known:
            valid.append(run_id)
        else:
            st.warning(f"Ignored the run in the address: there is no run {code_span(run_id)}.")
    return valid


def queue_places(runs: list[RunSummary]) -> dict[str, int]:
    """run id -> its place in the queue, read only when one of ``runs`` is queued."""
    return queue_positions(experiments_dir()) if any(run.state == "queued" for run in runs) else {}


def status_line(run: RunSummary, queue: dict[str, int]) -> str:
    s, c = run.status, run.config
    parts = [state_badge(run.state)]
    if run.run_id in queue:
        parts.append(f"place {queue[run.run_id]} in the queue ({max_runs(experiments_dir())} "
                     "run(s) train at once; set it in the sidebar)")
    if run.state in ACTIVE_STATES and s.get("phase"):
        parts.append(str(s["phase"]))
    parts.append(f"{s.get('epochs_done', 0)}/{c.get('epochs', '?')} epochs")
    if s.get("best_val_accuracy") is not None:
        parts.append(f"best val accuracy {percent(s['best_val_accuracy'])} (epoch {s.get('best_epoch')})")
    if s.get("test_accuracy") is not None:
        parts.append(f"test accuracy {percent(s['test_accuracy'])}")
    minutes = run_row(run, queue)["duration (min)"]
    if minutes is not None:
        parts.append(f"{minutes} min")
    return " · ".join(parts)


def progress_bar(run: RunSummary) -> None:
    progress = RunFolder(run.path).read_progress()
    batches = progress.get("batches") or 0
    if run.state == "queued":
        # The last worker's final phase ("stopped") is still in progress.json: not this run's news.
        st.progress(0.0, text="queued: waiting for a free training slot…" if run.status.get("pid") is None
                    else "queued: starting the worker…")
        return
    if not batches:
        phase = progress.get("phase") or run.status.get("phase") or "starting"
        st.progress(0.0, text=f"{phase}…")
        return
    batch = min(int(progress.get("batch", 0)), batches)
    st.progress(batch / batches, text=f"Epoch {progress.get('epoch')}/{progress.get('epochs')} · "
                                      f"batch {batch}/{batches} · {progress.get('phase', '')}")


def run_actions(run: RunSummary) -> None:
    active = run.state in ACTIVE_STATES
    locked = not actions_allowed()  # act() checks again: disabling a button is only a courtesy
    with st.container(horizontal=True, vertical_alignment="center"):
        if active:
            st.button("Stop", key=f"stop.{run.run_id}", icon=":material/stop:", disabled=locked,
                      on_click=act, args=("stop", run.run_id))
        if run.state in RESUMABLE_STATES:
            st.button("Resume", key=f"resume.{run.run_id}", icon=":material/play_arrow:", disabled=locked,
                      on_click=act, args=("resume", run.run_id))
        if not active:
            with st.popover("Delete", icon=":material/delete:", disabled=locked):
                confirmed = st.checkbox(f"Yes, delete {run.run_id} and all its files",
                                        key=f"confirm.{run.run_id}")
                st.button("Delete permanently", key=f"delete.{run.run_id}", type="primary",
                          disabled=locked or not confirmed, on_click=act, args=("delete", run.run_id))
        folder = RunFolder(run.path)
        for name in (folder.model_file.name, folder.history_file.name):
            if run_file(run.path, name) is not None:
                st.download_button(
                    name, data=lambda name=name: read_run_file(run.path, name),
                    file_name=f"{run.run_id}-{name}", key=f"download.{name}.{run.run_id}",
                    mime="text/csv" if name.endswith(".csv") else "application/octet-stream",
                    icon=":material/download:", on_click="ignore")
        if run_file(folder.eval_dir(), METRICS) is not None:
            st.page_link("app_pages/evaluate.py", label="Evaluate", icon=":material/grid_on:",
                         query_params={"run": run.run_id})
        if not active and not run.problems:
            default_model_actions(run.run_id, run.path, key=f"default.{run.run_id}", changed=CHANGED)
        if st.button("Clone settings into Train", key=f"clone.{run.run_id}", icon=":material/content_copy:",
                     help="Open the Train page with this run's settings, to train a variant of it."):
            from app_pages.clone_link import request_clone  # switches to the Train page

            request_clone(run.run_id)


def damaged_notice(run: RunSummary) -> None:
    problems = "\n".join(f"- {escape_markdown(problem)}" for problem in run.problems[:20])
    more = f"\n- … and {len(run.problems) - 20} more" if len(run.problems) > 20 else ""
    st.error(f"The files of this run are damaged, so it cannot be resumed; what was read is shown. "
             f"Fix the files by hand or delete the run.\n{problems}{more}")


def run_card(run: RunSummary, queue: dict[str, int]) -> None:
    with st.container(border=True):
        architecture = ARCHITECTURES.get(run.architecture)
        st.markdown(f"#### {run.run_id}")
        st.markdown(status_line(run, queue))
        if run.problems:
            damaged_notice(run)
        row = run_row(run)
        details = [architecture.title if architecture else run.architecture,
                   f"{row['backend']} on {row['device']}" if row["device"] else row["backend"]]
        if run.status.get("train_size"):
            details.append(f"{run.status['train_size']} training / {run.status.get('val_size')} validation / "
                           f"{run.status.get('test_size')} test faces")
        if run.status.get("data_source"):
            details.append(f"data `{run.status['data_source']}`")
        tag = RunFolder(run.path).read_sweep_tag()
        if tag:
            details.append(f"trial {tag['trial']} of sweep {escape_markdown(tag['study'])}")
        st.caption(" · ".join(details))
        if tag:
            st.page_link("app_pages/sweep.py", label=f"Sweep {tag['study']}", icon=":material/tune:",
                         query_params={"study": tag["study"]})
        notes_summary(run)  # tags and notes (notes.json), edited on the Compare page
        if run.state in ACTIVE_STATES:
            progress_bar(run)
        if run.status.get("error"):
            st.error(run.status["error"])
        if run.status.get("note"):
            st.info(run.status["note"])
        evaluation = read_evaluation(run.path) if run_file(RunFolder(run.path).eval_dir(), METRICS) else None
        if evaluation and (hint := one_class_warning(evaluation)):
            st.warning(hint, icon=":material/warning:")
        run_actions(run)
        export_section(run.path, run.run_id)  # export and download as .keras, SavedModel, LiteRT, ONNX
        with st.expander("Log (last lines of train.log)"):
            st.code(RunFolder(run.path).read_log_tail(40) or "(empty)", language="text")


def selection(known: list[str]) -> list[str]:
    """The runs to show: the multiselect, first filled from ``?run=`` (or the newest run)."""
    if SELECTED in st.session_state:
        st.session_state[SELECTED] = [rid for rid in st.session_state[SELECTED] if rid in known]
        return st.multiselect("Runs to show", known, key=SELECTED, on_change=sync_query_params)
    return st.multiselect("Runs to show", known, default=requested_runs(known) or known[:1],
                          key=SELECTED, on_change=sync_query_params)


def live_page(was_active: bool) -> None:
    """Everything on the page that changes: the table, the selection, curves, progress and status
    of the selected runs, read from the run folders on every call."""
    if st.session_state.pop(CHANGED, False):
        st.rerun()  # A button in this fragment changed a run: refresh the whole page.
    runs = list_runs(reuse=True)
    if any(run.state in ACTIVE_STATES for run in runs) != was_active:
        st.rerun()  # A run started or ended: poll at the rate that fits.
    if not runs:
        st.info("No runs yet.")
        st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:")
        return
    queue = queue_places(runs)
    st.dataframe(runs_table([run_row(run, queue) for run in runs]), hide_index=True, placeholder="–",
                 column_config={"best val acc": st.column_config.NumberColumn(format="%.1f%%"),
                                "test acc": st.column_config.NumberColumn(format="%.1f%%")})
    st.button("Refresh", icon=":material/refresh:")
    if not actions_allowed():
        sign_in_notice("stop, resume or delete runs")
    by_id = {run.run_id: run for run in runs}
    selected = [by_id[run_id] for run_id in selection(list(by_id))]
    if not selected:
        st.info("Select one or more runs to see their curves and status.")
        return
    histories = {run.run_id: RunFolder(run.path).read_history() for run in selected}
    live_curves(selected, histories)  # time left, CPU and memory of runs in training; curves
    for run in selected:
        run_card(run, queue)
    st.markdown("**Settings and results**")
    st.table(comparison_frame(selected))


st.title("Runs")
st.session_state.pop(CHANGED, None)  # This full run reads everything afresh.
for kind, text in st.session_state.pop(FLASH, []):
    getattr(st, kind)(text)
show_message()
fallback_notice()

# A new epoch must show within 2 s of being written (bench/dashboard.py measures it): polling every
# second keeps the worst case at one interval plus the fragment's own render time. With no run
# training the page still looks every few seconds, so that a run started elsewhere (another tab,
# the command line, a sweep) appears and the page switches to polling every second.
LIVE_REFRESH_S = 1.0
IDLE_REFRESH_S = 5.0
active = any(run.state in ACTIVE_STATES for run in list_runs(reuse=True))
st.fragment(live_page, run_every=LIVE_REFRESH_S if active else IDLE_REFRESH_S)(active)
