"""Memory: the Streamlit server, a training worker per preset, and 200 predictions.

    python -m bench.memory            # server with 500 runs + model, every preset, 200 predictions
    python -m bench.memory --quick    # mini_xception worker on a tiny synthetic set, 20 predictions

* Server: ``streamlit run`` with 500 synthetic runs (temporary ``FER_EXPERIMENTS``) after headless
  Chromium opened the Runs page and the Predict page and classified a 1 MP photo (model loaded):
  resident memory now (VmRSS) and peak (VmHWM) from /proc.
* Worker: ``python -m fer.train --run-dir`` per preset on the real FER2013 (the whole dataset is
  loaded, as in a real run) with ``max_train_samples`` = 20 batches; stopped with SIGTERM (the
  worker's clean stop) after a few training steps, because full epochs of vgg_fer and
  vgg16_transfer take most of an hour on two cores. Peak RSS from ``wait4``'s ru_maxrss.
* Prediction: ``Predictor.predict_image`` on the 1 MP photo 200 times in one process; RSS after
  the 20th and the 200th request (growth after warm-up should be ~0).

Chromium: Debian's /usr/bin/chromium driven by Playwright. Needs no bench venv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    ROOT,
    StreamlitServer,
    chromium,
    encode,
    face_photo,
    fer_folder,
    log,
    prediction_model,
    rss_mb,
    temp_dir,
    wait_idle,
    write_result,
)
from fer.run_folder import RunFolder

PRESETS = ("mini_xception", "vgg_fer", "seed_cnn_a", "seed_cnn_b", "seed_cnn_c", "vgg16_transfer")


def server_memory(work: Path, runs: int, model_path: Path) -> dict:
    from bench.dashboard import make_runs, timed_goto

    root = work / "experiments"
    ids = make_runs(root, runs)
    shutil.copyfile(model_path, RunFolder(root / ids[0]).model_file)
    server = StreamlitServer({"FER_EXPERIMENTS": str(root), "FER_CACHE": str(work / "cache")},
                             work / "server.log")
    playwright, browser = chromium()
    try:
        idle = server.memory()
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        timed_goto(page, f"{server.url}/runs", ".js-plotly-plot", "[data-testid=stDataFrame]")
        after_runs = server.memory()
        timed_goto(page, f"{server.url}/predict", "input[type=file]")
        photo = work / "astronaut-1024.jpg"
        photo.write_bytes(encode(face_photo(1024), "JPEG"))
        page.locator("input[type=file]").first.set_input_files(str(photo))
        page.get_by_text("Face 1").first.wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        return {"runs": runs, "at_start": idle, "after_runs_page": after_runs,
                "after_prediction": server.memory()}
    finally:
        browser.close()
        playwright.stop()
        server.stop()


def worker_memory(preset: str, data: Path, root: Path, batch: int, stop_after: int) -> dict:
    """Peak RSS of a training worker for ``preset`` over a few steps, then a clean SIGTERM stop."""
    from fer.config import TrainConfig
    from fer.run_folder import RunFolder
    from fer.runs import create_run

    config = TrainConfig.for_architecture(preset, data=str(data), epochs=1, batch_size=batch,
                                          max_train_samples=batch * 20)
    run_dir = create_run(config, root, f"mem-{preset}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "FER_EXPERIMENTS": str(root)}
    start = time.perf_counter()
    with open(RunFolder(run_dir).log_file, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "fer.train", "--run-dir", str(run_dir)], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    peak_seen, steps_seen, deadline = 0.0, 0, time.monotonic() + 900
    while process.poll() is None and time.monotonic() < deadline:
        progress = RunFolder(run_dir).read_progress()
        steps_seen = int(progress.get("batch") or 0) if progress.get("phase") == "training" else steps_seen
        peak_seen = max(peak_seen, rss_mb(process.pid).get("peak_rss_mb") or 0)
        if steps_seen >= stop_after or progress.get("phase") in ("validating", "evaluating"):
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.1)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    state = RunFolder(run_dir).read_status().get("state")
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "steps_seen": steps_seen, "state": state,
            "seconds": round(time.perf_counter() - start, 1), "batch_size": batch,
            "train_images": batch * 20, "exit_code": process.returncode}


def prediction_memory(model_path: Path, requests: int) -> dict:
    from fer.predict import Predictor

    predictor = Predictor.load(model_path)
    data = encode(face_photo(1024), "JPEG")
    samples = {}
    for i in range(1, requests + 1):
        predictor.predict_image(data)
        if i in (1, 20, requests // 2, requests):
            samples[i] = rss_mb(os.getpid())["rss_mb"]
    warm = samples[min(20, requests)]
    return {"requests": requests, "rss_mb_after_request": samples,
            "growth_after_warmup_mb": round(samples[requests] - warm, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--no-server", action="store_true")
    args = parser.parse_args(argv)
    work = temp_dir("memory")
    os.environ["FER_CACHE"] = str(work / "cache")
    try:
        model_path, model_kind = prediction_model(args.quick, work)
        data, data_kind = fer_folder(args.quick)
        workers = {}
        for preset in (["mini_xception"] if args.quick else args.presets.split(",")):
            log(f"worker {preset}")
            workers[preset] = worker_memory(preset, data, work / "experiments-workers",
                                            8 if args.quick else 64, 1 if args.quick else 3)
            log(f"  -> {json.dumps(workers[preset])}")
        prediction = prediction_memory(model_path, 20 if args.quick else 200)
        log(f"prediction: {prediction}")
        server = {"skipped": "--quick / --no-server"} if args.quick or args.no_server else \
            server_memory(work, args.runs, model_path)
        write_result("memory", {"quick": args.quick, "data": f"{data_kind} ({data})", "model": model_kind,
                                "server": server, "workers": workers, "prediction": prediction})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
