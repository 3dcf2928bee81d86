"""Hyperparameter sweeps on Optuna: a study in a database, trials that are ordinary runs.

    python -m fer.sweep create NAME --architecture mini_xception --trials 20 \\
        --param learning_rate=1e-4:1e-2:log --param batch_size=32,64 --set epochs=15
    python -m fer.sweep run NAME [--workers 2]      # workers here, in the background
    python -m fer.sweep worker --study NAME --storage URL   # join from another machine
    python -m fer.sweep status NAME | stop NAME | list

A study lives in an Optuna storage: an SQLite file in the experiments folder by default
(``sweeps.db``, nothing to run), or any database URL Optuna supports (PostgreSQL for many
machines). The study's settings (architecture, fixed settings, search space, trial count, sampler,
pruning) are stored with it, so every worker, on any machine, samples the same space.

A worker asks the study for a trial, creates an ordinary run folder ``<study>-t<number>`` in its
experiments folder (tagged with the study in ``sweep.json``), queues it like any launch
(``fer.queue``), reports each epoch's validation accuracy to the study (the median pruner stops a
trial that is worse than the median of the trials before it at the same epoch), and tells the
study the run's best validation accuracy (PublicTest; the test split is never used to choose).
A worker records a heartbeat while its trial runs: when a worker dies, another one marks its trial
failed after ``stale_after_s`` seconds and the study goes on.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fer import PROJECT_ROOT
from fer.config import ConfigError, TrainConfig
from fer.run_folder import FINAL_STATES, RunError, RunFolder
from fer.runs import create_run, experiments_dir, is_run_id
from fer.search_space import (
    SearchSpaceError,
    distributions,
    grid,
    grid_size,
    parse_flag,
    parse_scalar,
    validate,
)
from fer.workers import effective_state, launch, stop

SAMPLERS = ("tpe", "random", "grid")
# The most points a grid may have: Optuna's GridSampler holds every point in memory (33.5 million
# points took 11 GB and 51 s to build), and a grid is meant to be walked through, not sampled.
MAX_GRID_POINTS = 10_000
SPEC_ATTR, STOPPED_ATTR = "fer_sweep", "fer_stopped"
# Trial attributes: the run folder, the machine, why it failed, an extra trial nobody ran.
RUN_ATTR, HOST_ATTR, ERROR_ATTR, SURPLUS_ATTR = "run", "host", "error", "surplus"
STORAGE_FILE = "sweeps.db"
# The storage URL for ``python -m fer.sweep`` when no --storage is given (how started workers get
# it: a URL with a password must not be in a command line).
STORAGE_ENV = "FER_SWEEP_STORAGE"
POLL_S = 1.0
# The median pruner compares a trial with the trials before it only after this many have finished,
# and never at its first epoch (the first epochs of every run look alike).
PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS = 2, 2


class SweepError(ValueError):
    """A sweep operation that cannot be done (unknown study, bad storage, bad settings);
    ``problems`` lists one message each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class SweepSpec:
    """What a study searches; stored in the study (user attribute ``fer_sweep``)."""

    architecture: str
    space: dict[str, dict]
    trials: int
    fixed: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    pruning: bool = True
    stale_after_s: float = 120.0
    seed: int | None = None

    def checked(self) -> SweepSpec:
        """The spec with its space validated (SweepError listing every problem)."""
        problems = []
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler {self.sampler!r} is unknown; choose one of {', '.join(SAMPLERS)}")
        whole = isinstance(self.trials, int) and not isinstance(self.trials, bool)
        if not whole or not 1 <= self.trials <= 10_000:
            problems.append("trials must be a whole number from 1 to 10000")
        if not 5 <= float(self.stale_after_s) <= 86_400:
            problems.append("stale_after_s must be from 5 s to a day")
        try:
            TrainConfig.for_architecture(self.architecture, **self.fixed)
        except ConfigError as exc:
            problems += exc.problems
            raise SweepError(problems) from None
        try:
            space = validate(self.space, self.architecture, self.fixed)
        except SearchSpaceError as exc:
            problems += exc.problems
            space = {}
        if space and self.sampler == "grid" and (points := grid_size(space)) > MAX_GRID_POINTS:
            problems.append(f"the grid has {points:,} points, more than the {MAX_GRID_POINTS:,} a grid "
                            "sweep may have: give fewer settings or fewer choices, or use the tpe or "
                            "random sampler")
        if problems:
            raise SweepError(problems)
        return SweepSpec(**{**asdict(self), "space": space})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SweepSpec:
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        return cls(**known)

    @property
    def planned_trials(self) -> int:
        """The trial count; a grid runs each point once, so at most the grid's size."""
        return min(self.trials, grid_size(self.space)) if self.sampler == "grid" else self.trials


