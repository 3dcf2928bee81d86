"""A test-time augmentation evaluation run as a background job, as the Evaluate page starts it.

Copies a model folder (default: the shipped model) to a temporary folder, starts its evaluation
with ``fer.evaluate.start_job`` and follows job.json: how long the page waits for the start, when
the first progress shows, the whole run, and, with ``--stop-after`` batches, how long a stop takes.

Run (prints JSON, also written to bench/results/evaluation_job.json)::

    FER_DATA=... python bench/evaluation_job.py [--tta ten_crop] [--model DIR] [--stop-after 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from fer import DEFAULT_MODEL_DIR  # noqa: E402
from fer.evaluate import read_job, start_job, stop_job  # noqa: E402
from fer.run_folder import RunFolder  # noqa: E402


def copy_model(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("config.json", "status.json", "model.keras"):
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    return target


def follow(run_dir: Path, tta: str, stop_after: int, timeout: float) -> dict:
    started = time.monotonic()
    start_job(run_dir, tta)
    result = {"start_call_s": round(time.monotonic() - started, 3)}
    stop_sent = None
    while time.monotonic() - started < timeout:
        job = read_job(run_dir, tta)
        elapsed = round(time.monotonic() - started, 2)
        if job.get("predicting") and "first_progress_s" not in result:
            result["first_progress_s"] = elapsed
        if stop_after and stop_sent is None and (job.get("batch") or 0) >= stop_after:
            stop_sent = time.monotonic()
            stop_job(run_dir, tta)
        if job.get("state") not in ("queued", "running"):
            result.update(state=job.get("state"), total_s=elapsed, batches=job.get("batches"),
                          batches_done=job.get("batch"), error=job.get("error"))
            if stop_sent is not None:
                result["stop_s"] = round(time.monotonic() - stop_sent, 2)
            return result
        time.sleep(0.2)
    stop_job(run_dir, tta, wait=30)
    return {**result, "state": "timed out"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="a run or model folder")
    parser.add_argument("--tta", default="ten_crop", choices=["none", "flip", "ten_crop"])
    parser.add_argument("--stop-after", type=int, default=0, help="also time a stop after this many batches")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--output", default="")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = copy_model(Path(args.model), Path(tmp) / "model")
        result = {"model": args.model, "tta": args.tta, "run": follow(run_dir, args.tta, 0, args.timeout)}
        if args.stop_after:
            shutil.rmtree(RunFolder(run_dir).eval_dir(args.tta))
            result["stopped"] = follow(run_dir, args.tta, args.stop_after, args.timeout)
    write_result("evaluation_job", result, args.output or None)
    return 0 if result["run"].get("state") == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
