"""Plain helpers shared by the Streamlit pages: figure builders, tables and formatting.

Nothing here imports Streamlit or TensorFlow, so every function is testable on its own. It is the
formatting of all four pages in one place, hence its length.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from fer import CLASSES
from fer.config import TrainConfig

if TYPE_CHECKING:
    from fer.predict import FaceResult

# Streamlit badge colours per run state (text, not emoji: it reads the same in every font).
STATE_COLORS = {
    "created": "gray",
    "queued": "violet",
    "running": "green",
    "finished": "blue",
    "stopped": "orange",
    "failed": "red",
    "interrupted": "orange",
    "damaged": "red",
}
RUN_COLORS = plotly.colors.qualitative.Plotly
GALLERY_PAGE_SIZE = 48


def state_badge(state: str) -> str:
    """The state as a coloured Streamlit markdown badge."""
    return f":{STATE_COLORS.get(state, 'gray')}-badge[{state}]"


def state_style(state: str) -> str:
    """CSS for the state cell of the runs table (``queued #2``: a place in the queue)."""
    return f"color: {STATE_COLORS.get(str(state).split(' ')[0], 'gray')}; font-weight: 600"


def escape_markdown(text: str) -> str:
    """Show ``text`` literally in Streamlit markdown (file patterns such as ``test/PublicTest_*``)."""
    return "".join("\\" + char if char in "\\`*_[]<>$~|#" else char for char in str(text))


def percent(value: float | None, digits: int = 1) -> str:
    """``0.6234`` -> ``"62.3%"``; missing values -> ``"–"``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:.{digits}%}"


def format_param_count(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M parameters"
    if count >= 1_000:
        return f"{count / 1e3:.0f}k parameters"
    return f"{count} parameters"


def upscale(image: np.ndarray, size: int = 96) -> np.ndarray:
    """Nearest-neighbour upscaling of a square grayscale face (keeps the pixels crisp)."""
    factor = max(1, size // image.shape[0])
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def run_file(run_dir: Path, name: str) -> Path | None:
    """``run_dir / name`` if it is a regular file inside the run folder (no links out of it)."""
    run_dir = Path(run_dir).resolve()
    path = (run_dir / name).resolve()
    if path.parent != run_dir or not path.is_file():
        return None
    return path


def read_run_file(run_dir: Path, name: str) -> bytes:
    """The bytes of a file inside the run folder (for download buttons, read on click)."""
    path = run_file(run_dir, name)
    if path is None:
        raise FileNotFoundError(f"{name} is not in {run_dir}")
    return path.read_bytes()


# ---- the Train page ----------------------------------------------------------------------------

def _flag_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def cli_command(values: Mapping[str, Any], run_name: str = "") -> str:
    """The ``python -m fer.train`` command that creates the same run from a terminal.

    Only values that differ from the architecture's defaults are spelled out, since the CLI
    applies the same defaults.
    """
    architecture = str(values.get("architecture", TrainConfig.architecture))
    defaults = TrainConfig.for_architecture(architecture).to_dict()
    parts = ["python", "-m", "fer.train", "--architecture", architecture]
    for key, value in values.items():
        if key == "architecture" or key not in defaults or value == defaults[key]:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            parts += [flag, _flag_value(value)]
    if run_name:
        parts += ["--name", run_name]
    return " ".join(shlex.quote(part) for part in parts)


def dataset_counts_frame(counts: Mapping[str, Mapping[str, int]],
                         titles: Mapping[str, str]) -> pd.DataFrame:
    """Class counts per split: one row per class (canonical order) plus a total row."""
    frame = pd.DataFrame({titles.get(split, split): [int(c.get(name, 0)) for name in CLASSES]
                          for split, c in counts.items()}, index=list(CLASSES))
    frame.loc["total"] = frame.sum()
    frame.index.name = "class"
    return frame


# ---- the Runs page -----------------------------------------------------------------------------

def curve_figure(histories: Mapping[str, pd.DataFrame], metric: str, title: str = "") -> go.Figure:
    """Train (solid) and validation (dashed) ``metric`` per epoch, one colour per run."""
    figure = go.Figure()
    for i, (run, history) in enumerate(histories.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        for column, dash, split in ((metric, "solid", "train"), (f"val_{metric}", "dash", "val")):
            if history.empty or column not in history.columns or "epoch" not in history.columns:
                continue
            figure.add_trace(go.Scatter(
                x=history["epoch"], y=history[column], mode="lines+markers", name=f"{run} {split}",
                legendgroup=run, line={"color": color, "dash": dash}, marker={"size": 5},
                hovertemplate=f"{run}<br>{split} {metric} %{{y:.4f}}<br>epoch %{{x}}<extra></extra>",
            ))
    figure.update_layout(
        title=title or metric, xaxis_title="epoch", yaxis_title=metric, height=360,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, hovermode="x unified",
        legend={"orientation": "h", "yanchor": "top", "y": -0.2},
    )
    if metric == "accuracy":
        figure.update_yaxes(tickformat=".0%")
    return figure


def best_epoch(history: pd.DataFrame) -> dict[str, Any]:
    """The epoch with the highest validation accuracy and its metrics (empty when no history)."""
    if history.empty or "val_accuracy" not in history.columns:
        return {}
    row = history.loc[history["val_accuracy"].idxmax()]
    return {key: (int(row[key]) if key == "epoch" else float(row[key]))
            for key in ("epoch", "accuracy", "val_accuracy", "loss", "val_loss") if key in row}


COMPARED_PARAMETERS = ("architecture", "epochs", "batch_size", "optimizer", "learning_rate",
                       "lr_schedule", "l2", "dropout", "augment", "label_smoothing",
                       "class_weights", "max_train_samples", "seed")


# How the pages name the test-time augmentation modes (fer.tta.TTA_MODES).
TTA_TITLES = {"none": "None", "flip": "Mirror", "ten_crop": "Ten-crop"}


def run_row(run: Any, queue: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One row of the runs table for a ``fer.runs.RunSummary``; ``queue``: run id -> its place in
    the queue (fer.queue.queue_positions), shown as ``queued #2``."""
    s, c = run.status, run.config
    duration = run.duration_s
    place = (queue or {}).get(run.run_id)
    return {
        "run": run.run_id,
        "state": f"{run.state} #{place}" if place else run.state,
        "architecture": run.architecture,
        "epochs": f"{s.get('epochs_done', 0)}/{c.get('epochs', '?')}",
        "batch": c.get("batch_size"),
        "optimizer": c.get("optimizer"),
        "lr": c.get("learning_rate"),
        "best val acc": s.get("best_val_accuracy"),
        "best epoch": s.get("best_epoch"),
        "test acc": s.get("test_accuracy"),
        "duration (min)": None if duration is None else round(duration / 60, 1),
        # Runs from before the backend choice have no backend key: they trained on TensorFlow.
        "backend": c.get("backend", "tensorflow"),
        "device": s.get("device"),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.get("created", 0))),
    }


