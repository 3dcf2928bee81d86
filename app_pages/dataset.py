"""Dataset: class distribution per split, sample faces per class, and uploading FER2013 into data/."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import fer.data
from app_pages.access import actions_allowed, sign_in_notice
from fer import CLASSES
from fer.data import SPLIT_TITLES, SPLITS, DataError, check_data_allowed, find_datasets, sample_faces
from fer.dataset_import import (
    MAX_UPLOAD_MB,
    ImportProblem,
    default_name,
    dismiss_import,
    list_imports,
    start_import,
)
from fer.ui import code_span, dataset_counts_figure, dataset_counts_frame, escape_markdown, upscale

UPLOAD_TYPES = ["zip", "gz", "tgz", "tar", "csv"]
FACES_PER_CLASS = 8
ERROR = "dataset.import_error"
RUNNING = ("queued", "running")


def location_of(path: Path) -> str:
    """How a dataset is named on this page: FER_DATA, or its place under data/."""
    data_dir = fer.data.DATA_DIR
    if path == data_dir:
        return "data/"
    if path.parent == data_dir:
        return f"data/{path.name}"
    return f"FER_DATA ({path.name})"


@st.cache_data(ttl=60, show_spinner="Counting the images…")
def cached_summary(location: str, mtime: float):
    return fer.data.summarize_dataset(location)


@st.cache_data(ttl=600, max_entries=32, show_spinner="Picking sample faces…")
def cached_faces(location: str, mtime: float, split: str, seed: int):
    return sample_faces(location, split, FACES_PER_CLASS, seed)


def begin_import() -> None:
    """The Import button: save the upload and start its import in the background."""
    if not actions_allowed():
        st.session_state[ERROR] = "sign in first: only signed-in users may upload a dataset"
        return
    upload = st.session_state.get("dataset.upload")
    if upload is None:
        st.session_state[ERROR] = "choose a file to upload first"
        return
    name = (st.session_state.get("dataset.name") or "").strip() or default_name(upload.name)
    data_dir = fer.data.DATA_DIR
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        upload.seek(0)
        start_import(upload, upload.name, name, data_dir)
    except ImportProblem as exc:
        st.session_state[ERROR] = str(exc)
    except OSError as exc:
        st.session_state[ERROR] = f"could not save the upload in data/: {exc.strerror or exc}"


def dismiss(job: Path) -> None:
    """The Dismiss button: forget a finished import (checked here too, not only by disabling it)."""
    if actions_allowed():
        dismiss_import(job)


def upload_section() -> None:
    st.subheader("Add a dataset")
    if not actions_allowed():
        sign_in_notice("upload a dataset")
        return
    st.caption(f"A zip or tar.gz of the folders `train/` and `test/` (one folder per emotion inside "
               f"each), or the original `fer2013.csv` (may be gzipped), up to {MAX_UPLOAD_MB} MB. It is "
               "checked, then unpacked (a CSV converted to image folders) into `data/<name>/`.")
    upload = st.file_uploader("Dataset file", type=UPLOAD_TYPES, key="dataset.upload")
    st.text_input("Name", key="dataset.name", max_chars=64,
                  placeholder=default_name(upload.name) if upload else "fer2013",
                  help="The folder under data/ the dataset goes into; empty uses the file's name.")
    st.button("Import", icon=":material/upload:", on_click=begin_import, disabled=upload is None)
    if error := st.session_state.pop(ERROR, None):
        st.error(escape_markdown(error))


def import_message(status: dict) -> tuple[str, str]:
    """(kind, text) for a finished import: "success" or "error"; a ValueError/TypeError when its
    status file holds something else than the import process writes."""
    name = escape_markdown(str(status.get("name", "")))
    if status.get("state") == "done":
        counts = ", ".join(f"{split}: {sum(int(n) for n in c.values()):,}"
                           for split, c in dict(status.get("counts") or {}).items())
        return "success", (f"Imported **{name}**: {int(status.get('images', 0)):,} images ({counts}) in "
                           f"{float(status.get('seconds') or 0):.0f} s. Pick it above, or train on it: "
                           f"enter {code_span(status.get('target', ''))} as the Train page's dataset.")
    reason = escape_markdown(str(status.get("error", "unknown reason")))
    return "error", f"Import of **{name}** failed: {reason}"


def show_import(job: Path, status: dict) -> None:
    if status.get("state") in RUNNING:
        try:
            fraction = min(max(float(status.get("fraction") or 0), 0.0), 1.0)
        except (TypeError, ValueError):
            fraction = 0.0
        name = escape_markdown(str(status.get("name", job.name)))
        phase = escape_markdown(str(status.get("phase", "starting")))
        st.progress(fraction, text=f"Importing **{name}**: {phase} ({fraction:.0%})")
        return
    columns = st.columns([6, 1], vertical_alignment="center")
    with columns[0]:
        try:
            kind, text = import_message(status)
        except (TypeError, ValueError, AttributeError):
            kind, text = "error", f"The status of import {escape_markdown(job.name)} cannot be read."
        if kind == "success":
            st.success(text, icon=":material/check_circle:")
            for warning in status.get("warnings") or []:
                st.warning(escape_markdown(warning))
        else:
            st.error(text)
    columns[1].button("Dismiss", key=f"dataset.dismiss.{job.name}", on_click=dismiss, args=(job,),
                      disabled=not actions_allowed())


def imports_in_progress() -> None:
    """Live progress of imports; the whole page reruns when one finishes, to list the new dataset."""
    jobs = list_imports(fer.data.DATA_DIR)
    running = {job.name for job, status in jobs if status.get("state") in RUNNING}
    if st.session_state.get("dataset.running", set()) - running:
        st.session_state["dataset.running"] = running
        st.rerun(scope="app")
    st.session_state["dataset.running"] = running
    for job, status in jobs:
        show_import(job, status)


def modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def needs_unpacking(path: Path) -> bool:
    """An archive not unpacked into the cache yet (FER2013's takes a minute or so on a busy disk)."""
    archive = path.is_file() and path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))
    return archive and not fer.data.unpacked_folder(path).is_dir()


