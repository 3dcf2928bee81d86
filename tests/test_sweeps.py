"""Sweeps (fer.sweep): settings checked before a study exists, trials as ordinary tagged runs, the
median pruner stopping a bad trial early, a stopped sweep, a killed worker's trial marked failed
while the study goes on, and a real 3-trial sweep on tiny data with SQLite."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_driver import no_exception, open_page
from helpers import run_cli, wait_until, worker_env

import fer.workers
from fer import PROJECT_ROOT
from fer.run_folder import RunFolder
from fer.runs import experiments_dir, list_runs
from fer.search_space import SEARCHABLE, grid, grid_size, validate
from fer.sweep import (
    SweepError,
    SweepSpec,
    create_sweep,
    default_storage,
    list_sweeps,
    load_sweep,
    run_worker,
    stop_sweep,
    sweep_status,
)

FAKE_WORKER = Path(__file__).resolve().parent / "fake_worker.py"


@pytest.fixture
def root(monkeypatch) -> Path:
    monkeypatch.setenv("FER_MAX_RUNS", "1")
    path = experiments_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def fake_training(monkeypatch):
    """Trials train with tests/fake_worker.py: epochs of 0.3 s, val accuracy = 10 x learning rate."""
    monkeypatch.setattr(fer.workers, "worker_command",
                        lambda run_dir: [sys.executable, str(FAKE_WORKER), "--run-dir", str(run_dir)])


def spec(**overrides) -> SweepSpec:
    values = {"architecture": "mini_xception", "trials": 3, "sampler": "random", "seed": 1,
              "space": {"learning_rate": {"choices": [0.03, 0.02, 0.001]}},
              "fixed": {"epochs": 5, "batch_size": 4}, **overrides}
    return SweepSpec(**values)


# ---- settings --------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "problem"), [
    ({"space": {}}, "the search space is empty"),
    ({"space": {"learning_rate": {"low": 0.1, "high": 0.01}}}, "must be below high"),
    ({"space": {"learning_rate": {"low": 0, "high": 0.01, "log": True}}}, "a log range needs low > 0"),
    ({"space": {"dropout": {"low": 0.1, "high": 1.5}}}, "dropout bound 1.5"),
    ({"space": {"architecture": {"choices": ["vgg_fer"]}}}, "'architecture' cannot be searched"),
    ({"space": {"optimizer": {"low": 1, "high": 2}}}, "give choices instead of a range"),
    ({"space": {"epochs": {"low": 2.5, "high": 9}}, "fixed": {}}, "epochs takes whole numbers"),
    ({"space": {"optimizer": {"choices": ["adam", "rmsprop"]}}}, "optimizer choice 'rmsprop'"),
    ({"sampler": "bayes"}, "sampler 'bayes' is unknown"),
    ({"trials": 0}, "trials must be a whole number"),
    ({"fixed": {"epochs": 0}}, "epochs=0"),
])
def test_bad_sweep_settings_are_refused_before_a_study_exists(root, changes, problem):
    storage = default_storage(root)
    with pytest.raises(SweepError) as info:
        create_sweep("bad", spec(**changes), storage)
    assert any(problem in text for text in info.value.problems), info.value.problems
    assert not Path(storage.removeprefix("sqlite:///")).exists() or list_sweeps(storage) == []


def test_names_are_unique_and_run_id_safe(root):
    storage = default_storage(root)
    create_sweep("lr-search", spec(), storage)
    with pytest.raises(SweepError, match="already exists"):
        create_sweep("lr-search", spec(), storage)
    with pytest.raises(SweepError, match="invalid sweep name"):
        create_sweep("bad\nname", spec(), storage)
    assert list_sweeps(storage) == ["lr-search"]
    _, stored = load_sweep("lr-search", storage)
    assert stored == spec().checked()


def test_grid_spreads_ranges_and_caps_the_trials():
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "batch_size": {"choices": [32, 64]},
             "epochs": {"low": 5, "high": 6, "log": False}}
    values = grid(space)
    assert values["learning_rate"] == pytest.approx([1e-4, 1e-3, 1e-2])
    assert values["epochs"] == [5, 6]  # whole numbers, no repeats
    assert grid_size(space) == 12
    assert spec(sampler="grid", space=space, trials=50).planned_trials == 12


def test_a_grid_of_every_searchable_setting_is_refused_at_creation_with_its_size(root):
    """Every setting the Sweeps page offers, ticked: 33.5 million points. Refused before Optuna
    builds anything, with the count and the limit in the message."""
    import fer.sweep

    everything = {name: dict(values) for name, values in SEARCHABLE.items()}
    everything["batch_size"] = {"choices": [16, 32, 48, 64, 96, 128, 256]}
    points = grid_size(validate(everything, "mini_xception"))
    assert points > 30_000_000
    with pytest.raises(SweepError) as error:
        create_sweep("huge", spec(sampler="grid", space=everything, trials=100, fixed={}), default_storage())
    assert f"{points:,} points" in str(error.value) and f"{fer.sweep.MAX_GRID_POINTS:,}" in str(error.value)
    assert list_sweeps(default_storage()) == []
    small = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    assert create_sweep("small", spec(sampler="grid", space=small), default_storage()).planned_trials == 3


def test_reading_a_huge_grid_sweeps_status_never_builds_its_grid(root, monkeypatch):
    """A grid study stored before the limit (or by hand): status reads, which the page makes on
    every view, take no sampler's memory; a worker refuses it with a message."""
    import optuna

    import fer.sweep

    create_sweep("old", spec(sampler="grid", space={"dropout": {"low": 0.0, "high": 0.5}}), default_storage())
    study = optuna.load_study(study_name="old", storage=default_storage())
    huge = validate({name: dict(values) for name, values in SEARCHABLE.items()}, "mini_xception")
    study.set_user_attr(fer.sweep.SPEC_ATTR, {**study.user_attrs[fer.sweep.SPEC_ATTR], "space": huge})

    def no_grid(*args, **kwargs):
        raise AssertionError("a GridSampler was built to read a status")

    monkeypatch.setattr(optuna.samplers, "GridSampler", no_grid)
    status = sweep_status("old", default_storage())
    assert status["study"] == "old" and status["counts"] == {} and status["planned"] == 3
    stop_sweep("old", default_storage())
    with pytest.raises(SweepError, match="more than the 10,000 a worker builds"):
        run_worker("old", default_storage(), root)


