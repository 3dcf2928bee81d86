"""Plain helpers shared by the Streamlit pages: figure builders, tables and formatting.

Nothing here imports Streamlit or TensorFlow, so every function is testable on its own. It is the
formatting of all four pages in one place, hence its length.
"""

from __future__ import annotations

import math
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
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
    """Show ``text`` literally in Streamlit markdown (file patterns such as ``test/PublicTest_*``).

    Besides markup, it breaks the links Markdown makes by itself from bare text (``https://...``,
    ``www.``, ``user@host``), so that a file name or an address a visitor typed never becomes a link
    or an image in the dashboard; line breaks become spaces (no heading or list can start)."""
    text = " ".join(str(text).splitlines())
    text = "".join("\\" + char if char in "\\`*_[]<>$~|#!" else char for char in text)
    return re.sub(r"(?i)(:)(?=//)|(?<=www)(\.)|(@)", lambda match: "\\" + match.group(0), text)


def code_span(text: str) -> str:
    """``text`` as inline code in Streamlit markdown, whatever backticks it holds (a path, a file
    name): no markup, no link, no line break."""
    text = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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


def dataset_counts_figure(counts: Mapping[str, Mapping[str, int]], titles: Mapping[str, str],
                          share: bool = False) -> go.Figure:
    """Grouped bars: images per class (canonical order), one colour per split; ``share`` plots each
    class's percentage of its split instead, so splits of different sizes compare."""
    figure = go.Figure()
    for split, per_class in counts.items():
        values = np.array([int(per_class.get(name, 0)) for name in CLASSES], dtype=float)
        total = values.sum()
        y = values / total * 100 if share and total else values
        hover = "%{x}: %{customdata:,} images (%{y:.1f}%)" if share else "%{x}: %{y:,} images"
        figure.add_bar(name=titles.get(split, split), x=list(CLASSES), y=y, customdata=values.astype(int),
                       hovertemplate=hover + "<extra>%{fullData.name}</extra>")
    figure.update_layout(barmode="group", height=360, margin=dict(l=10, r=10, t=30, b=10),
                         yaxis_title="% of the split" if share else "images", xaxis_title="class",
                         legend=dict(orientation="h", y=1.12))
    return figure


# ---- the Runs page -----------------------------------------------------------------------------

# How the curves' x-axis can count: epochs; minutes of training (the epochs' durations added up, so
# the pause between a stop and a resume is left out); the time of day each epoch ended.
CURVE_AXES = {"epoch": "epoch", "training": "training time (min)", "wall": "time of day"}
# The latest epoch end time believed (a later one is damage): now, give or take a day of clock skew.
_FUTURE_SLACK_S = 86_400


def ema(values: Sequence[float], weight: float) -> np.ndarray:
    """Exponential moving average as TensorBoard smooths curves: ``weight`` 0 keeps the values,
    towards 1 smooths more. Debiased, so the first points are not pulled towards 0; a missing or
    infinite value is kept where it is and skipped by the average."""
    values = np.asarray(values, dtype=float)
    weight = min(max(float(weight), 0.0), 0.999)
    smoothed = values.copy()
    last, count = 0.0, 0
    for i, value in enumerate(values):
        if math.isfinite(value):
            last = last * weight + (1 - weight) * value
            count += 1
            smoothed[i] = last / (1 - weight**count)
    return smoothed


def curve_x(history: pd.DataFrame, axis: str) -> pd.Series | None:
    """The x values of ``history``'s rows on ``axis`` (CURVE_AXES); None when the history lacks
    them: histories of older runs have no epoch end times, a damaged one may hold garbage."""
    if history.empty or "epoch" not in history.columns:
        return None
    if axis == "training":
        seconds = pd.to_numeric(history.get("seconds"), errors="coerce")
        if seconds is None or not (np.isfinite(seconds) & (seconds >= 0)).all():
            return None
        return seconds.cumsum() / 60
    if axis == "wall":
        ended = pd.to_numeric(history.get("time"), errors="coerce")
        if ended is None or not ((ended > 0) & (ended < time.time() + _FUTURE_SLACK_S)).all():
            return None
        return pd.Series([datetime.fromtimestamp(stamp) for stamp in ended], index=history.index)
    return history["epoch"]