def dataset_view(path: Path) -> None:
    if needs_unpacking(path) and not st.session_state.get(f"dataset.unpack.{path}"):
        st.info("This archive is unpacked into the cache the first time it is read, which takes a "
                "minute or so for FER2013; training from it reuses the unpacked copy.",
                icon=":material/unarchive:")
        st.button("Unpack and show", key=f"dataset.unpack.{path}", icon=":material/unarchive:")
        return
    try:
        location = str(check_data_allowed(path))
        summary = cached_summary(location, modified(path))
    except DataError as exc:
        st.error(escape_markdown(exc))
        return
    st.caption(f"Read from {code_span(summary.source)}. "
               f"Validation: {escape_markdown(summary.val_description)}; "
               f"test: {escape_markdown(summary.test_description)}.")
    for warning in summary.warnings:
        st.warning(escape_markdown(warning))
    share = st.toggle("Show shares (% of each split)", key="dataset.share")
    st.plotly_chart(dataset_counts_figure(summary.counts, SPLIT_TITLES, share=share), key="dataset.counts")
    with st.expander("Counts table"):
        st.dataframe(dataset_counts_frame(summary.counts, SPLIT_TITLES), width="content")

    st.subheader("Sample faces")
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    split = left.segmented_control("Split", SPLITS, format_func=SPLIT_TITLES.get, default="train",
                                   key="dataset.split") or "train"
    seed = int(right.number_input("Seed", min_value=0, max_value=1_000_000, value=0, step=1,
                                  key="dataset.seed", help="Another seed shows other faces."))
    try:
        faces = cached_faces(location, modified(path), split, seed)
    except DataError as exc:
        st.error(escape_markdown(exc))
        return
    for name in CLASSES:
        chosen = faces.get(name, [])
        st.markdown(f"**{name}** · {summary.counts.get(split, {}).get(name, 0):,} in this split")
        if not chosen:
            st.caption("no images")
            continue
        st.image([upscale(image) for _, image in chosen], caption=[Path(label).name for label, _ in chosen],
                 width=96)


st.title("Dataset")
datasets = find_datasets()
if datasets:
    default = fer.data.default_data_location()
    index = datasets.index(default) if default in datasets else 0
    chosen = st.selectbox("Dataset", datasets, index=index, format_func=location_of, key="dataset.chosen",
                          help="FER_DATA and the datasets in data/ of the project; the path read is "
                               "shown below.")
    dataset_view(chosen)
else:
    st.info("No dataset yet. Upload FER2013 below, put it into data/ of the project, or start the app "
            "with FER_DATA pointing at it. The README's Data section says where to download it.",
            icon=":material/info:")
# Refreshed every second only while an import runs.
any_running = any(status.get("state") in RUNNING for _, status in list_imports(fer.data.DATA_DIR))
st.fragment(imports_in_progress, run_every=1.0 if any_running else None)()
upload_section()