def test_cli_create_status_and_errors(root):
    created = run_cli(["fer.sweep", "create", "cli", "--trials", "2", "--param",
                       "learning_rate=1e-4:1e-2:log", "--param", "batch_size=8,16", "--set", "epochs=3"],
                      timeout=120)
    assert created.returncode == 0, created.stderr
    assert "2 trials of mini_xception over learning_rate, batch_size" in created.stdout
    status = run_cli(["fer.sweep", "status", "cli"], timeout=120)
    assert status.returncode == 0 and "no trials yet of 2 planned" in status.stdout
    bad = run_cli(["fer.sweep", "create", "bad", "--param", "learning_rate=1e-2:1e-4"], timeout=120)
    assert bad.returncode == 2 and "must be below high" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli(["fer.sweep", "status", "nope"], timeout=120)
    assert missing.returncode == 2 and "no sweep named 'nope'" in missing.stderr


# ---- running trials ------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_trials_are_tagged_runs_and_the_median_pruner_stops_a_bad_one(root, fake_training):
    """Trials with learning rates 0.03, 0.02 then 0.001 (val accuracy 0.3, 0.2, 0.01 at every
    epoch): the third is below the median of the first two, so it is pruned at epoch 2 of 5."""
    storage = default_storage(root)
    create_sweep("prune", spec(), storage)
    study, _ = load_sweep("prune", storage)
    for rate in (0.03, 0.02, 0.001):
        study.enqueue_trial({"learning_rate": rate})
    assert run_worker("prune", storage, root, poll=0.1) == 3
    status = sweep_status("prune", storage)
    assert [t["state"] for t in status["trials"]] == ["complete", "complete", "pruned"]
    assert status["best"]["number"] == 0 and status["best"]["value"] == pytest.approx(0.3)
    assert status["best"]["run"] == "prune-t000"
    pruned = status["trials"][2]
    assert pruned["epochs reported"] < 5
    runs = {run.run_id: run for run in list_runs(root)}
    assert sorted(runs) == ["prune-t000", "prune-t001", "prune-t002"]
    assert runs["prune-t002"].state == "stopped"
    assert "pruned by its sweep" in runs["prune-t002"].status["note"]
    assert RunFolder(runs["prune-t001"].path).read_sweep_tag() == {
        "study": "prune", "trial": 1, "storage": storage}
    app = open_page("runs", {"run": "prune-t002"})
    no_exception(app)