def curve_axis(histories: Mapping[str, pd.DataFrame], axis: str) -> tuple[str, list[str]]:
    """(the axis the curves use, the runs that lack ``axis``): ``axis`` when every run with a
    history has its values, otherwise the epoch."""
    lacking = [run for run, history in histories.items()
               if not history.empty and "epoch" in history.columns and curve_x(history, axis) is None]
    return ("epoch" if lacking else axis), lacking


def curve_figure(histories: Mapping[str, pd.DataFrame], metric: str, title: str = "",
                 smoothing: float = 0.0, log_y: bool = False, axis: str = "epoch") -> go.Figure:
    """Train (solid) and validation (dashed) ``metric``, one colour per run, over ``axis``
    (CURVE_AXES; the epoch when a run lacks it, see ``curve_axis``). With ``smoothing`` the curves
    are ``ema``-smoothed and the raw values drawn faintly behind (a learning rate is never smoothed:
    it is exact); ``log_y`` puts the y-axis on a log scale."""
    axis, _ = curve_axis(histories, axis)
    smooth = smoothing > 0 and metric != "learning_rate"
    x_hover = {"epoch": "epoch %{x}", "training": "%{x:.1f} min of training · epoch %{customdata[1]}",
               "wall": "%{x|%H:%M:%S} · epoch %{customdata[1]}"}[axis]
    figure = go.Figure()
    for i, (run, history) in enumerate(histories.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        xs = curve_x(history, axis)
        if xs is None:
            continue
        splits = [(metric, "solid", "train"), (f"val_{metric}", "dash", "val")]
        splits = [split for split in splits if split[0] in history.columns]
        for column, dash, split in splits:
            label = f"{run} {split}" if len(splits) > 1 or split == "val" else run
            raw = pd.to_numeric(history[column], errors="coerce").to_numpy(float)
            if smooth:
                figure.add_trace(go.Scatter(
                    x=xs, y=raw, mode="lines", legendgroup=run, showlegend=False, hoverinfo="skip",
                    opacity=0.3, line={"color": color, "dash": dash, "width": 1}))
            raw_hover = " (raw %{customdata[0]:.4g})" if smooth else ""
            figure.add_trace(go.Scatter(
                x=xs, y=ema(raw, smoothing) if smooth else raw, mode="lines+markers", name=label,
                legendgroup=run, line={"color": color, "dash": dash}, marker={"size": 5},
                customdata=np.column_stack([raw, history["epoch"].to_numpy()]),
                hovertemplate=f"{label} {metric} %{{y:.4g}}{raw_hover}<br>{x_hover}<extra></extra>",
            ))
    figure.update_layout(
        title=title or metric, xaxis_title=CURVE_AXES[axis], yaxis_title=metric.replace("_", " "), height=360,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, hovermode="x unified",
        legend={"orientation": "h", "yanchor": "top", "y": -0.2},
    )
    if log_y:
        figure.update_yaxes(type="log")
    if metric == "accuracy":
        figure.update_yaxes(tickformat=".0%")
    elif metric == "learning_rate":
        figure.update_yaxes(exponentformat="e")
    return figure


def eta_seconds(history: pd.DataFrame, epochs: int, progress: Mapping[str, Any]) -> float | None:
    """Seconds left until a run of ``epochs`` epochs has trained them all, at the pace of its last
    three epochs (their median duration), counting the part of the current epoch already done
    (``progress``: progress.json). None before an epoch has ended (no pace yet); early stopping may
    end a run sooner."""
    if history.empty or "seconds" not in history.columns or "epoch" not in history.columns:
        return None
    durations = pd.to_numeric(history["seconds"], errors="coerce").to_numpy(float)
    durations = durations[np.isfinite(durations) & (durations > 0)][-3:]
    if not len(durations):
        return None
    done = int(history["epoch"].max())
    left = max(0, int(epochs) - done)
    batches, batch = progress.get("batches") or 0, progress.get("batch") or 0
    if left and progress.get("epoch") == done + 1 and batches > 0:
        left -= min(max(batch / batches, 0.0), 1.0)
    return left * float(np.median(durations))


# The share of the first epoch that must be done before its pace gives a first estimate (the
# first steps also load the data and compile the step: an estimate from them errs long).
FIRST_ESTIMATE_SHARE = 0.05


def first_epoch_eta(epochs: int, progress: Mapping[str, Any], started: float | None,
                    now: float) -> float | None:
    """Before the first epoch ends: seconds left at the pace of the run so far (from its start,
    so data loading and the first compile count, which makes it err long), once
    ``FIRST_ESTIMATE_SHARE`` of the first epoch is done; None before that or without a start."""
    batches, batch = progress.get("batches") or 0, progress.get("batch") or 0
    if progress.get("epoch") != 1 or not batches or not started or progress.get("phase") != "training":
        return None
    share = min(max(batch / batches, 0.0), 1.0)
    elapsed = now - float(started)
    if share < FIRST_ESTIMATE_SHARE or elapsed <= 0:
        return None
    return max(0.0, elapsed / share * int(epochs) - elapsed)


def format_duration(seconds: float) -> str:
    """``42`` -> ``"42 s"``, ``200`` -> ``"3 min"``, ``3900`` -> ``"1 h 05 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def format_bytes(count: float) -> str:
    """``1_300_000_000`` -> ``"1.3 GB"``."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


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


# ---- the Compare page --------------------------------------------------------------------------

# What the parallel coordinates colour the runs by and show on the last axis.
TARGET = "best val accuracy"
# Hyperparameters whose values span orders of magnitude: a log axis when all are positive.
LOG_PARAMETERS = ("learning_rate", "weight_decay", "l2", "plateau_min_lr")
MISSING = "missing"  # the tick of a run without a value for a hyperparameter
# At most this many axes are picked by default (a wide chart is unreadable).
DEFAULT_AXES = 8
_TICK_CHARS = 24


def parameter_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """One row per run (index: run id): state, tags, every hyperparameter of TrainConfig but the
    data location (None where a run's config lacks it, as a damaged one may) and TARGET, for
    ``runs`` (RunSummary objects)."""
    parameters = [field for field in TrainConfig.__dataclass_fields__ if field != "data"]
    rows = {run.run_id: {"state": run.state,
                         **{key: run.config.get(key) for key in parameters},
                         TARGET: run.status.get("best_val_accuracy")} for run in runs}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["state", *parameters, TARGET])


