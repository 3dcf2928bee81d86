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


def run_bench(name: str, tmp_path, *extra: str) -> dict:
    """Runs ``bench.<name> --quick`` (and ``extra`` flags); its results and generated data go to
    ``tmp_path``, never into the project folder."""
    results, data = tmp_path / "results", tmp_path / "bench-data"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "FER_BENCH_RESULTS": str(results), "FER_BENCH_DATA": str(data)}
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick", *extra], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout)
    assert output["benchmark"] == name and output["quick"] is True
    saved = json.loads((results / f"{name}-quick.json").read_text())
    assert saved["benchmark"] == name and saved.keys() == output.keys()
    return output


def test_input_pipeline(tmp_path):
    """Every installed backend, the interleaved feeders, the ratios the README table needs; no
    TensorFlow under JAX; the seeds' generator only on TensorFlow and only with the bench venv."""
    from bench.common import bench_site_packages
    from fer.backends import installed_backends

    out = run_bench("input_pipeline", tmp_path)
    backends = installed_backends()
    assert out["backends"] == backends
    seeds = bench_site_packages() is not None
    for backend in backends:
        pipeline = out["pipeline_only"][backend]["candidates"]
        assert pipeline["ours"]["median_images_per_s"] > 0
        assert ("seeds_idg" in pipeline) == (seeds and backend == "tensorflow")
        row = out["training"][backend]["mini_xception"]
        assert row["backend"] == backend
        expected = {"model_bound", "ours_plain", "ours_preset_aug"} | (
            {"seeds_idg"} if seeds and backend == "tensorflow" else set())
        assert set(row["candidates"]) == expected
        for candidate in row["candidates"].values():
            assert candidate["median_images_per_s"] > 0
            assert len(candidate["ratio_to_fastest_per_round"]) == out["rounds"]
            assert 0 < candidate["median_ratio_to_fastest"] <= 1
            assert len(candidate["fit_wall_images_per_s_per_round"]) == out["rounds"]
        assert row["candidates"]["ours_preset_aug"]["augmentation"] == "preset"
        assert row["candidates"]["ours_plain"]["augmentation"] == "none"
        assert f"{backend}_mini_xception_ours_preset_aug_vs_model_bound" in out["ratios"]
        assert f"{backend}_mini_xception_preset_aug_>=90%_model_bound" in out["targets_met"]
        assert f"{backend}_mini_xception_ours_plain_>=fastest_within_noise" in out["targets_met"]
        if backend == "jax":
            assert row["tensorflow_imported"] is False
            assert out["pipeline_only"][backend]["tensorflow_imported"] is False
    if not any(row["gpu"] for rows in out["training"].values() for row in rows.values()):
        assert out["gpu_target"]["measured"] is False and out["gpu_target"]["met"] is None
        assert "not measured" in out["gpu_target"]["why"]


def test_train_step(tmp_path):
    from fer.backends import installed_backends

    out = run_bench("train_step", tmp_path)
    for backend in installed_backends():
        rows = out["variants"][backend]["mini_xception"]
        speedups = out["speedup_vs_baseline"][backend]["mini_xception"]
        assert set(speedups) == set(rows) and speedups["baseline"] == 1.0
        for variant in rows.values():
            assert variant["epoch_s"] > 0


def test_predict_latency(tmp_path):
    """With the shipped model as a --candidate too: it is timed in the same run, as a ratio."""
    from fer import DEFAULT_MODEL_DIR

    out = run_bench("predict_latency", tmp_path, "--candidate", str(DEFAULT_MODEL_DIR))
    for image_format in ("jpg", "png"):
        ours = out["ours"][image_format]
        # The benchmark photo has one face, and the detector finds it.
        assert ours["faces"] == 1
        assert 0 < ours["p50_ms"] <= ours["p95_ms"]
    assert set(out["ours"]["jpg"]["stages"]) >= {"decode", "detect", "model"}
    assert out["predict_faces_faces_per_s"]["batch_16"] > 0
    candidate = out["candidates"][str(DEFAULT_MODEL_DIR)]
    assert candidate["faces"] == 1 and candidate["p50_over_default"] > 0


def test_dashboard(tmp_path):
    out = run_bench("dashboard", tmp_path)
    assert out["apptest_runs_page"]["rerun_median_s"] > 0
    assert all(isinstance(met, bool) for met in out["targets_met"].values())


def test_memory(tmp_path):
    out = run_bench("memory", tmp_path)
    # A worker has TensorFlow and the dataset loaded: far more than a bare interpreter's ~10 MiB.
    assert out["workers"]["mini_xception"]["peak_rss_mb"] > 100
    prediction = out["prediction"]
    assert prediction["requests"] == 20
    after = {int(k): v for k, v in prediction["rss_mb_after_request"].items()}
    # Growth is counted from the 20th request (the warm-up) to the last.
    assert prediction["growth_after_warmup_mb"] == pytest.approx(after[max(after)] - after[20], abs=0.11)


def test_sweep_scaling(tmp_path):
    """1 and 2 sweep workers each finish the study, every worker with its own experiments folder."""
    out = run_bench("sweep_scaling", tmp_path)
    trials = out["study"]["trials"]
    for workers in (1, 2):
        row = out["workers"][str(workers)]
        assert row["median_wall_s"] > 0 and row["complete_trials_per_round"] == [trials]
        assert [sum(shares) for shares in row["trials_per_worker_per_round"]] == [trials]
        assert all(len(shares) == workers for shares in row["trials_per_worker_per_round"])
    assert out["speedup_vs_1_worker"]["1"] == 1.0 and out["speedup_vs_1_worker"]["2"] > 0


