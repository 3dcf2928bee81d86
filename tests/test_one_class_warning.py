"""A model that predicts one class for (nearly) every face is flagged, with a hint, by
fer.evaluate.one_class_warning, on its Runs card and on the Evaluate page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from app_driver import no_exception, open_page, texts
from fake_runs import fake_run, fake_split

from fer import CLASSES
from fer.evaluate import ONE_CLASS_SHARE, one_class_warning, read_evaluation, write_evaluation
from fer.runs import experiments_dir


def collapsed_evaluation(run_dir: Path, predicted: str = "angry", share: float = 1.0) -> dict:
    """An evaluation whose model answers ``predicted`` for ``share`` of the faces."""
    splits, probabilities = {}, {}
    for seed, name in enumerate(("val", "test")):
        split, probs = fake_split(20, seed)
        collapsed = np.random.default_rng(seed).random(len(probs)) < share
        probs[collapsed] = 0.01
        probs[collapsed, CLASSES.index(predicted)] = 0.94
        splits[name], probabilities[name] = split, probs
    write_evaluation(run_dir / "eval", splits, probabilities)
    return read_evaluation(run_dir)


def test_one_class_for_every_face_is_named_with_its_share_and_a_hint(tmp_path):
    metrics = collapsed_evaluation(tmp_path / "run", "disgust")
    warning = one_class_warning(metrics)
    assert "predicts 'disgust' for 100% of the 140 test faces" in warning
    assert "Train longer" in warning and "lower the learning rate" in warning


def test_spread_predictions_or_a_mostly_collapsed_model_below_the_threshold_pass(tmp_path):
    assert one_class_warning(collapsed_evaluation(tmp_path / "spread", share=0.0)) is None
    below = collapsed_evaluation(tmp_path / "below", share=ONE_CLASS_SHARE - 0.2)
    assert one_class_warning(below) is None


def test_runs_card_and_evaluate_page_flag_a_one_class_model():
    run_dir = fake_run(experiments_dir(), "collapsed", evaluation=False)
    collapsed_evaluation(run_dir, "angry")
    fake_run(experiments_dir(), "healthy", created=1)
    runs = open_page("runs", {"run": ["collapsed", "healthy"]})
    no_exception(runs)
    warnings = [text for text in texts(runs.warning) if "predicts" in text]
    assert len(warnings) == 1 and "'angry' for 100%" in warnings[0]
    evaluate = open_page("evaluate", {"run": "collapsed"})
    no_exception(evaluate)
    assert any("predicts 'angry' for 100%" in text for text in texts(evaluate.warning))


@pytest.mark.slow
def test_the_worker_log_carries_the_warning_exactly_when_the_evaluation_has_one(trained_run):
    assert trained_run.returncode == 0, trained_run.output[-3000:]
    hint = one_class_warning(read_evaluation(trained_run.path))
    logged = [line for line in trained_run.output.splitlines() if line.startswith("[fer] warning: The model")]
    assert logged == ([f"[fer] warning: {hint}"] if hint else [])
