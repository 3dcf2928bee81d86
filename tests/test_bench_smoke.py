"""Every benchmark in bench/ still runs: each with --quick (tiny sizes), one command, JSON out.

Only checks that they run and report what the README table needs; speed targets are measured by
the benchmarks themselves, never asserted here. The tf-keras / fer-PyPI baselines run only where
the bench venv exists (see bench/common.py); without it they are reported as skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fer import PROJECT_ROOT

pytestmark = pytest.mark.slow


def run_bench(name: str, tmp_path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout)
    assert output["benchmark"] == name and output["quick"] is True
    saved = json.loads((PROJECT_ROOT / "bench" / "results" / f"{name}-quick.json").read_text())
    assert saved["benchmark"] == name
    return output


def test_input_pipeline(tmp_path):
    out = run_bench("input_pipeline", tmp_path)
    assert out["pipeline_only"]["ours_flip"]["images_per_s"] > 0
    assert out["training"]["mini_xception"]["model_bound"]["images_per_s"] > 0
    assert "train_mini_xception_ours_flip_vs_model_bound" in out["ratios"]


def test_train_step(tmp_path):
    out = run_bench("train_step", tmp_path)
    rows = out["variants"]["mini_xception"]
    assert rows["baseline"]["epoch_s"] > 0


def test_predict_latency(tmp_path):
    out = run_bench("predict_latency", tmp_path)
    assert out["ours"]["jpg"]["faces"] >= 1 and out["ours"]["jpg"]["p50_ms"] > 0
    assert set(out["ours"]["jpg"]["stages"]) >= {"decode", "detect", "model"}
    assert out["predict_faces_faces_per_s"]["batch_16"] > 0


def test_dashboard(tmp_path):
    out = run_bench("dashboard", tmp_path)
    assert out["apptest_runs_page"]["rerun_median_s"] > 0


def test_memory(tmp_path):
    out = run_bench("memory", tmp_path)
    assert out["workers"]["mini_xception"]["peak_rss_mb"] > 0
    assert out["prediction"]["requests"] == 20


def test_report_table_from_results():
    """bench.report prints a Markdown table (rows for whatever results exist)."""
    result = subprocess.run([sys.executable, "-m", "bench.report", "--quick"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| measurement | result | target | status |")