def varying_parameters(frame: pd.DataFrame, limit: int = DEFAULT_AXES) -> list[str]:
    """The hyperparameters (columns of ``parameter_frame``) that differ between its runs, in
    COMPARED_PARAMETERS' order first, at most ``limit``."""
    columns = [column for column in frame.columns if column not in ("state", TARGET)]
    ordered = [c for c in COMPARED_PARAMETERS if c in columns] + \
              [c for c in columns if c not in COMPARED_PARAMETERS]
    varying = [column for column in ordered if frame[column].map(_key).nunique(dropna=False) > 1]
    return varying[:limit]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _key(value: Any) -> str:
    return repr(value) if _present(value) else MISSING


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def _ticks(low: float, high: float, values: np.ndarray, log: bool) -> list[float]:
    """The values themselves when there are a few; otherwise round numbers from one at or below
    ``low`` to one at or above ``high`` (plotly draws an axis only between its outer ticks): 1, 2
    and 5 times a power of ten on a log axis (decades alone when it spans several), steps of 1, 2
    or 5 times a power of ten on a linear one."""
    distinct = np.unique(values)
    if len(distinct) <= 6:
        return [float(tick) for tick in distinct]
    if log:
        factors = (1,) if high - low >= 3 else (1, 2, 5)
        ticks = [math.log10(factor) + power for power in range(math.floor(low), math.ceil(high) + 1)
                 for factor in factors]
        first = max(tick for tick in ticks if tick <= low + 1e-9)
        last = min(tick for tick in ticks if tick >= high - 1e-9)
        return [tick for tick in ticks if first <= tick <= last]
    step = 10 ** math.floor(math.log10((high - low) / 4))
    step *= next(factor for factor in (1, 2, 5, 10) if (high - low) / (step * factor) <= 5)
    first, last = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
    return [round(float(tick), 12) for tick in np.arange(first, last + step / 2, step)]