def runs_table(rows: list[dict[str, Any]]) -> pd.io.formats.style.Styler:
    """The runs table (``run_row`` dicts) with coloured states; accuracies in percent."""
    frame = pd.DataFrame(rows)
    for column in ("best val acc", "test acc"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") * 100
    # An epoch is a whole number even in a column with missing values (not "1.000000").
    frame["best epoch"] = pd.to_numeric(frame["best epoch"], errors="coerce").astype("Int64")
    return (frame.style.map(state_style, subset=["state"])
            .format({"lr": "{:g}", "duration (min)": "{:.1f}"}, na_rep="–"))


def comparison_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """Key hyperparameters and results of ``runs`` (RunSummary objects), one column per run."""
    columns = {}
    for run in runs:
        row = run_row(run)
        values: dict[str, Any] = {key: run.config.get(key) for key in COMPARED_PARAMETERS}
        values.update({
            "backend": row["backend"],
            "device": row["device"],
            "state": run.state,
            "epochs done": run.status.get("epochs_done", 0),
            "best val accuracy": percent(run.status.get("best_val_accuracy")),
            "best epoch": run.status.get("best_epoch"),
            "test accuracy": percent(run.status.get("test_accuracy")),
        })
        columns[run.run_id] = {key: "–" if value is None else str(value) for key, value in values.items()}
    return pd.DataFrame(columns)


# ---- the Evaluate page -------------------------------------------------------------------------

def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str] = CLASSES,
                     title: str = "") -> go.Figure:
    """Row-normalised confusion matrix (rows = true class) with percentages; counts on hover."""
    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    labels = list(classes)
    text = [[f"{value:.0%}" for value in row] for row in share]
    figure = go.Figure(go.Heatmap(
        z=share, x=labels, y=labels, text=text, texttemplate="%{text}", customdata=counts,
        colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "share of row", "tickformat": ".0%"},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} faces (%{z:.1%} of true %{y})"
                      "<extra></extra>",
    ))
    figure.update_layout(title=title, height=520, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_xaxes(title="predicted", side="bottom", tickangle=0)
    # First class at the top, as in a printed confusion matrix.
    figure.update_yaxes(title="true", autorange="reversed")
    return figure


def report_frame(report: Mapping[str, Any], classes: Sequence[str] = CLASSES) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (canonical order) and their averages."""
    rows = [name for name in classes if name in report]
    rows += [name for name in ("macro avg", "weighted avg") if name in report]
    frame = pd.DataFrame(
        [{"class": name, "precision": report[name].get("precision"),
          "recall": report[name].get("recall"), "F1": report[name].get("f1-score"),
          "support": int(report[name].get("support", 0))} for name in rows],
        columns=["class", "precision", "recall", "F1", "support"],
    )
    return frame.set_index("class")


def misclassified_order(true: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                        true_classes: Iterable[str] = CLASSES,
                        predicted_classes: Iterable[str] = CLASSES) -> np.ndarray:
    """Indices of the faces whose true and predicted classes pass the filters, most confident
    mistakes first."""
    keep_true = [CLASSES.index(name) for name in true_classes]
    keep_predicted = [CLASSES.index(name) for name in predicted_classes]
    index = np.flatnonzero(np.isin(true, keep_true) & np.isin(predicted, keep_predicted))
    return index[np.argsort(-np.asarray(confidence)[index], kind="stable")]


def misclassified_caption(true: int, predicted: int, confidence: float) -> str:
    return f"{CLASSES[int(true)]} → {CLASSES[int(predicted)]} ({confidence:.0%})"


# ---- the Predict page --------------------------------------------------------------------------

def probability_figure(probabilities: Sequence[float], classes: Sequence[str] = CLASSES,
                       title: str = "") -> go.Figure:
    """Horizontal bars of class probabilities, canonical order top to bottom, the top class
    highlighted and named in the title."""
    probabilities = np.asarray(probabilities, dtype=float)
    top = int(probabilities.argmax())
    colors = ["#d62728" if i == top else "#9ecae1" for i in range(len(classes))]
    figure = go.Figure(go.Bar(
        x=probabilities, y=list(classes), orientation="h", marker_color=colors,
        text=[f"{p:.0%}" for p in probabilities], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    figure.update_layout(
        title=title or f"{classes[top]} ({probabilities[top]:.0%})", height=280,
        margin={"l": 10, "r": 40, "t": 40, "b": 10}, showlegend=False,
    )
    figure.update_xaxes(range=[0, 1.08], tickformat=".0%", title="probability")
    figure.update_yaxes(autorange="reversed")
    return figure


def draw_boxes(image: Image.Image, results: list[FaceResult]) -> Image.Image:
    """A copy of ``image`` with each face's box and top class drawn on it."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 250))
    font = ImageFont.load_default(size=max(12, round(max(out.size) / 40)))
    for number, result in enumerate(results, start=1):
        if result.whole_image:
            continue
        x, y, w, h = result.box
        draw.rectangle([x, y, x + w, y + h], outline=(255, 64, 64), width=width)
        text = f"{number}: {result.label} {result.probabilities.max():.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        ty = y - (bottom - top) - 2 * width if y >= (bottom - top) + 2 * width else y + h + width
        draw.rectangle([x, ty, x + right - left + 2 * width, ty + bottom - top + 2 * width],
                       fill=(255, 64, 64))
        draw.text((x + width - left, ty + width - top), text, fill=(255, 255, 255), font=font)
    return out
