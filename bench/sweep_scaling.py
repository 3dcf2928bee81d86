"""Sweep scale-out: the wall time of one small study with 1 worker and with 2 workers.

    python -m bench.sweep_scaling                  # 4 trials x 1 epoch, 1 vs 2 workers, 2 rounds
    python -m bench.sweep_scaling --quick          # 2 trials on a tiny synthetic set, 1 round
    python -m bench.sweep_scaling --storage postgresql+psycopg2://user@host/db   # a shared database

Each configuration creates a new study (random sampler, no pruning, learning rate searched, every
other setting fixed) and starts ``--workers`` worker processes, ``python -m fer.sweep --storage URL
--experiments DIR worker --study NAME``, each as one "machine": its own experiments folder, its own
cache and a one-run queue (FER_MAX_RUNS=1). They share only the study's storage: one SQLite file
per configuration (fine on one machine), or the database given with ``--storage`` (the study is
deleted afterwards). Wall time counts from the workers' start until the last one exits, with every
trial complete; ``speedup_vs_1_worker`` is the median wall time with 1 worker over the median with
N workers (ideal: N). The configurations alternate in order from round to round, because this
machine's speed drifts. The data: a synthetic FER2013-format set (``--train-per-class`` faces per
class) in FER_BENCH_DATA, or ``--data``.

On one machine the workers share its cores, so this measures what a second worker adds there
(mostly overlapping the per-trial start-up: a Python process that imports TensorFlow); a second
machine adds its own cores as well.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import BENCH_DATA, ROOT, log, temp_dir, write_result, write_synthetic_folder

WORKER_TIMEOUT_S = 3600


def synthetic_data(train_per_class: int) -> Path:
    """A synthetic set in the FER2013 layout with ``train_per_class`` training faces per class."""
    test_per_class = max(1, train_per_class // 8)
    root = BENCH_DATA / f"synthetic-{train_per_class}-{test_per_class}"
    if not (root / ".complete").is_file():
        write_synthetic_folder(root, train_per_class, test_per_class)
    return root


def study_spec(args, data: Path):
    """The benchmark's study: ``--trials`` random trials, learning rate searched, no pruning."""
    from fer.sweep import SweepSpec

    fixed = {"epochs": args.epochs, "batch_size": args.batch_size, "data": str(data), "augment": False,
             "early_stopping_patience": 0, "max_train_samples": args.max_train_samples}
    return SweepSpec(architecture=args.architecture, trials=args.trials, fixed=fixed, sampler="random",
                     pruning=False, space={"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}})


def start_worker(machine: Path, storage: str, study: str) -> subprocess.Popen:
    """One "machine": a sweep worker with its own experiments folder, cache and one-run queue."""
    experiments = machine / "experiments"
    experiments.mkdir(parents=True)
    env = {**os.environ, "FER_MAX_RUNS": "1", "FER_CACHE": str(machine / "cache"),
           "FER_EXPERIMENTS": str(experiments), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    with open(machine / "worker.log", "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fer.sweep", "--storage", storage, "--experiments", str(experiments),
             "worker", "--study", study], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT)


def wait_all(workers: list[subprocess.Popen], machines: list[Path]) -> None:
    """Wait for every worker; kill them all and raise with the logs when one fails or hangs."""
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    try:
        for worker in workers:
            code = worker.wait(max(1.0, deadline - time.monotonic()))
            if code != 0:
                raise RuntimeError(f"a sweep worker exited with {code}")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        tails = "\n".join(f"--- {m / 'worker.log'}\n{(m / 'worker.log').read_text(errors='replace')[-2000:]}"
                          for m in machines)
        raise RuntimeError(f"{exc}\n{tails}") from None


def trial_times(machines: list[Path]) -> dict[str, Any]:
    """Per machine, its trials; the median trial's seconds from the start of its run's process to
    its end (status.json ``queued`` -> ``ended``: Python and TensorFlow start-up, data, training,
    evaluation)."""
    from fer.run_folder import RunFolder

    per_machine, seconds = [], []
    for machine in machines:
        runs = [path for path in sorted((machine / "experiments").iterdir()) if RunFolder(path).is_run()]
        per_machine.append(len(runs))
        for run in runs:
            status = RunFolder(run).read_status()
            if status.get("ended") and status.get("queued"):
                seconds.append(status["ended"] - status["queued"])
    return {"trials_per_worker": per_machine,
            "trial_run_s_median": round(statistics.median(seconds), 2) if seconds else None}


def measure(args, workers: int, storage: str | None, data: Path, work: Path) -> dict[str, Any]:
    """One study with ``workers`` workers: wall seconds, completed trials, trials per worker."""
    from fer.sweep import create_sweep, sweep_status

    name = f"scaling-{workers}w-{uuid.uuid4().hex[:8]}"
    folder = work / name
    folder.mkdir(parents=True)
    storage = storage or f"sqlite:///{folder / 'sweeps.db'}"
    create_sweep(name, study_spec(args, data), storage)
    machines = [folder / f"machine-{index}" for index in range(workers)]
    log(f"{name}: {args.trials} trials, {workers} worker(s)")
    start = time.perf_counter()
    wait_all([start_worker(machine, storage, name) for machine in machines], machines)
    wall = time.perf_counter() - start
    counts = sweep_status(name, storage)["counts"]
    if args.storage:
        _delete_study(name, storage)
    row = {"wall_s": round(wall, 2), "complete_trials": counts.get("complete", 0), "counts": counts,
           **trial_times(machines)}
    log(f"  -> {row}")
    return row


def _delete_study(name: str, storage: str) -> None:
    """Leave a shared database as it was."""
    import optuna

    from fer.sweep import open_storage

    optuna.delete_study(study_name=name, storage=open_storage(storage))


def summarize(rows: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per worker count: the rounds and the median wall time; speed-ups against the fewest workers."""
    table = {}
    for workers, measured in rows.items():
        table[str(workers)] = {
            "median_wall_s": round(statistics.median(row["wall_s"] for row in measured), 2),
            "wall_s_per_round": [row["wall_s"] for row in measured],
            "complete_trials_per_round": [row["complete_trials"] for row in measured],
            "trials_per_worker_per_round": [row["trials_per_worker"] for row in measured],
            "trial_run_s_median_per_round": [row["trial_run_s_median"] for row in measured]}
    base = min(rows)
    speedups = {key: round(table[str(base)]["median_wall_s"] / row["median_wall_s"], 3)
                for key, row in table.items()}
    efficiency = {key: round(value * base / int(key), 3) for key, value in speedups.items()}
    return {"workers": table, f"speedup_vs_{base}_worker": speedups, "parallel_efficiency": efficiency}


def parse_args(argv: list[str] | None):
    """The options; defaults that depend on ``--quick`` are filled in."""
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_scaling",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--trials", type=int, default=None, help="trials per study (default 4; quick 2)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=None,
                        help="studies per worker count (default 2; quick 1)")
    parser.add_argument("--architecture", default="mini_xception")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32; quick 4")
    parser.add_argument("--train-per-class", type=int, default=64,
                        help="synthetic training faces per class (quick: 4)")
    parser.add_argument("--max-train-samples", type=int, default=0, help="0: every training face")
    parser.add_argument("--data", default="", help="a dataset instead of the synthetic one (e.g. FER2013)")
    parser.add_argument("--storage", default="", help="a shared database URL (default: an SQLite file)")
    args = parser.parse_args(argv)
    args.trials = args.trials or (2 if args.quick else 4)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.batch_size = args.batch_size or (4 if args.quick else 32)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = sorted({int(value) for value in args.workers.split(",") if value.strip()})
    data = Path(args.data) if args.data else synthetic_data(4 if args.quick else args.train_per_class)
    work = temp_dir("sweep-scaling")
    # The studies' SQLite files live in this work folder: a place sweep storage may be (the
    # workers inherit it).
    roots = [str(work), os.environ.get("FER_DATA_ROOTS")]
    os.environ["FER_DATA_ROOTS"] = os.pathsep.join(root for root in roots if root)
    try:
        rows: dict[int, list[dict[str, Any]]] = {workers: [] for workers in counts}
        for round_number in range(args.rounds):
            for workers in (counts if round_number % 2 == 0 else counts[::-1]):
                rows[workers].append(measure(args, workers, args.storage or None, data, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from fer.sweep import shown_storage

    write_result("sweep_scaling", {
        "quick": args.quick, "data": str(data), "rounds": args.rounds,
        "storage": shown_storage(args.storage) if args.storage else "one SQLite file per study (one machine)",
        "study": {"architecture": args.architecture, "trials": args.trials, "epochs": args.epochs,
                  "batch_size": args.batch_size, "max_train_samples": args.max_train_samples,
                  "sampler": "random", "pruning": False, "searched": "learning_rate 1e-4..1e-2 (log)"},
        **summarize(rows)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
