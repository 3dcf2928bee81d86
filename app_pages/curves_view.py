"""The Runs page's curves: their controls (x-axis, smoothing, log scale), the loss, accuracy and
learning-rate charts, and the pace, CPU and memory of each run in training. A module the Runs
page imports, not a page; the figures themselves are built in fer.ui."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pandas as pd
import streamlit as st

from fer.run_folder import RunFolder
from fer.runs import RunSummary
from fer.ui import (
    curve_axis,
    curve_figure,
    escape_markdown,
    eta_seconds,
    first_epoch_eta,
    format_bytes,
    format_duration,
)
from fer.usage import worker_usage

X_AXIS, SMOOTHING, LOG_SCALE = "curves.x", "curves.smoothing", "curves.log"
AXIS_TITLES = {"epoch": "Epoch", "training": "Training time", "wall": "Wall clock"}
# What a history lacks when it cannot be drawn over an axis (histories of older runs).
AXIS_NEEDS = {"training": "epoch durations", "wall": "epoch end times"}
CHARTS = {"loss": "Loss", "accuracy": "Accuracy", "learning_rate": "Learning rate"}


def curve_controls() -> tuple[str, float, bool]:
    """(x-axis, smoothing weight, log scale) chosen above the charts."""
    with st.container(horizontal=True, vertical_alignment="bottom"):
        axis = st.segmented_control(
            "x-axis", list(AXIS_TITLES), format_func=AXIS_TITLES.get, default="epoch", required=True,
            key=X_AXIS, help="Training time adds up the epochs' durations (a pause between a stop and a "
                             "resume is left out); wall clock is the time of day each epoch ended.")
        smoothing = st.slider(
            "Smoothing", 0.0, 0.99, 0.0, 0.01, key=SMOOTHING, width=240,
            help="Exponential moving average, as in TensorBoard: 0 draws the values as they are; the "
                 "raw values stay faintly behind the smoothed curves. The learning rate is never "
                 "smoothed.")
        log = st.toggle("Log scale", key=LOG_SCALE, help="Loss and learning rate on a log scale.")
    return axis or "epoch", smoothing, log


def activity_line(run: RunSummary, history: pd.DataFrame) -> str | None:
    """Time left and the worker's CPU and memory for a run in training (None for other runs)."""
    if run.state != "running":
        return None
    parts = [f"**{escape_markdown(run.run_id)}**"]
    epochs = run.config.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        progress = RunFolder(run.path).read_progress()
        left = eta_seconds(history, epochs, progress)
        first = (first_epoch_eta(epochs, progress, run.status.get("started"), time.time())
                 if left is None else None)
        if first is not None:
            ends = time.strftime("%H:%M", time.localtime(time.time() + first))
            parts.append(f"about {format_duration(first)} left (ends around {ends}; a first estimate from "
                         f"{progress['batch']} of {progress['batches']} batches of the first epoch, "
                         "including the start-up)")
        elif left is None:
            parts.append("time left known after the first epoch")
        elif left > 0:
            ends = time.strftime("%H:%M", time.localtime(time.time() + left))
            parts.append(f"about {format_duration(left)} left (ends around {ends}; sooner if early "
                         "stopping ends it)")
    usage = worker_usage(run.path)
    if usage is not None:
        cpu = "measuring" if usage.cpu_percent is None else f"{usage.cpu_percent:.0f}%"
        parts.append(f"worker {usage.pid}: CPU {cpu} (100% = one of {usage.cores} cores), "
                     f"memory {format_bytes(usage.memory_bytes)}, {usage.threads} threads")
    return " · ".join(parts) if len(parts) > 1 else None


def live_curves(runs: list[RunSummary], histories: Mapping[str, pd.DataFrame]) -> None:
    """The activity of runs in training, then the curves of ``histories`` (run id -> history)
    with their controls; before any epoch has ended, a note instead of empty charts."""
    for run in runs:
        line = activity_line(run, histories.get(run.run_id, pd.DataFrame()))
        if line:
            st.caption(line)
    if not any(len(history) for history in histories.values()):  # empty charts: meaningless axes
        st.info("Waiting for the first epoch: the loss and accuracy curves appear when it ends.",
                icon=":material/hourglass_top:")
        return
    axis, smoothing, log = curve_controls()
    used, lacking = curve_axis(histories, axis)
    if lacking:
        st.caption(f"Plotted by epoch: {escape_markdown(', '.join(lacking))} "
                   f"{'has' if len(lacking) == 1 else 'have'} no {AXIS_NEEDS[axis]} (trained by an "
                   "older version).")
    charts = [metric for metric in CHARTS
              if metric != "learning_rate" or any(metric in h.columns for h in histories.values())]
    for column, metric in zip(st.columns(len(charts)), charts, strict=True):
        column.plotly_chart(curve_figure(histories, metric, CHARTS[metric], smoothing=smoothing,
                                         log_y=log and metric != "accuracy", axis=used))