@pytest.mark.timeout(120)
def test_a_stopped_sweep_stops_its_running_trial_and_starts_no_more(root, fake_training, monkeypatch):
    monkeypatch.setenv("FAKE_EPOCH_S", "1.0")
    storage = default_storage(root)
    create_sweep("halt", spec(fixed={"epochs": 30, "batch_size": 4}), storage)
    import threading

    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(run_worker("halt", storage, root, poll=0.1)))
    worker.start()
    wait_until(lambda: any(run.state == "running" for run in list_runs(root)), 60, "a running trial")
    stop_sweep("halt", storage)
    worker.join(timeout=30)
    assert done == [1]
    status = sweep_status("halt", storage)
    assert status["stopped"] and status["done"]
    assert [t["state"] for t in status["trials"]] == ["fail"]
    assert status["trials"][0]["error"] == "stopped"
    assert [run.state for run in list_runs(root)] == ["stopped"]


# A sweep worker process whose trials train with tests/fake_worker.py (argv[1]).
DRIVER = ("import sys\nimport fer.workers\n"
          "fer.workers.worker_command = lambda run_dir: [sys.executable, sys.argv[1], '--run-dir', "
          "str(run_dir)]\nfrom fer.sweep import main\nsys.exit(main(sys.argv[2:]))\n")