def test_report_table_from_results(tmp_path):
    """bench.report turns a result file into the README's rows, with the target's status."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "memory-quick.json").write_text(json.dumps({
        "benchmark": "memory", "quick": True, "server": {"skipped": "--quick"},
        "workers": {"mini_xception": {"peak_rss_mb": 1044.7}},
        "prediction": {"requests": 20, "growth_after_warmup_mb": 12.5,
                       "rss_mb_after_request": {"1": 700.0, "20": 712.5}}}))
    (results / "stop_latency-quick.json").write_text(json.dumps({
        "benchmark": "stop_latency", "quick": True, "data": "synthetic", "target_s": 5.0,
        "stops": [{"stop_to_status_s": 6.5}], "stop_to_status_max_s": 6.5, "stop_to_status_median_s": 6.5}))
    (results / "quick_trial-quick.json").write_text(json.dumps({
        "benchmark": "quick_trial", "target": ">= 40% PrivateTest in < 300 s",
        "runs": [{"run": "q1", "wall_s": 250.0, "private_test_accuracy": 0.46,
                  "load_average_1min_while_training": [1.2, 1.9], "meets_target": True}]}))
    env = {**os.environ, "FER_BENCH_RESULTS": str(results)}
    result = subprocess.run([sys.executable, "-m", "bench.report", "--quick"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| measurement | result | target | status |"
    assert "| 5 worker peak RSS, mini_xception (MiB) | 1044.7 | measure | - |" in lines
    growth = next(line for line in lines if line.startswith("| 5 RSS growth over 20 predictions"))
    assert growth.endswith("| no growth | **missed** |")  # 12.5 MiB is growth
    assert ("| 7 quick trial q1: command -> evaluated run (s), PrivateTest accuracy | 250.0 s, 46.0% "
            "(1-min load up to 1.9) | >= 40% PrivateTest in < 300 s | met |") in lines
    assert ("| 8 Stop -> run recorded as stopped, 1 stops (synthetic), median / max (s) | 6.5 / 6.5 "
            "| <= 5 s | **missed** |") in lines
    # Every benchmark of bench.all without a result says how to produce it.
    assert "| detectors | not run: `python -m bench.detectors` |  |  |" in lines


def test_dataset_import(tmp_path):
    """bench.dataset_import times the archive import, the CSV conversion and the page's own share."""
    out = run_bench("dataset_import", tmp_path)
    assert out["images"] == out["csv_rows"] == 210
    assert out["csv_pixels_identical_after_conversion"] is True
    for key in ("tar_xzf_s", "import_archive_s", "import_csv_s", "page_script_s"):
        assert out[key] > 0


def test_quick_trial(tmp_path):
    """The quick_trial preset's benchmark trains (one epoch on synthetic faces) and reports the
    accuracy, the wall time and the load it ran under."""
    output = run_bench("quick_trial", tmp_path)
    [run] = output["runs"]
    assert run["settings"]["architecture"] == "mini_xception" and run["settings"]["epochs"] == 1
    assert not run["is_the_quick_trial_preset"]  # --quick changes the epochs and the subset
    assert 0 <= run["private_test_accuracy"] <= 1 and run["wall_s"] > 0
    assert isinstance(run["load_average_1min_while_training"], list)


def test_stop_latency(tmp_path):
    """A background run is stopped and the time until its status and its exit is reported."""
    output = run_bench("stop_latency", tmp_path)
    [stop] = output["stops"]
    assert stop["state"] == "stopped" and 0 < stop["stop_to_status_s"] <= stop["stop_to_exit_s"]
    assert output["stop_to_status_max_s"] == stop["stop_to_status_s"]


def test_gradcam(tmp_path):
    """bench.gradcam times Grad-CAM next to prediction for one face and a gallery page of 48."""
    output = run_bench("gradcam", tmp_path)
    assert set(output["models"]) == {"shipped", "mini_xception", "vgg_fer_compact"}
    for model in output["models"].values():
        assert model["setup_s"] > 0 and len(model["grid"]) == 2
        for count in ("faces_1", "faces_48"):
            for case in ("predicted_class", "chosen_class", "predict_faces"):
                assert 0 < model[count][case]["p50_ms"] <= model[count][case]["p95_ms"]


def test_cpu_preset(tmp_path):
    """Each candidate's speed (params, MFLOPs, wall and CPU rates) and a one-epoch proxy run."""
    out = run_bench("cpu_preset", tmp_path)
    assert [row["candidate"] for row in out["speed"]] == ["vgg16", "tang"]
    vgg16 = out["speed"][0]
    assert vgg16["params"] == 592_119 and vgg16["mflops"] > 0
    assert vgg16["images_per_s"] > 0 and vgg16["images_per_cpu_s_x_cores"] > 0
    assert [row["candidate"] for row in out["proxy"]] == ["vgg16", "tang"]
    assert all(0 <= row["best_public_test"] <= 1 and row["epochs"] == 1 for row in out["proxy"])


def test_video(tmp_path):
    """bench.video counts frames analysed per second on a video of a real face."""
    output = run_bench("video", tmp_path)
    for fps in ("5", "25"):
        rate = output[f"sample_{fps}_per_s"]
        assert rate["faces"] == 1 and rate["sampled_frames"] > 0 and rate["frames_per_s"] > 0
