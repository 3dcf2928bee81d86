"""The Predict page's Video tab: a video analysed in the background (``fer.video``), its progress
with Stop, then each face's probabilities over time, a frame viewer with the faces' boxes and
labels at a chosen time, and the CSV (not a page)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.access import actions_allowed
from fer import CLASSES
from fer.ui import escape_markdown, format_duration
from fer.video import (
    DEFAULT_FPS,
    JOB_ACTIVE,
    MAX_FPS,
    MAX_VIDEO_BYTES,
    MIN_FPS,
    VIDEO_TYPES,
    VideoError,
    frame_at,
    job_folder,
    read_job,
    read_rows,
    rows_csv,
    start_job,
    stop_job,
    video_file,
)

JOB = "predict.video.job"  # the id of this visitor's analysis (its folder is the truth)
ERROR = "predict.video.error"
COLOURS = dict(zip(CLASSES, ("#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#7f7f7f"),
                   strict=True))


def _start(model: str, tta: str, detector: str) -> None:
    if not actions_allowed():
        st.session_state[ERROR] = "Sign in to analyse a video."
        return
    upload = st.session_state.get("predict.video")
    if upload is None:
        st.session_state[ERROR] = "Choose a video first."
        return
    try:
        st.session_state[JOB] = start_job(upload.getvalue(), upload.name, model,
                                          float(st.session_state.get("predict.video.fps", DEFAULT_FPS)),
                                          tta, detector)
    except (VideoError, OSError) as exc:
        st.session_state[ERROR] = f"Cannot analyse {upload.name}: {exc}"


def _stop(folder: Path) -> None:
    if actions_allowed():
        stop_job(folder)


def timeline_figure(rows: pd.DataFrame, face: int) -> go.Figure:
    """The seven probabilities of face ``face`` over the video's time."""
    mine = rows[rows["face"] == face]
    figure = go.Figure()
    for name in CLASSES:
        figure.add_trace(go.Scatter(x=mine["time_s"], y=mine[f"p_{name}"] * 100, mode="lines+markers",
                                    name=name, line={"color": COLOURS[name]}, marker={"size": 4}))
    figure.update_layout(title=f"Face {face}: expression probabilities over time", height=360,
                         xaxis_title="time in the video (s)", yaxis_title="probability (%)",
                         yaxis={"range": [0, 100]}, margin={"t": 50, "b": 100},
                         legend={"orientation": "h", "y": -0.3})  # below the axis title
    return figure


def framed(path: Path, rows: pd.DataFrame, when: float):
    """The frame at ``when`` with the boxes and top labels of the faces sampled there."""
    from PIL import ImageDraw, ImageFont

    image = frame_at(path, when)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 250))
    font = ImageFont.load_default(size=max(12, round(max(image.size) / 40)))  # as fer.ui.draw_boxes
    for row in rows[np.isclose(rows["time_s"], when)].itertuples():
        x, y, w, h = int(row.x), int(row.y), int(row.width), int(row.height)
        draw.rectangle([x, y, x + w, y + h], outline=(255, 64, 64), width=width)
        draw.text((x, max(0, y - font.size - 4)), f"{row.face}: {row.top_label}", fill=(255, 64, 64),
                  font=font)
    return image


def results(folder: Path, job: dict) -> None:
    rows = pd.DataFrame(read_rows(folder))
    seconds = float(job.get("seconds") or 0)
    sampled = int(job.get("sampled") or 0)
    st.caption(f"{sampled} frames sampled at {float(job.get('fps') or 0):g} a second, "
               f"{int(job.get('faces') or 0)} face(s), analysed in {format_duration(seconds)}"
               + (f" ({sampled / seconds:.1f} frames/s)" if seconds > 0 else "") + ".")
    for warning in job.get("warnings") or []:
        st.warning(escape_markdown(warning))
    if rows.empty:
        st.info("No face was found in the sampled frames.")
        return
    faces = sorted(int(face) for face in rows["face"].unique())
    face = st.selectbox("Face", faces, format_func=lambda n: f"face {n}",
                        key=f"predict.video.face.{folder.name}")
    st.plotly_chart(timeline_figure(rows, face), key=f"predict.video.timeline.{folder.name}")
    times = sorted(float(t) for t in rows["time_s"].unique())
    when = st.select_slider("Frame at (s)", times, value=times[0], format_func=lambda t: f"{t:.2f} s",
                            key=f"predict.video.time.{folder.name}")
    video = video_file(folder)
    if video is not None:
        try:
            st.image(framed(video, rows, when), caption=f"{when:.2f} s", width="stretch")
        except VideoError as exc:
            st.warning(escape_markdown(str(exc)))
    st.download_button("Download the emotions over time (CSV)", rows_csv(rows.to_dict("records")),
                       file_name=f"{Path(str(job.get('file') or 'video')).stem}-emotions.csv",
                       mime="text/csv", key=f"predict.video.csv.{folder.name}", on_click="ignore",
                       icon=":material/download:",
                       help="One row per face per sampled frame: time, frame, face number, box, the seven "
                            "probabilities and the top label.")


@st.fragment(run_every=1.0)
def progress(folder: Path) -> None:
    job = read_job(folder)
    if job.get("state") not in JOB_ACTIVE:
        st.rerun()  # ended: the whole tab shows the results
    done, total = float(job.get("done_s") or 0), job.get("total_s")
    fraction = min(done / float(total), 1.0) if total else 0.0
    st.progress(fraction, text=f"Analysing {escape_markdown(str(job.get('file') or 'the video'))}: "
                               f"{done:.1f} s" + (f" of {float(total):.1f} s" if total else ""))
    st.button("Stop", key=f"predict.video.stop.{folder.name}", icon=":material/stop:", on_click=_stop,
              args=(folder,), disabled=not actions_allowed())


def video_section(model: str, tta: str, detector: str) -> None:
    """The Video tab: upload, sampling rate, Analyse; then progress or results."""
    st.file_uploader(f"A video ({', '.join(VIDEO_TYPES)}; up to {MAX_VIDEO_BYTES >> 20} MB and 20 minutes)",
                     type=list(VIDEO_TYPES), key="predict.video")
    st.number_input("Frames per second to analyse", MIN_FPS, MAX_FPS, DEFAULT_FPS, 0.5,
                    key="predict.video.fps",
                    help="Frames sampled per second of video: more follows quick changes, fewer is faster.")
    st.button("Analyse the video", icon=":material/movie:", on_click=_start, args=(model, tta, detector),
              disabled=st.session_state.get("predict.video") is None or not actions_allowed())
    if error := st.session_state.pop(ERROR, None):
        st.error(escape_markdown(error))
    job_id = st.session_state.get(JOB)
    if not job_id:
        return
    try:
        folder = job_folder(job_id)
    except ValueError:
        return
    job = read_job(folder)
    if not job:
        return
    if job.get("state") in JOB_ACTIVE:
        progress(folder)
        return
    if job.get("state") in ("failed", "interrupted"):
        st.error(f"The analysis of {escape_markdown(str(job.get('file') or 'the video'))} failed: "
                 f"{escape_markdown(str(job.get('error') or 'unknown reason'))}")
        return
    if job.get("state") == "stopped":
        st.info("The analysis was stopped: what it read is shown.")
    results(folder, job)
