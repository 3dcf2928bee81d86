"""Stop during training: seconds from ``fer.workers.stop`` to the run's final status and exit.

    python -m bench.stop_latency              # mini_xception on the real FER2013 (FER_DATA or data/)
    python -m bench.stop_latency --phases validating,first-call --repeats 2
    python -m bench.stop_latency --quick      # synthetic faces, stopped wherever it is (smoke test)

Each repeat launches a background run (mini_xception on 2,000 training faces), waits for the
phase asked for, asks it to stop and times until status.json says stopped, until the worker
holds its lock no more (a Resume can start) and until its process is gone. Phases: ``validating``
(the first epoch's validation, PublicTest: 3,589 faces), ``first-call`` (the first training call,
while the backend traces and compiles the step), ``second-epoch`` (training after the first epoch
was saved). Target: 5 s. On two cores a load above 2 means other processes shared the CPU, so the
times are longer than on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import fer_folder, log, temp_dir, write_result
from fer.config import TrainConfig
from fer.data import resolve_location
from fer.run_folder import RunFolder
from fer.runs import create_run
from fer.workers import effective_state, is_alive, launch, pid_running, stop

TARGET_S = 5.0
START_TIMEOUT_S = 900.0
PHASES = ("validating", "first-call", "second-epoch")


def reached(folder: RunFolder, phase: str) -> bool:
    progress = folder.read_progress()
    if phase == "first-call":
        return progress.get("phase") == "training" and progress.get("epoch") == 1
    if phase == "second-epoch":
        return progress.get("phase") == "training" and (progress.get("epoch") or 0) >= 2
    return progress.get("phase") == phase


def stop_once(root: Path, data: Path, quick: bool, phase: str = "validating") -> dict[str, Any]:
    config = TrainConfig.for_architecture("mini_xception", data=str(data), epochs=3, lr_schedule="none",
                                          max_train_samples=0 if quick else 2000,
                                          batch_size=4 if quick else 64)
    run = create_run(config, root)
    folder = RunFolder(run)
    launch(run)
    deadline = time.monotonic() + START_TIMEOUT_S
    wanted = ("training", "validating") if quick else (phase,)
    while not any(reached(folder, w) for w in wanted):
        if time.monotonic() > deadline or (folder.read_status().get("state") not in ("queued", "running")):
            raise RuntimeError(f"run {run.name} never reached {wanted}: {folder.read_log_tail(20)}")
        time.sleep(0.02)
    progress = folder.read_progress()
    pid = folder.read_status().get("pid")
    load = os.getloadavg()[0]
    start = time.monotonic()
    stop(run)
    recorded = None  # when status.json says the run ended (what the Runs page shows)
    while is_alive(run):
        if recorded is None and folder.read_status().get("state") not in ("queued", "running"):
            recorded = time.monotonic() - start
        time.sleep(0.02)
    seconds = time.monotonic() - start
    while pid and pid_running(pid) and time.monotonic() - start < 120:
        time.sleep(0.02)
    gone = time.monotonic() - start
    log = [line for line in folder.read_log_tail(40).splitlines() if line.startswith("[fer] stop")]
    return {"phase_when_stopped": progress.get("phase"), "epoch_when_stopped": progress.get("epoch"),
            "asked_for": phase, "stop_to_status_s": round(recorded or seconds, 2),
            "stop_to_exit_s": round(seconds, 2), "stop_to_process_gone_s": round(gone, 2),
            "state": effective_state(run), "epochs_kept": folder.completed_epochs(),
            "load_average_1min": round(load, 2), "worker_log": log}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stop_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic faces, one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="stops per phase")
    parser.add_argument("--phases", default="validating",
                        help=f"comma-separated, of {', '.join(PHASES)} (default: validating)")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or set(phases) - set(PHASES):
        parser.exit(2, f"error: --phases takes {', '.join(PHASES)}\n")
    if args.quick:
        data, description = fer_folder(quick=True)
    else:
        data, description = resolve_location(None), "real FER2013"
    root = temp_dir("stop-latency")
    try:
        stops = []
        for repeat in range(1 if args.quick else args.repeats):
            for phase in phases[:1] if args.quick else phases:
                stops.append(stop_once(root, data, args.quick, phase))
                log(f"repeat {repeat + 1}, {phase}: {stops[-1]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    times = sorted(s["stop_to_status_s"] for s in stops)
    write_result("stop_latency", {"quick": args.quick, "data": description, "target_s": TARGET_S,
                                  "stops": stops, "stop_to_status_max_s": times[-1],
                                  "stop_to_status_median_s": times[len(times) // 2],
                                  "stop_to_exit_max_s": max(s["stop_to_exit_s"] for s in stops)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
