"""Run every benchmark (full sizes) one after another, then print the README table.

    python -m bench.all            # about 45 minutes on 2 CPU cores; refuses while a run trains
    python -m bench.all --quick    # the smoke-test sizes
    python -m bench.all --force    # measure even while a training run is active (numbers skewed)

Each benchmark is its own process (``python -m bench.<name>``); results land in bench/results/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.common import ROOT, active_training_runs, log

BENCHMARKS = ("input_pipeline", "train_step", "predict_latency", "detectors", "dashboard", "memory",
              "export_formats", "quick_trial", "stop_latency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--force", action="store_true", help="run even while a training run is active")
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    args = parser.parse_args(argv)
    busy = active_training_runs()
    if busy and not args.quick and not args.force:
        print("error: training is running, so every number would be skewed:\n  " + "\n  ".join(busy)
              + "\nwait for it to finish, or pass --force", file=sys.stderr)
        return 2
    failed = []
    for name in args.only.split(","):
        start = time.perf_counter()
        log(f"=== bench.{name}")
        result = subprocess.run([sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])],
                                cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
        log(f"=== bench.{name}: exit {result.returncode} after {time.perf_counter() - start:.0f} s")
        if result.returncode:
            failed.append(name)
    subprocess.run([sys.executable, "-m", "bench.report", *(["--quick"] if args.quick else [])], cwd=ROOT,
                   check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