# ---- storage and studies ----------------------------------------------------------------------

def default_storage(root: Path | None = None) -> str:
    return f"sqlite:///{Path(root or experiments_dir()).resolve() / STORAGE_FILE}"


def shown_storage(url: str) -> str:
    """The storage URL without its password (for pages, logs and run folders)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that cannot be parsed is shown as its scheme only
        return url.split(":", 1)[0] + ":…"


def driver_url(url: str) -> str:
    """``postgresql://`` names the psycopg2 driver that fer-lab installs (SQLAlchemy 2.1 would
    otherwise look for psycopg 3)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite storage URL (any driver: ``sqlite+pysqlite:///``), else None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def _is_optuna_database(path: Path) -> bool:
    """Whether the SQLite file at ``path`` holds Optuna's tables, read without writing anything."""
    import sqlite3

    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            tables = {row[0] for row in rows}
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return {"studies", "version_info", "trials"} <= tables


def check_sqlite_storage(url: str, create: bool = False) -> None:
    """A SQLite storage is opened only where it belongs and never made by looking: its file lies in
    the experiments folder or where datasets may be read (``data/``, ``FER_DATA``,
    ``FER_DATA_ROOTS``); viewing needs an existing Optuna database; ``create`` (a new sweep) may
    make the file, in a folder that exists, never over another program's file."""
    path = sqlite_file(url)
    if path is None:
        return
    from fer.data import DataError, check_data_allowed
    from fer.runs import experiments_dir

    shown = shown_storage(url)
    inside_experiments = path.parent.resolve().is_relative_to(experiments_dir().resolve())
    if not inside_experiments:
        try:
            check_data_allowed(path)
        except DataError:
            raise SweepError([f"the sweep storage {shown} is outside the experiments folder and the "
                              "dataset folders (data/, FER_DATA, FER_DATA_ROOTS): fer-lab keeps its "
                              "sweep databases there"]) from None
    if path.exists():
        if not path.is_file() or not _is_optuna_database(path):
            raise SweepError([f"{shown} is not a sweep storage (no Optuna tables): fer-lab does not "
                              "write to another program's file; give a new file's name"])
        return
    if not create:
        raise SweepError([f"there is no sweep storage at {shown} yet: create a sweep there first"])
    if not path.parent.is_dir() and path.parent.resolve() != experiments_dir().resolve():
        raise SweepError([f"the folder of the sweep storage {shown} does not exist: create it first"])


def open_storage(url: str, stale_after_s: float = 120.0, create: bool = False):
    """Optuna's database storage with heartbeats (a silent worker's trial fails after
    ``stale_after_s``). A SQLite file is checked first (``check_sqlite_storage``): only ``create``
    may make one."""
    import optuna
    import sqlalchemy.exc

    url = driver_url(url)
    _quiet_optuna()
    check_sqlite_storage(url, create)
    try:
        if (path := sqlite_file(url)) is not None and create:
            path.parent.mkdir(parents=True, exist_ok=True)  # the experiments folder itself
    except OSError as exc:
        raise SweepError([f"cannot open the sweep storage {shown_storage(url)}: "
                          f"{exc.strerror or exc}"]) from None
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=max(1, int(stale_after_s // 4)), grace_period=int(stale_after_s),
            engine_kwargs={"pool_pre_ping": True})
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise SweepError([f"cannot open the sweep storage {shown_storage(url)}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"]) from None


def _quiet_optuna() -> None:
    """Heartbeats with ask-and-tell are what fer-lab needs; Optuna warns about both on every call."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def _sampler(spec: SweepSpec, trial_number: int = 0):
    """The study's sampler. With a seed, TPE and random are seeded afresh for each trial from the
    seed and the trial's number (unique in the database): a seeded sweep draws the same values
    however many workers run it, and no two workers repeat each other's sequence."""
    import optuna

    seed = None if spec.seed is None else spec.seed + 7919 * trial_number
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(grid(spec.space), seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(spec: SweepSpec):
    import optuna

    if not spec.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                       n_warmup_steps=PRUNER_WARMUP_EPOCHS)


def create_sweep(name: str, spec: SweepSpec, storage: str) -> SweepSpec:
    """A new study (SweepError when the name is taken or the settings are invalid)."""
    import optuna

    if not is_run_id(name) or len(name) > 60:
        raise SweepError([f"invalid sweep name {name!r}: up to 60 letters, digits, '.', '_' and '-'"])
    spec = spec.checked()
    try:
        study = optuna.create_study(study_name=name, direction="maximize",
                                    storage=open_storage(storage, spec.stale_after_s, create=True),
                                    sampler=_sampler(spec), pruner=_pruner(spec))
    except optuna.exceptions.DuplicatedStudyError:
        raise SweepError([f"a sweep named {name!r} already exists in {shown_storage(storage)}"]) from None
    study.set_user_attr(SPEC_ATTR, asdict(spec))
    return spec


def load_sweep(name: str, storage: str, for_trials: bool = False):
    """(the Optuna study, its SweepSpec). Only ``for_trials`` (a worker about to ask for trials)
    gets the sweep's own sampler and pruner: reading a study's state never builds a grid."""
    import optuna

    storage_object = open_storage(storage)
    try:
        bare = optuna.load_study(study_name=name, storage=storage_object)
    except KeyError:
        raise SweepError([f"no sweep named {name!r} in {shown_storage(storage)}"]) from None
    values = bare.user_attrs.get(SPEC_ATTR)
    if not isinstance(values, dict):
        raise SweepError([f"study {name!r} was not created by fer-lab (no sweep settings)"])
    spec = SweepSpec.from_dict(values)
    storage_object = open_storage(storage, spec.stale_after_s)
    if not for_trials:
        return optuna.load_study(study_name=name, storage=storage_object,
                                 sampler=optuna.samplers.RandomSampler()), spec
    if spec.sampler == "grid" and (points := grid_size(spec.space)) > MAX_GRID_POINTS:
        raise SweepError([f"sweep {name!r} is a grid of {points:,} points, more than the {MAX_GRID_POINTS:,} "
                          "a worker builds: create a smaller sweep"])
    study = optuna.load_study(study_name=name, storage=storage_object, sampler=_sampler(spec),
                              pruner=_pruner(spec))
    return study, spec


def list_sweeps(storage: str) -> list[str]:
    """The sweeps in ``storage``; none (and nothing created) for a SQLite file that does not exist."""
    import optuna

    if (path := sqlite_file(driver_url(storage))) is not None and not path.exists():
        check_sqlite_storage(driver_url(storage), create=True)  # still refuses a place it may not be
        return []

    try:
        return sorted(summary.study_name for summary in optuna.get_all_study_summaries(open_storage(storage))
                      if summary.user_attrs.get(SPEC_ATTR))
    except SweepError:
        raise
    except Exception as exc:  # noqa: BLE001 - a database that cannot be read is a message
        raise SweepError([f"cannot read {shown_storage(storage)}: {type(exc).__name__}"]) from None


def stop_sweep(name: str, storage: str) -> None:
    """No new trials; the running ones are stopped by their workers within a few seconds."""
    study, _ = load_sweep(name, storage)
    study.set_user_attr(STOPPED_ATTR, True)


def counted_trials(study) -> list:
    """The study's trials, without extra ones that two workers asked for at the same moment."""
    return [trial for trial in study.get_trials(deepcopy=False) if not trial.user_attrs.get(SURPLUS_ATTR)]


def _recovered_value(trial, root: Path) -> float | None:
    """The result of a trial the study failed because its worker died (no heartbeat) while its
    run went on and finished here: the run's best validation accuracy (None otherwise)."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    if trial.state.name != "FAIL" or trial.user_attrs.get(ERROR_ATTR) or not is_run_id(run_id):
        return None
    run_dir = root / run_id
    if not RunFolder(run_dir).is_run() or effective_state(run_dir) != "finished":
        return None
    value = RunFolder(run_dir).read_status().get("best_val_accuracy")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def sweep_status(name: str, storage: str, root: Path | None = None) -> dict[str, Any]:
    """Counts per trial state, the best trial and every trial (for the CLI and the page). A trial
    the study marked failed when its worker died, whose run then finished in ``root`` (the
    experiments folder), follows its run: it reads complete, with the run's result, and can be
    the best."""
    from optuna.storages import fail_stale_trials

    study, spec = load_sweep(name, storage)
    fail_stale_trials(study)  # a dead worker's trial reads failed, whoever looks first
    trials = counted_trials(study)
    root = Path(root or experiments_dir())
    recovered = {trial.number: value for trial in trials
                 if (value := _recovered_value(trial, root)) is not None}

    def state_of(trial) -> str:
        return "complete" if trial.number in recovered else trial.state.name.lower()

    def value_of(trial) -> float | None:
        return recovered.get(trial.number, trial.value)

    counts: dict[str, int] = {}
    for trial in trials:
        counts[state_of(trial)] = counts.get(state_of(trial), 0) + 1
    complete = [trial for trial in trials if state_of(trial) == "complete"]
    best = max(complete, key=value_of) if complete else None
    finished = sum(counts.get(state, 0) for state in ("complete", "pruned", "fail"))
    return {
        "study": name, "storage": shown_storage(storage), "spec": asdict(spec),
        "stopped": bool(study.user_attrs.get(STOPPED_ATTR)), "planned": spec.planned_trials,
        "counts": counts, "done": finished >= spec.planned_trials or bool(study.user_attrs.get(STOPPED_ATTR))
        and not counts.get("running"),
        "best": None if best is None else {"number": best.number, "value": value_of(best),
                                           "params": best.params, "run": best.user_attrs.get(RUN_ATTR)},
        "trials": [{"number": trial.number, "state": state_of(trial), "value": value_of(trial),
                    "params": trial.params, "run": trial.user_attrs.get(RUN_ATTR),
                    "host": trial.user_attrs.get(HOST_ATTR),
                    "error": None if trial.number in recovered else _failure(trial),
                    "note": ("its worker died, its run finished: the result is the run's"
                             if trial.number in recovered else None),
                    "epochs reported": len(trial.intermediate_values)} for trial in trials],
    }


def _failure(trial) -> str | None:
    if trial.state.name != "FAIL":
        return None
    return trial.user_attrs.get(ERROR_ATTR) or (
        "its worker stopped sending heartbeats (killed, or its machine went away)")


# ---- the worker --------------------------------------------------------------------------------

def run_worker(name: str, storage: str, root: Path | None = None, poll: float = POLL_S,
               max_trials: int | None = None) -> int:
    """Run trials of the study until it has its planned trials or is stopped; returns how many
    this worker ran. ``max_trials`` caps this worker's share."""
    import optuna
    from optuna.storages import fail_stale_trials

    root = Path(root or experiments_dir())
    study, spec = load_sweep(name, storage, for_trials=True)
    space = distributions(spec.space)
    ran = 0
    interrupted = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if threading.current_thread() is threading.main_thread():
        for sig in previous:
            signal.signal(sig, lambda *_: interrupted.set())
    try:
        while max_trials is None or ran < max_trials:
            fail_stale_trials(study)
            if study.user_attrs.get(STOPPED_ATTR) or interrupted.is_set():
                break
            taken = [trial for trial in counted_trials(study) if trial.state.name != "WAITING"]
            if len(taken) >= spec.planned_trials:
                break
            trial = study.ask()
            if trial.number >= spec.planned_trials:  # another worker asked at the same moment
                trial.set_user_attr(SURPLUS_ATTR, True)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                break
            if spec.seed is not None and spec.sampler != "grid":
                study.sampler = _sampler(spec, trial.number)
            for setting, distribution in space.items():
                _suggest(trial, setting, distribution)
            _run_trial(study, spec, trial, storage, root, poll, interrupted)
            ran += 1
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return ran


def _suggest(trial, name: str, distribution) -> Any:
    """Sample one setting of the trial (a trial enqueued with fixed values keeps them)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def _run_trial(study, spec: SweepSpec, trial, storage: str, root: Path, poll: float,
               interrupted: threading.Event) -> None:
    from optuna.trial import TrialState

    trial.set_user_attr(HOST_ATTR, socket.gethostname())
    try:
        config = TrainConfig.for_architecture(spec.architecture, **spec.fixed, **trial.params)
        run_dir = create_run(config, root, run_id=f"{study.study_name}-t{trial.number:03d}")
    except (ConfigError, RunError, OSError) as exc:
        trial.set_user_attr(ERROR_ATTR, str(exc)[:500])
        study.tell(trial, state=TrialState.FAIL)
        return
    folder = RunFolder(run_dir)
    folder.write_sweep_tag(study=study.study_name, trial=trial.number, storage=shown_storage(storage))
    trial.set_user_attr(RUN_ATTR, run_dir.name)
    print(f"[fer] trial {trial.number}: run {run_dir.name} {trial.params}", flush=True)
    launch(run_dir)
    pruned = _watch(study, spec, trial, run_dir, poll, interrupted)
    status = folder.read_status()
    state = effective_state(run_dir)
    if pruned:
        study.tell(trial, state=TrialState.PRUNED)
    elif state == "finished" and status.get("best_val_accuracy") is not None:
        study.tell(trial, float(status["best_val_accuracy"]))
    else:
        reason = status.get("error") or ("stopped" if state == "stopped" else state)
        trial.set_user_attr(ERROR_ATTR, str(reason)[:500])
        study.tell(trial, state=TrialState.FAIL)
    print(f"[fer] trial {trial.number}: {'pruned' if pruned else state}", flush=True)


def _watch(study, spec: SweepSpec, trial, run_dir: Path, poll: float, interrupted: threading.Event) -> bool:
    """Wait for the trial's run to end, reporting each epoch; True if it was pruned."""
    folder = RunFolder(run_dir)
    storage = study._storage
    epochs = int((folder.read_config_values() or {}).get("epochs", 0))
    reported, pruned, stopping = 0, False, False
    while True:
        storage.record_heartbeat(trial._trial_id)
        history = folder.read_history()
        if "val_accuracy" in history.columns:
            for epoch, value in zip(history["epoch"], history["val_accuracy"], strict=True):
                if epoch > reported:
                    trial.report(float(value), int(epoch))
                    reported = int(epoch)
                    # At its last epoch a trial is done: pruning it would only lose its result.
                    if spec.pruning and not pruned and epoch < epochs and trial.should_prune():
                        pruned = True
                        folder.write_status(note=f"pruned by its sweep after epoch {epoch}: its validation "
                                                 "accuracy was below the median of earlier trials")
        stop_now = pruned or interrupted.is_set() or bool(study.user_attrs.get(STOPPED_ATTR))
        if stop_now and not stopping:
            stopping = stop(run_dir)
        if effective_state(run_dir) in FINAL_STATES:
            return pruned
        time.sleep(poll)


def start_workers(name: str, storage: str, count: int = 1, root: Path | None = None) -> list[int]:
    """Start ``count`` workers of the study here as background processes; their pids."""
    root = Path(root or experiments_dir())
    load_sweep(name, storage, for_trials=True)  # a clear error before anything starts
    logs = root / ".sweeps" / name
    logs.mkdir(parents=True, exist_ok=True)
    pids = []
    for _ in range(count):
        log = open(logs / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{len(pids)}.log", "ab")  # noqa: SIM115
        # The storage URL travels in the environment, never in the command line: ``ps`` shows
        # every user a process' arguments, and a PostgreSQL URL holds its password.
        process = subprocess.Popen(
            [sys.executable, "-m", "fer.sweep", "--experiments", str(root), "worker", "--study", name],
            cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", STORAGE_ENV: storage})
        log.close()
        threading.Thread(target=process.wait, daemon=True).start()
        pids.append(process.pid)
    return pids


# ---- the command line -------------------------------------------------------------------------

def _spec_from_args(args) -> SweepSpec:
    space, fixed = {}, {}
    for text in args.param or []:
        key, value = parse_flag(text)
        space[key] = value
    for text in args.set or []:
        if "=" not in text:
            raise SweepError([f"--set {text!r}: write name=value"])
        key, value = text.split("=", 1)
        fixed[key.strip()] = parse_scalar(value.strip())
    return SweepSpec(architecture=args.architecture, space=space, trials=args.trials, fixed=fixed,
                     sampler=args.sampler, pruning=args.pruning, stale_after_s=args.stale_after,
                     seed=args.seed)


def _print_status(status: dict[str, Any]) -> None:
    counts = ", ".join(f"{count} {state}" for state, count in sorted(status["counts"].items()))
    counts = counts or "no trials yet"
    print(f"sweep {status['study']} ({status['storage']}): {counts} of {status['planned']} planned"
          f"{' (stopped)' if status['stopped'] else ''}")
    best = status["best"]
    if best:
        print(f"best: trial {best['number']} val accuracy {best['value']:.4f} run {best['run']} "
              f"{best['params']}")
    for trial in status["trials"]:
        value = "" if trial["value"] is None else f"{trial['value']:.4f}"
        print(f"  {trial['number']:>4} {trial['state']:<8} {value:>7} {trial['run'] or '-'} {trial['params']}"
              f"{'  ' + trial['error'] if trial['error'] else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer.sweep", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--storage",
                        help=f"Optuna storage URL (default: {STORAGE_ENV} if set, else sqlite in "
                             f"experiments/{STORAGE_FILE}); a URL with a password is better given "
                             f"in {STORAGE_ENV}, which other users cannot read with ps")
    parser.add_argument("--experiments", help="where trial runs are created (default: experiments/)")
    # Also accepted after the command (``worker --study NAME --storage URL``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--experiments", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a sweep", parents=[common])
    create.add_argument("name")
    create.add_argument("--architecture", default="mini_xception")
    create.add_argument("--trials", type=int, default=20)
    create.add_argument("--param", action="append", metavar="NAME=LOW:HIGH[:log] | NAME=A,B,C",
                        help="a searched setting (repeat the flag for several)")
    create.add_argument("--set", action="append", metavar="NAME=VALUE", help="a setting every trial shares")
    create.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    create.add_argument("--pruning", action=argparse.BooleanOptionalAction, default=True,
                        help="stop trials below the median of earlier trials at the same epoch")
    create.add_argument("--stale-after", type=float, default=120.0,
                        help="seconds after which a silent worker's trial counts as failed")
    create.add_argument("--seed", type=int, default=None, help="the sampler's seed (reproducible trials)")
    run = sub.add_parser("run", help="start workers of a sweep here, in the background", parents=[common])
    run.add_argument("name")
    run.add_argument("--workers", type=int, default=1)
    worker = sub.add_parser("worker", help="run trials of a sweep in this terminal (any machine)",
                            parents=[common])
    worker.add_argument("--study", required=True)
    worker.add_argument("--max-trials", type=int, default=None, help="stop after this many trials")
    for command, text in (("status", "trials and the best one"), ("stop", "stop a sweep")):
        sub.add_parser(command, help=text, parents=[common]).add_argument("name")
    sub.add_parser("list", help="the sweeps in the storage", parents=[common])
    args = parser.parse_args(argv)
    root = Path(args.experiments) if args.experiments else experiments_dir()
    storage = args.storage or os.environ.get(STORAGE_ENV, "").strip() or default_storage(root)
    try:
        if args.command == "create":
            spec = create_sweep(args.name, _spec_from_args(args), storage)
            print(f"created sweep {args.name}: {spec.planned_trials} trials of {spec.architecture} over "
                  f"{', '.join(spec.space)} in {shown_storage(storage)}")
        elif args.command == "run":
            pids = start_workers(args.name, storage, args.workers, root)
            print(f"started {len(pids)} worker(s): pids {', '.join(map(str, pids))}; logs in "
                  f"{root / '.sweeps' / args.name}")
        elif args.command == "worker":
            ran = run_worker(args.study, storage, root, max_trials=args.max_trials)
            print(f"[fer] this worker ran {ran} trial(s)")
        elif args.command == "status":
            _print_status(sweep_status(args.name, storage))
        elif args.command == "stop":
            stop_sweep(args.name, storage)
            print(f"stopping sweep {args.name}: no new trials; running trials stop within seconds")
        elif args.command == "list":
            print("\n".join(list_sweeps(storage)) or "no sweeps")
    except (SweepError, SearchSpaceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