def parallel_dimension(values: Sequence[Any], label: str, log: bool = False) -> dict[str, Any]:
    """A go.Parcoords dimension for one hyperparameter over the runs, whatever its values hold.

    Numbers (ints and floats, not booleans) make a numeric axis, log10 when ``log`` and all are
    positive; anything else (text, booleans, a mix of kinds) makes one tick per distinct value. A
    run without a value sits on a MISSING tick below the others, so it keeps its line.
    """
    values = list(values)
    present = [_present(value) for value in values]
    numbers = [float(v) for v, p in zip(values, present, strict=True) if p and _number(v)]
    if numbers and len(numbers) == sum(present):
        data = np.array(numbers)
        log = log and bool((data > 0).all())
        if log:
            data = np.log10(data)
        low, high = float(data.min()), float(data.max())
        ticks = _ticks(low, high, data, log)
        text = [f"{10 ** tick if log else tick:.3g}" for tick in ticks]
        low, high = min(low, ticks[0]), max(high, ticks[-1])
        span = (high - low) or abs(high) or 1.0
        missing_at = low - 0.2 * span
        column, numbers_left = [], iter(data)
        for here in present:
            column.append(float(next(numbers_left)) if here else missing_at)
        if not all(present):
            ticks, text, low = [missing_at, *ticks], [MISSING, *text], missing_at
        if low == high:  # one value: an axis needs a span
            low, high = low - 0.5 * span, high + 0.5 * span
        return {"label": label + (" (log)" if log else ""), "values": column, "range": [low, high],
                "tickvals": ticks, "ticktext": text}
    names = [str(value) if here else MISSING for value, here in zip(values, present, strict=True)]
    categories = sorted(set(names) - {MISSING}, key=str.casefold) + ([MISSING] if MISSING in names else [])
    codes = {name: i for i, name in enumerate(categories)}
    text = [name if len(name) <= _TICK_CHARS else name[:_TICK_CHARS - 1] + "…" for name in categories]
    return {"label": label, "values": [codes[name] for name in names],
            "range": [-0.5, len(categories) - 0.5], "tickvals": list(range(len(categories))),
            "ticktext": text}


def parallel_figure(frame: pd.DataFrame, parameters: Sequence[str]) -> go.Figure:
    """Parallel coordinates of ``parameters`` (columns of ``parameter_frame``) and TARGET, one line
    per run coloured by TARGET; runs without TARGET are left out. Dragging along an axis keeps
    only the lines in that range (plotly's own brushing)."""
    frame = frame[pd.to_numeric(frame[TARGET], errors="coerce").notna()]
    accuracy = pd.to_numeric(frame[TARGET]).to_numpy(float)
    dimensions = [parallel_dimension(frame[name].tolist(), name.replace("_", " "), name in LOG_PARAMETERS)
                  for name in parameters]
    low, high = (float(accuracy.min()), float(accuracy.max())) if len(accuracy) else (0.0, 1.0)
    dimensions.append({"label": TARGET, "values": accuracy, "tickformat": ".1%",
                       "range": [low, high] if high > low else [max(0.0, low - 0.05), min(1.0, high + 0.05)]})
    figure = go.Figure(go.Parcoords(
        line={"color": accuracy, "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": "best val<br>accuracy"}, "tickformat": ".0%"}},
        dimensions=dimensions, labelangle=0, labelside="top",
        labelfont={"size": 14}, tickfont={"size": 11}, rangefont={"size": 10},
        unselected={"line": {"opacity": 0.08}},
    ))
    # The top margin holds the axis titles above each axis's range label, level and apart.
    figure.update_layout(height=500, margin={"l": 60, "r": 60, "t": 110, "b": 30})
    return figure


def filter_runs(runs: Iterable[Any], tags: Mapping[str, Sequence[str]], states: Sequence[str] = (),
                architectures: Sequence[str] = (), with_tags: Sequence[str] = ()) -> list[Any]:
    """The runs (RunSummary objects) in one of ``states``, of one of ``architectures`` and with at
    least one of ``with_tags`` (``tags``: run id -> its tags); an empty filter keeps every run."""
    wanted = {tag.casefold() for tag in with_tags}
    return [run for run in runs
            if (not states or run.state in states)
            and (not architectures or run.architecture in architectures)
            and (not wanted or wanted & {tag.casefold() for tag in tags.get(run.run_id, ())})]


# ---- the Evaluate page -------------------------------------------------------------------------

def row_shares(matrix: Sequence[Sequence[int]]) -> np.ndarray:
    """A confusion matrix's counts as shares of their row (a row without faces stays 0)."""
    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)


