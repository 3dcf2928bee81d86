"""The Export section of the Runs and Evaluate pages: export a model to .keras, SavedModel, LiteRT or
ONNX in a background process (fer.export), follow it, and download each verified file.

Not a page of its own: the pages call ``export_section``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app_pages.access import actions_allowed
from fer.ensemble import model_file
from fer.export import (
    ACTIVE,
    ALL,
    FORMATS,
    ExportError,
    export_folder,
    job_state,
    model_stamp,
    start_export,
    stop_export,
)
from fer.files import read_tail
from fer.ui import escape_markdown, format_bytes, format_duration, read_run_file, run_file

# While an export runs its progress is read from its job.json this often.
REFRESH_S = 1.0
CHOICES = [ALL, *FORMATS]
CHOICE_TITLES = {ALL: "All four formats", **{name: spec.title for name, spec in FORMATS.items()}}


def message_key(key: str) -> str:
    return f"export.message.{key}"


def start(model_dir: Path, key: str) -> None:
    """The Export button's callback: start the export; refusals become a message."""
    if not actions_allowed():  # the button is disabled too, but a click may still reach the server
        st.session_state[message_key(key)] = ("warning", "Sign in to export models.")
        return
    choice = st.session_state.get(f"export.format.{key}", ALL)
    formats = list(FORMATS) if choice == ALL else [choice]
    try:
        start_export(model_dir, formats)
    except (ExportError, OSError) as exc:
        st.session_state[message_key(key)] = ("error", f"Could not start the export: {exc}")


def stop(model_dir: Path, key: str) -> None:
    """The Stop button's callback."""
    if not actions_allowed():
        st.session_state[message_key(key)] = ("warning", "Sign in to stop exports.")
        return
    try:
        stopped = stop_export(model_dir, wait=5.0)
    except OSError as exc:
        st.session_state[message_key(key)] = ("error", f"Could not stop the export: {exc}")
        return
    if not stopped:
        st.session_state[message_key(key)] = ("info", "The export had already ended.")


def progress(job: dict[str, Any]) -> None:
    steps, step = job.get("steps") or 0, job.get("step") or 0
    phase = job.get("phase") or "starting"
    fraction = min(step / steps, 1.0) if steps else 0.0
    st.progress(fraction, text=f"{escape_markdown(phase[:1].upper() + phase[1:])}…")


def result_row(title: str, size: int, result: dict[str, Any]) -> dict[str, Any]:
    """One format's line of the table: what the check found and how long the export took."""
    difference, agreement = result.get("max_abs_diff"), result.get("agreement")
    seconds = result.get("export_s")
    return {"format": title, "size": format_bytes(size),
            "max abs difference": f"{difference:.1e}" if difference is not None else None,
            "same top class": f"{agreement:.1%}" if agreement is not None else None,
            "loaded back with": result.get("runtime"),
            "export time": format_duration(seconds) if seconds is not None else None,
            "verified": "yes" if result.get("verified") else "no"}


def results(model_dir: Path, folder_path: Path, job: dict[str, Any], key: str, active: bool) -> None:
    """A table of what each export's check found, and a download button for every exported file."""
    stamp = model_stamp(model_file(model_dir))
    found = job.get("results", {})
    rows, files, sources = [], [], []
    for name, spec in FORMATS.items():
        result = found.get(name)
        if result is None or (active and name in job.get("formats", [])):
            continue  # never exported, or being replaced right now
        path = run_file(folder_path, spec.download)
        if path is None:
            st.error(f"{spec.title}: {escape_markdown(result.get('error') or 'the file is missing')}")
            continue
        rows.append(result_row(spec.title, path.stat().st_size, result))
        files.append((name, spec, path))
        if result.get("faces_source") and result["faces_source"] not in sources:
            sources.append(result["faces_source"])
        if result.get("error"):
            st.warning(f"{spec.title} failed its check: {escape_markdown(result['error'])}")
        if result.get("model_stamp") and result["model_stamp"] != stamp:
            st.warning(f"{spec.title}: the model changed after this export; export it again.")
    if not rows:
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(escape_markdown(f"Max abs difference: the largest difference between the export's "
                               f"probabilities and the Keras model's, on {' and '.join(sources)}."))
    with st.container(horizontal=True):
        for name, spec, path in files:
            st.download_button(f"{spec.title} · {format_bytes(path.stat().st_size)}",
                               data=lambda path=path: read_run_file(path.parent, path.name),
                               file_name=f"{model_dir.name}-{spec.download}",
                               key=f"export.download.{name}.{key}",
                               mime="application/octet-stream", icon=":material/download:", on_click="ignore")


def log_tail(folder_path: Path) -> str:
    try:
        return read_tail(folder_path / "export.log", 4000).decode(errors="replace")
    except OSError:
        return ""


def body(model_dir: Path, key: str, was_active: bool) -> None:
    folder = export_folder(model_dir)
    state, job = job_state(folder)
    active = state in ACTIVE
    if active != was_active:
        st.rerun()  # an export started or ended: poll (or stop polling) with the whole page
    message = st.session_state.pop(message_key(key), None)
    if message:
        getattr(st, message[0])(message[1])
    locked = not actions_allowed()
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.selectbox("Format", CHOICES, format_func=CHOICE_TITLES.get, key=f"export.format.{key}")
        st.button("Export", key=f"export.start.{key}", icon=":material/ios_share:", type="primary",
                  disabled=locked or active, on_click=start, args=(model_dir, key))
        if active:
            st.button("Stop", key=f"export.stop.{key}", icon=":material/stop_circle:", disabled=locked,
                      on_click=stop, args=(model_dir, key))
    if locked:
        st.caption("Sign in to export models: this dashboard lets only signed-in users act on it.")
    if active:
        progress(job)
    elif state == "stopped":
        st.info("The export was stopped. Formats exported before the stop are below; the one in "
                "progress was dropped.")
    elif state == "failed" and job.get("error"):
        st.error(f"The export failed: {escape_markdown(job['error'])}")
        if st.toggle("Show the export log", key=f"export.log.{key}"):
            st.code(log_tail(folder.path) or "(empty)", language="text")
    results(model_dir, folder.path, job, key, active)


def export_section(model_dir: Path, key: str) -> None:
    """An "Export" expander for the model of ``model_dir`` (a run, an ensemble or the shipped model);
    nothing when there is no model. ``key`` tells widgets of several models apart."""
    from fer.workers import is_alive

    model_dir = Path(model_dir)
    if run_file(model_dir, model_file(model_dir).name) is None:
        return
    with st.expander("Export (.keras, SavedModel, LiteRT, ONNX)", icon=":material/ios_share:"):
        if is_alive(model_dir):
            st.caption("This run is training: export its model once training has ended.")
            return
        st.caption("Each export is loaded back with its own runtime and its predictions on test faces "
                   "are compared with the Keras model's. SavedModel, LiteRT and ONNX need TensorFlow.")
        active = job_state(export_folder(model_dir))[0] in ACTIVE
        st.fragment(body, run_every=REFRESH_S if active else None)(model_dir, key, active)
