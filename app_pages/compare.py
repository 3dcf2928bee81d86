"""Compare: every run's hyperparameters against its best validation accuracy (parallel coordinates),
filtered by state, architecture and tag, and each run's tags and notes, edited here."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.access import actions_allowed, sign_in_notice
from app_pages.notes_view import notes_editor
from fer.config import PARAMETERS
from fer.run_folder import RunFolder
from fer.runs import list_runs
from fer.ui import TARGET, filter_runs, parallel_figure, parameter_frame, spreadsheet_safe, varying_parameters

NOTE_CHARS = 80  # of a run's notes in the table: the start of the first line

st.title("Compare runs")
runs = list_runs()
if not runs:
    st.info("No runs yet: train a few, then compare their settings and results here.")
    st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:")
    st.stop()

notes = {run.run_id: RunFolder(run.path).read_notes() for run in runs}
tags = {run_id: note.tags for run_id, note in notes.items()}
known_tags = sorted({tag for note in notes.values() for tag in note.tags}, key=str.casefold)

with st.container(horizontal=True):
    states = st.multiselect("State", sorted({run.state for run in runs}), key="compare.states",
                            placeholder="All states")
    architectures = st.multiselect("Architecture", sorted({run.architecture for run in runs}),
                                   key="compare.architectures", placeholder="All architectures")
    wanted = st.multiselect("Tags", known_tags, key="compare.tags", placeholder="Any tags",
                            help="Runs with at least one of these tags (add tags below).")
shown = filter_runs(runs, tags, states, architectures, wanted)
frame = parameter_frame(shown)
parameters = [column for column in frame.columns if column not in ("state", TARGET)]
axes = st.multiselect("Axes", parameters, default=varying_parameters(parameter_frame(runs)),
                      key="compare.axes", format_func=lambda key: getattr(PARAMETERS.get(key), "label", key),
                      help="Hyperparameters to draw; the best validation accuracy is always the last axis. "
                           "By default: those that differ between the runs.")

scored = frame[TARGET].notna()
if not shown:
    st.info("No run matches these filters.")
elif not scored.any():
    st.info("None of these runs has finished an epoch yet: the chart shows runs with a validation "
            "accuracy.")
else:
    st.plotly_chart(parallel_figure(frame, axes), key="compare.parallel")
    left_out = list(frame.index[~scored])
    st.caption(f"{int(scored.sum())} runs, coloured by best validation accuracy. Drag "
               "along an axis to keep only the runs in that range (click the axis outside it to "
               "clear), drag an axis' title to move it."
               + (f" Left out, with no validation accuracy yet: {', '.join(left_out)}." if left_out else ""))

if shown:
    table = pd.DataFrame({
        # Notes and tags are anyone's text: the table's "Download as CSV" must not carry formulas.
        "run": [spreadsheet_safe(run.run_id) for run in shown],
        "state": [run.state for run in shown],
        "tags": [spreadsheet_safe(", ".join(tags[run.run_id])) for run in shown],
        "notes": [spreadsheet_safe((notes[run.run_id].text.splitlines() or [""])[0][:NOTE_CHARS])
                  for run in shown],
        "best val acc": pd.to_numeric(frame[TARGET], errors="coerce").to_numpy() * 100,
        "test acc": [run.status.get("test_accuracy") for run in shown],
        **{key.replace("_", " "): ["–" if value is None or value != value else str(value)
                                   for value in frame[key]] for key in axes},
    })
    table["test acc"] = pd.to_numeric(table["test acc"], errors="coerce") * 100
    st.dataframe(table, hide_index=True, placeholder="–", column_config={
        "best val acc": st.column_config.NumberColumn(format="%.1f%%"),
        "test acc": st.column_config.NumberColumn(format="%.1f%%"),
    })

st.subheader("Tags and notes")
known = [run.run_id for run in runs]
requested = st.query_params.get("run")
run_id = st.selectbox("Run", known, key="compare.run",
                      index=known.index(requested) if requested in known else 0,
                      on_change=lambda: st.query_params.update(run=st.session_state["compare.run"]))
run = next(run for run in runs if run.run_id == run_id)
if not actions_allowed():
    sign_in_notice("edit tags and notes")
notes_editor(run, known_tags)
st.page_link("app_pages/runs.py", label=f"Open {run_id} on the Runs page", icon=":material/monitoring:",
             query_params={"run": run_id})