# Marker size (px) of the invisible points over the confusion matrix's cells that take clicks.
CELL_MARKER_SIZE = 40


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str] = CLASSES,
                     title: str = "", selectable: bool = False, tickangle: int = 0) -> go.Figure:
    """Row-normalised confusion matrix (rows = true class) with percentages; counts on hover.

    ``selectable`` adds a second trace: one invisible point at the centre of each cell, since a
    plotly heatmap cannot be selected by a click (Streamlit gets the clicked point, with the cell's
    predicted class as x and true class as y; ``selected_cell`` reads it).
    """
    counts = np.asarray(matrix, dtype=np.int64)
    share = row_shares(counts)
    labels = list(classes)
    text = [[f"{value:.0%}" for value in row] for row in share]
    hover = ("true %{y}<br>predicted %{x}<br>%{customdata} faces (%{z:.1%} of true %{y})"
             "<extra></extra>")
    figure = go.Figure(go.Heatmap(
        z=share, x=labels, y=labels, text=text, texttemplate="%{text}", customdata=counts,
        colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "share of row", "tickformat": ".0%"},
        hovertemplate=hover, hoverinfo="skip" if selectable else None,
    ))
    if selectable:
        rows, columns = np.indices(counts.shape)
        figure.add_trace(go.Scatter(
            x=[labels[c] for c in columns.ravel()], y=[labels[r] for r in rows.ravel()], mode="markers",
            customdata=np.stack([counts.ravel(), share.ravel()], axis=1), showlegend=False,
            marker={"symbol": "square", "size": CELL_MARKER_SIZE, "color": "rgba(0,0,0,0)",
                    "line": {"width": 0}},
            selected={"marker": {"color": "rgba(255,140,0,0.45)"}},
            unselected={"marker": {"opacity": 1}}, name="cells",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[0]} faces "
                          "(%{customdata[1]:.1%} of true %{y})<br>click to see these faces<extra></extra>",
        ))
        figure.update_layout(clickmode="event+select")
    figure.update_layout(title=title, height=520, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_xaxes(title="predicted", side="bottom", tickangle=tickangle)
    # First class at the top, as in a printed confusion matrix.
    figure.update_yaxes(title="true", autorange="reversed")
    return figure


def selected_cell(selection: Mapping[str, Any] | None,
                  classes: Sequence[str] = CLASSES) -> tuple[str, str] | None:
    """(true class, predicted class) of the cell clicked in a selectable ``confusion_figure``, from
    Streamlit's selection state (``{"points": [{"x": predicted, "y": true, ...}], ...}``); None
    without a (valid) point. With several points selected, the last one counts."""
    points = (selection or {}).get("points") or []
    for point in reversed(points):
        if not isinstance(point, Mapping):
            continue
        true, predicted = point.get("y"), point.get("x")
        if true in classes and predicted in classes:
            return str(true), str(predicted)
        index = point.get("point_index")
        if isinstance(index, int) and 0 <= index < len(classes) ** 2:
            return classes[index // len(classes)], classes[index % len(classes)]
    return None


def short_title(name: str, limit: int = 22) -> str:
    """``name`` cut to ``limit`` characters (with an ellipsis), for a figure title in a narrow column."""
    name = str(name)
    return name if len(name) <= limit else name[:limit - 1] + "…"


def confusion_difference_figure(matrix_a: Sequence[Sequence[int]], matrix_b: Sequence[Sequence[int]],
                                names: tuple[str, str], classes: Sequence[str] = CLASSES,
                                title: str = "") -> go.Figure:
    """The difference of two row-normalised confusion matrices, ``a`` minus ``b``, in percentage
    points on a diverging scale centred on 0 (blue: ``a`` has the larger share, red: ``b``)."""
    difference = (row_shares(matrix_a) - row_shares(matrix_b)) * 100
    labels = list(classes)
    limit = max(1.0, float(np.abs(difference).max()))
    figure = go.Figure(go.Heatmap(
        z=difference, x=labels, y=labels, text=[[f"{value:+.0f}" for value in row] for row in difference],
        texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit,
        colorbar={"title": "points"},
        hovertemplate=f"true %{{y}}<br>predicted %{{x}}<br>{names[0]} minus {names[1]}: "
                      "%{z:+.1f} points of the row<extra></extra>",
    ))
    figure.update_layout(title=title or f"Difference in percentage points<br><sup>{short_title(names[0])} "
                                        f"minus {short_title(names[1])}</sup>",
                         height=520, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    figure.update_xaxes(title="predicted", side="bottom", tickangle=0)
    figure.update_yaxes(title="true", autorange="reversed")
    return figure


def f1_delta_frame(report_a: Mapping[str, Any], report_b: Mapping[str, Any], names: tuple[str, str],
                   classes: Sequence[str] = CLASSES) -> pd.DataFrame:
    """Per-class F1 of two models and the change (``a`` minus ``b``), classes in canonical order
    and their macro average; F1 as shares (0-1)."""
    rows = [name for name in [*classes, "macro avg"] if name in report_a and name in report_b]
    frame = pd.DataFrame(
        [{"class": name, names[0]: report_a[name].get("f1-score"), names[1]: report_b[name].get("f1-score")}
         for name in rows], columns=["class", *names])
    frame[f"{names[0]} minus {names[1]}"] = frame[names[0]] - frame[names[1]]
    return frame.set_index("class")


def f1_delta_figure(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Bars of the per-class F1 change (the last column of ``f1_delta_frame``), in points: green
    where the first model is better, red where it is worse."""
    column = frame.columns[-1]
    delta = frame[column].astype(float) * 100
    figure = go.Figure(go.Bar(
        x=delta, y=list(frame.index), orientation="h",
        marker_color=["#2ca02c" if value >= 0 else "#d62728" for value in delta],
        text=[f"{value:+.1f}" for value in delta], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:+.1f} F1 points<extra></extra>",
    ))
    first, _, second = str(column).partition(" minus ")
    figure.update_layout(title=title or f"F1 change per class (points)<br><sup>{short_title(first)} minus "
                                        f"{short_title(second)}</sup>",
                         height=320, showlegend=False, margin={"l": 10, "r": 40, "t": 60, "b": 10})
    finite = delta[np.isfinite(delta)].to_numpy()
    low, high = min([0.0, *finite]), max([0.0, *finite])
    room = 0.25 * (high - low) + 1  # for the labels outside the bars, on either side
    figure.update_xaxes(title="F1 points", zeroline=True, range=[low - (room if low < 0 else 0), high + room])
    figure.update_yaxes(autorange="reversed")
    return figure


def job_progress(job: Mapping[str, Any], now: float | None = None) -> tuple[float, str]:
    """(fraction done, text) of a background evaluation job (``fer.evaluate.read_job``): the
    batches done of all and, once a batch is done, the time left at the pace so far."""
    now = time.time() if now is None else now
    done, total = int(job.get("batch") or 0), int(job.get("batches") or 0)
    if job.get("state") == "queued":
        return 0.0, "Starting the evaluation…"
    if not total or job.get("predicting") is None:
        return 0.0, f"{str(job.get('phase') or 'starting').capitalize()}…"
    fraction = min(1.0, done / total)
    text = f"Batch {done} of {total}"
    if 0 < done < total:
        pace = max(0.0, float(job.get("updated") or now) - float(job["predicting"])) / done
        left = max(0.0, pace * (total - done) - max(0.0, now - float(job.get("updated") or now)))
        text += f" · about {format_duration(left)} left"
    elif done >= total:
        text += " · writing the results"
    return fraction, text


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


# Columns of the Predict page's CSV download: where each face is, its probabilities, what gave them.
PREDICTION_COLUMNS = ["file", "face", "x", "y", "width", "height", "whole_image",
                      *[f"p_{name}" for name in CLASSES], "top_label", "model", "tta", "detector"]


def spreadsheet_safe(text: str) -> str:
    """A user-supplied text as a table or CSV cell that spreadsheets show as text, never run as a
    formula (``=HYPERLINK(...)``, ``@SUM(A1)``, ...): such a cell starts with an apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def prediction_rows(file: str, results: Sequence[FaceResult], probabilities: np.ndarray, model: str,
                    tta: str) -> list[dict[str, Any]]:
    """One CSV row per face of ``file`` (numbered from 1 as on the page), with ``probabilities``
    (one row per face) given by ``model``; the detector is the one that found the face ("none"
    for a whole image classified without a face)."""
    rows = []
    for number, (result, row) in enumerate(zip(results, probabilities, strict=True), start=1):
        x, y, width, height = (int(value) for value in result.box)
        rows.append({"file": spreadsheet_safe(file), "face": number, "x": x, "y": y, "width": width,
                     "height": height, "whole_image": bool(result.whole_image),
                     **{f"p_{name}": round(float(p), 6) for name, p in zip(CLASSES, row, strict=True)},
                     "top_label": CLASSES[int(np.argmax(row))], "model": spreadsheet_safe(model), "tta": tta,
                     "detector": "none" if result.whole_image else getattr(result, "detector", "")})
    return rows


def predictions_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The rows of ``prediction_rows`` as CSV (UTF-8, header first)."""
    return pd.DataFrame(list(rows), columns=PREDICTION_COLUMNS).to_csv(index=False).encode("utf-8")
