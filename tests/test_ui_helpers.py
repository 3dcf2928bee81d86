"""fer.ui: the plain figure builders and formatters behind the pages."""

from __future__ import annotations

import argparse
import shlex

import numpy as np
import pandas as pd
import pytest

from fer import CLASSES
from fer.config import TrainConfig
from fer.train import add_config_flags
from fer.ui import (
    cli_command,
    confusion_figure,
    curve_figure,
    misclassified_order,
    probability_figure,
    report_frame,
    run_file,
    upscale,
)


def test_cli_command_recreates_the_same_config():
    """Parsed by the real CLI flags, the command gives back exactly the form's config."""
    values = TrainConfig.for_architecture("vgg_fer", epochs=3, augment=False, learning_rate=2.5e-05,
                                          data="/data/my fer", devices=2, deterministic=False).to_dict()
    command = cli_command(values, "trial-1")
    assert "'/data/my fer'" in command and "--no-augment" in command
    assert "--devices 2 --no-deterministic" in command
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "fer.train"] and words[-2:] == ["--name", "trial-1"]
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    parsed = {k: v for k, v in vars(parser.parse_args(words[3:-2])).items() if v is not None}
    assert TrainConfig.for_architecture(parsed.pop("architecture"), **parsed).to_dict() == values


def test_curve_figure_skips_runs_without_history():
    history = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.5], "val_loss": [2.1, 1.8]})
    figure = curve_figure({"a": history, "empty": pd.DataFrame()}, "loss")
    assert [trace.name for trace in figure.data] == ["a train", "a val"]


def test_confusion_figure_handles_a_class_without_faces():
    counts = np.eye(len(CLASSES), dtype=int) * 5
    counts[1, 1] = 0  # no disgust face in this split
    z = np.asarray(confusion_figure(counts).data[0].z)
    assert z[1].sum() == 0 and z[0, 0] == 1.0


def test_probability_figure_names_the_top_class():
    probabilities = np.array([0.05, 0.05, 0.1, 0.6, 0.1, 0.05, 0.05])
    figure = probability_figure(probabilities)
    assert figure.layout.title.text == "happy (60%)"
    assert list(figure.data[0].y) == list(CLASSES)


def test_report_frame_keeps_canonical_order():
    report = {name: {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 3}
              for name in reversed(CLASSES)}
    assert list(report_frame(report).index) == list(CLASSES)


def test_misclassified_order_filters_and_sorts_by_confidence():
    true = np.array([0, 0, 3, 3])
    predicted = np.array([3, 6, 0, 6])
    confidence = np.array([0.4, 0.9, 0.7, 0.5])
    assert misclassified_order(true, predicted, confidence).tolist() == [1, 2, 3, 0]
    assert misclassified_order(true, predicted, confidence, ["angry"], ["neutral"]).tolist() == [1]


def test_upscale_is_nearest_neighbour():
    face = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    big = upscale(face, 96)
    assert big.shape == (96, 96) and (big[::2, ::2] == face).all() and (big[1::2, 1::2] == face).all()


@pytest.mark.parametrize("name", ["../outside.txt", "link.keras", "missing.csv"])
def test_run_file_only_returns_files_inside_the_run(tmp_path, name):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    (run_dir / "link.keras").symlink_to(tmp_path / "outside.txt")
    assert run_file(run_dir, name) is None
    (run_dir / "history.csv").write_text("epoch\n")
    assert run_file(run_dir, "history.csv") == (run_dir / "history.csv").resolve()