@pytest.mark.timeout(180)
def test_a_killed_worker_s_trial_is_marked_failed_and_the_sweep_goes_on(root, tmp_path, fake_training,
                                                                       monkeypatch):
    """Machine A's worker is killed (-9) during its trial; machine B's worker finishes the other
    trials; once A's heartbeats are older than stale_after_s, its trial reads failed."""
    storage = default_storage(root)
    create_sweep("crash", spec(stale_after_s=5.0, fixed={"epochs": 40, "batch_size": 4}), storage)
    machine_a = tmp_path / "machine-a"
    env = worker_env(FAKE_EPOCH_S="0.5")
    killed = subprocess.Popen([sys.executable, "-c", DRIVER, str(FAKE_WORKER), "--storage", storage,
                               "--experiments", str(machine_a), "worker", "--study", "crash"],
                              cwd=PROJECT_ROOT, env=env, start_new_session=True)
    try:
        wait_until(lambda: (machine_a / "crash-t000" / "history.csv").is_file(), 60, "machine A's trial")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        monkeypatch.setenv("FAKE_EPOCH_S", "0.05")
        assert run_worker("crash", storage, tmp_path / "machine-b", poll=0.1) == 2
        wait_until(lambda: sweep_status("crash", storage)["counts"].get("fail") == 1, 30,
                   "the killed worker's trial to be marked failed")
        status = sweep_status("crash", storage)
        assert status["counts"] == {"fail": 1, "complete": 2} and status["done"]
        assert "heartbeat" in status["trials"][0]["error"]
    finally:
        if killed.poll() is None:
            killed.kill()
        for status_file in machine_a.glob("*/status.json"):  # the orphaned trial run
            pid = json.loads(status_file.read_text()).get("pid")
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_a_trial_failed_for_a_dead_worker_follows_its_run_that_finished(root):
    """kill -9 of a worker: the study fails its trial (no heartbeat) while the trial's run goes on
    and finishes with a model. The status then reads that trial complete with the run's result,
    and it can be the best; a trial that failed for a reason of its own stays failed."""
    import optuna
    from fake_runs import fake_run

    from fer.sweep import ERROR_ATTR, RUN_ATTR

    storage = default_storage(root)
    create_sweep("orphan", spec(trials=3), storage)
    study = optuna.load_study(study_name="orphan", storage=storage)
    for number, error in ((0, None), (1, "the dataset was deleted"), (2, None)):
        trial = study.ask()
        trial.set_user_attr(RUN_ATTR, f"orphan-t{number:03d}")
        if error:
            trial.set_user_attr(ERROR_ATTR, error)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    fake_run(root, "orphan-t000")  # finished, best validation accuracy 0.36
    fake_run(root, "orphan-t001")
    fake_run(root, "orphan-t002", state="failed", error="out of memory")
    status = sweep_status("orphan", storage)
    assert status["counts"] == {"complete": 1, "fail": 2}
    first = status["trials"][0]
    assert first["state"] == "complete" and first["value"] == pytest.approx(0.36) and not first["error"]
    assert "its run finished" in first["note"]
    assert status["best"]["number"] == 0 and status["best"]["run"] == "orphan-t000"
    assert [trial["state"] for trial in status["trials"][1:]] == ["fail", "fail"]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_three_trial_sweep_trains_real_runs_with_sqlite(root, tiny_data):
    storage = default_storage(root)
    create_sweep("real", SweepSpec(
        architecture="mini_xception", trials=3, sampler="tpe", seed=3, pruning=False,
        space={"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "batch_size": {"choices": [4, 8]}},
        fixed={"epochs": 2, "data": str(tiny_data), "augment": False, "early_stopping_patience": 0}), storage)
    started = time.monotonic()
    result = run_cli(["fer.sweep", "worker", "--study", "real"], timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "this worker ran 3 trial(s)" in result.stdout
    status = sweep_status("real", storage)
    assert status["counts"] == {"complete": 3}, status["trials"]
    runs = {run.run_id: run for run in list_runs(root)}
    assert sorted(runs) == ["real-t000", "real-t001", "real-t002"]
    for trial in status["trials"]:
        run = runs[trial["run"]]
        assert run.state == "finished" and run.status["best_val_accuracy"] == pytest.approx(trial["value"])
        assert run.config["learning_rate"] == pytest.approx(trial["params"]["learning_rate"])
    printed = run_cli(["fer.sweep", "status", "real"], timeout=120).stdout
    assert "3 complete of 3 planned" in printed and f"run {status['best']['run']}" in printed
    print(f"3 trials in {time.monotonic() - started:.0f} s")


@pytest.mark.timeout(120)
def test_a_seeded_sweep_draws_the_same_values_however_many_workers_run_it(root, tmp_path, fake_training):
    """Seeds are per trial number: two workers never repeat each other's draws, and one worker
    running the same seeded sweep draws the same values trial for trial."""
    storage = default_storage(root)
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "dropout": {"low": 0.0, "high": 0.5}}
    for name in ("two-workers", "one-worker"):
        create_sweep(name, spec(trials=4, space=space, fixed={"epochs": 1, "batch_size": 4}), storage)
    assert run_worker("two-workers", storage, tmp_path / "a", poll=0.05, max_trials=2) == 2
    assert run_worker("two-workers", storage, tmp_path / "b", poll=0.05, max_trials=2) == 2
    assert run_worker("one-worker", storage, tmp_path / "c", poll=0.05) == 4
    drawn = {name: [tuple(t["params"].values()) for t in sweep_status(name, storage)["trials"]]
             for name in ("two-workers", "one-worker")}
    assert len(set(drawn["two-workers"])) == 4
    assert drawn["two-workers"] == drawn["one-worker"]


def test_postgresql_urls_name_the_installed_driver():
    from fer.sweep import driver_url, shown_storage

    assert driver_url("postgresql://fer:secret@db/sweeps") == "postgresql+psycopg2://fer:secret@db/sweeps"
    assert driver_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "secret" not in shown_storage("postgresql+psycopg2://fer:secret@db/sweeps")
