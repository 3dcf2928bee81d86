"""A sweep on a real PostgreSQL server, with two "machines": two worker processes, each with its own
experiments folder, cache and run queue (FER_MAX_RUNS=1), sharing only the database.

The server comes from tests/postgres.py (skips without PostgreSQL or psycopg2). Workers are started
as ``python -m fer.sweep --storage URL --experiments DIR worker --study NAME``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli, wait_until, worker_env
from postgres import free_port, postgres_server, postgres_url  # noqa: F401 - fixtures

from fer import PROJECT_ROOT
from fer.sweep import SweepSpec, create_sweep, list_sweeps, stop_sweep, sweep_status

pytestmark = pytest.mark.slow

STUDY, TRIALS, MACHINES = "pg-sweep", 4, 2
WORKER_TIMEOUT_S = 480


def tiny_spec(data: Path) -> SweepSpec:
    """4 random trials of a 1-epoch mini-Xception on ``data``, learning rate searched, no pruning."""
    fixed = {"epochs": 1, "batch_size": 4, "data": str(data), "augment": False,
             "early_stopping_patience": 0, "max_train_samples": 0}
    return SweepSpec(architecture="mini_xception", trials=TRIALS, fixed=fixed, sampler="random",
                     pruning=False, seed=7,
                     space={"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}})


def start_machine(folder: Path, storage: str, max_trials: int) -> subprocess.Popen:
    """One "machine": a worker with its own experiments folder, cache and one-run queue."""
    folder.mkdir(parents=True)
    env = worker_env(FER_MAX_RUNS="1", FER_CACHE=str(folder / "cache"),
                     FER_EXPERIMENTS=str(folder / "experiments"))
    with open(folder / "worker.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fer.sweep", "--storage", storage, "--experiments",
             str(folder / "experiments"), "worker", "--study", STUDY, "--max-trials", str(max_trials)],
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def trial_runs(experiments: Path) -> list[Path]:
    """The study's run folders (``<study>-t<NNN>``) in one experiments folder."""
    pattern = re.compile(rf"{re.escape(STUDY)}-t\d{{3}}")
    return sorted(path for path in experiments.glob(f"{STUDY}-t*") if pattern.fullmatch(path.name))


def logs(machines: list[Path]) -> str:
    """Every worker's and run's log tail, for a failing assertion."""
    parts = []
    for folder in machines:
        for log in [folder / "worker.log", *sorted((folder / "experiments").glob("*/*.log"))]:
            if log.is_file():
                parts.append(f"--- {log}\n{log.read_text(errors='replace')[-2000:]}")
    return "\n".join(parts)


def test_postgres_fixture_gives_an_empty_database(postgres_url):  # noqa: F811 - fixture
    assert re.fullmatch(r"postgresql\+psycopg2://fer@127\.0\.0\.1:\d+/\w+", postgres_url)
    assert list_sweeps(postgres_url) == []


@pytest.mark.timeout(600)
def test_two_machines_share_one_study(postgres_url, tiny_data, tmp_path):  # noqa: F811 - fixture
    """Two workers finish a 4-trial study: each trial runs once, on one machine, and is told back.

    Each worker may run at most 2 trials, so both machines must take part, whatever the timing."""
    create_sweep(STUDY, tiny_spec(tiny_data), postgres_url)
    machines = [tmp_path / f"machine-{index}" for index in range(MACHINES)]
    workers = [start_machine(folder, postgres_url, TRIALS // MACHINES) for folder in machines]
    try:
        codes = [worker.wait(WORKER_TIMEOUT_S) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    assert codes == [0] * MACHINES, logs(machines)

    numbers = []
    for folder in machines:
        runs = trial_runs(folder / "experiments")
        assert runs, f"{folder.name} ran no trial\n{logs(machines)}"
        assert f"this worker ran {len(runs)} trial(s)" in (folder / "worker.log").read_text()
        for run in runs:
            tag = json.loads((run / "sweep.json").read_text())
            assert tag["study"] == STUDY and run.name == f"{STUDY}-t{tag['trial']:03d}"
            assert "@127.0.0.1" in tag["storage"]
            numbers.append(tag["trial"])
    assert sorted(numbers) == list(range(TRIALS)), f"a trial ran twice or never: {sorted(numbers)}"

    status = sweep_status(STUDY, postgres_url)
    assert status["counts"] == {"complete": TRIALS} and status["done"]
    for trial in status["trials"]:
        assert trial["run"] == f"{STUDY}-t{trial['number']:03d}"
        assert trial["host"] == socket.gethostname()
        assert 0 <= trial["value"] <= 1 and trial["epochs reported"] == 1

    shown = run_cli(["fer.sweep", "--storage", postgres_url, "status", STUDY], timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"{TRIALS} complete of {TRIALS} planned" in shown.stdout


@pytest.mark.timeout(120)
def test_background_workers_join_the_study(postgres_url, tiny_data, tmp_path):  # noqa: F811 - fixture
    """``python -m fer.sweep run`` starts workers that reach the database (here: a stopped study,
    so each ends at once, having run nothing)."""
    create_sweep(STUDY, tiny_spec(tiny_data), postgres_url)
    stop_sweep(STUDY, postgres_url)
    experiments = tmp_path / "experiments"
    started = run_cli(["fer.sweep", "--storage", postgres_url, "--experiments", experiments, "run", STUDY,
                       "--workers", "2"], timeout=90)
    assert started.returncode == 0, started.stderr
    log_folder = experiments / ".sweeps" / STUDY

    def ended() -> bool:
        texts = [log.read_text() for log in log_folder.glob("*.log")]
        return len(texts) == 2 and all("this worker ran 0 trial(s)" in text for text in texts)

    wait_until(ended, timeout=90, what=f"both background workers to end (logs in {log_folder})")
    assert trial_runs(experiments) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [["status", STUDY], ["worker", "--study", STUDY]])
def test_a_database_that_is_not_there_is_a_message(command):
    """No server on the port: exit code 2, one error line, no traceback, no password."""
    storage = f"postgresql+psycopg2://fer:s3cret-pw@127.0.0.1:{free_port()}/sweeps"
    result = run_cli(["fer.sweep", "--storage", storage, *command], timeout=90)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: cannot open the sweep storage postgresql+psycopg2://fer:***@"), \
        result.stderr
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stdout + result.stderr


def command_lines() -> list[str]:
    """Every process' command line that this machine's ``ps`` shows any user."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines


@pytest.mark.timeout(300)
def test_no_spawned_command_line_holds_the_storage_password(postgres_url, tiny_data, tmp_path):  # noqa: F811
    """Workers started by the Sweeps page (``start_workers``) and the trials they train get the
    storage URL through the environment: ``ps`` never shows its password."""
    from fer.sweep import start_workers

    password = "s3cret-Pa55word"
    url = postgres_url.replace("://fer@", f"://fer:{password}@")  # the test server trusts the user
    assert password in url
    create_sweep("secret", tiny_spec(tiny_data), url)
    experiments = tmp_path / "experiments"
    pids = start_workers("secret", url, 1, experiments)
    try:
        def a_trial_trains():
            lines = [line for line in command_lines() if "fer.sweep" in line or "fer.train" in line]
            assert not any(password in line for line in lines), lines
            return any("fer.train" in line and str(experiments) in line for line in lines)

        wait_until(a_trial_trains, timeout=240, what="a trial's training process", poll=0.2)
        assert not any(password in line for line in command_lines())
    finally:
        stop_sweep("secret", url)  # the worker stops its trial within seconds, then exits
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout=60,
                       what="the sweep's worker to exit", poll=0.5)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
