"""Which model Predict, Evaluate and ``python -m fer.evaluate`` start from: the shipped one, or a
finished run (or an ensemble) the user chose with "Use as the default model".

The choice is one small file in the experiments folder (``default-model.json``: the run's id and
when it was chosen), so it survives restarts and travels with the runs; the shipped files in
``fer/assets/default_model/`` are never written. A chosen run that was deleted, is training again
or whose model is damaged falls back to the shipped model with a notice saying why.
No framework is imported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

CHOICE_FILE = "default-model.json"
SHIPPED = "shipped"


class DefaultModelError(ValueError):
    """A run that cannot become the default model (the message says why)."""


@dataclass(frozen=True)
class DefaultModel:
    folder: Path  # a run folder, an ensemble folder or the shipped model's folder
    source: str  # "shipped", or the chosen run's (or ensemble's) id
    notice: str | None = None  # why a chosen default is not used

    @property
    def shipped(self) -> bool:
        return self.source == SHIPPED


def choice_file(root: Path | None = None) -> Path:
    from fer.runs import experiments_dir

    return Path(root or experiments_dir()) / CHOICE_FILE


def check_candidate(run_id: str, root: Path | None = None) -> Path:
    """The folder of run (or ensemble) ``run_id`` if it can be the default model: a finished run
    whose model.keras passes the file checks, or an ensemble whose members are intact."""
    from fer.ensemble import EnsembleError, check_members, is_ensemble
    from fer.predict import ModelError, check_model_file
    from fer.run_folder import ACTIVE_STATES, RunError, RunFolder
    from fer.runs import DAMAGED, experiments_dir, is_run_id, load_run

    if not isinstance(run_id, str) or not is_run_id(run_id):
        raise DefaultModelError(f"{str(run_id)[:40]!r} is not a run id")
    folder = Path(root or experiments_dir()) / run_id
    if not folder.is_dir():
        raise DefaultModelError(f"there is no run {run_id}")
    if is_ensemble(folder):
        try:
            check_members(folder)
        except EnsembleError as exc:
            raise DefaultModelError(str(exc)) from None
        return folder
    try:
        run = load_run(folder)
    except (RunError, OSError) as exc:
        raise DefaultModelError(f"run {run_id} cannot be read: {exc}") from None
    if run.state == DAMAGED:
        raise DefaultModelError(f"run {run_id} is damaged")
    if run.state in ACTIVE_STATES:
        raise DefaultModelError(f"run {run_id} is {run.state}: choose it once it has finished")
    if run.state != "finished":
        raise DefaultModelError(f"run {run_id} is {run.state}: only a finished run can be the default model")
    try:
        check_model_file(RunFolder(folder).model_file)
    except ModelError as exc:
        raise DefaultModelError(str(exc)) from None
    return folder


def current_default(root: Path | None = None) -> DefaultModel:
    """The model to start from: the chosen run while it can be used, else the shipped model (with
    a notice when a choice exists but cannot be used)."""
    from fer import DEFAULT_MODEL_DIR
    from fer.files import FileProblem, load_json

    shipped = DefaultModel(Path(DEFAULT_MODEL_DIR), SHIPPED)
    path = choice_file(root)
    try:
        choice = load_json(path)
    except FileNotFoundError:
        return shipped
    except (OSError, ValueError, FileProblem):
        return DefaultModel(shipped.folder, SHIPPED, f"{CHOICE_FILE} cannot be read: using the shipped model")
    run_id = choice.get("run") if isinstance(choice, dict) else None
    try:
        folder = check_candidate(run_id, root)
    except DefaultModelError as exc:
        return DefaultModel(shipped.folder, SHIPPED, f"The default model chosen before cannot be used "
                                                     f"({exc}): using the shipped model.")
    return DefaultModel(folder, run_id)


def choose_default(run_id: str, root: Path | None = None) -> Path:
    """Make run (or ensemble) ``run_id`` the default model; its folder. DefaultModelError if it
    cannot be one."""
    from fer.files import write_json_atomic

    folder = check_candidate(run_id, root)
    write_json_atomic(choice_file(root), {"run": run_id, "chosen": time.time()})
    return folder


def restore_shipped(root: Path | None = None) -> bool:
    """Start from the shipped model again; False when it already was the default."""
    path = choice_file(root)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def public_accuracy(folder: Path) -> float | None:
    """The model's plain PublicTest (validation) accuracy from its evaluation, if it has one."""
    from fer.evaluate import read_evaluation

    evaluation = read_evaluation(folder)
    try:
        return float(evaluation["splits"]["val"]["accuracy"])
    except (TypeError, KeyError, ValueError):
        return None


def model_path(default: DefaultModel) -> Path:
    """What ``fer.predict.resolve_model_path`` loads for it: a model.keras or an ensemble.json."""
    from fer.ensemble import ENSEMBLE_FILE, is_ensemble
    from fer.run_folder import RunFolder

    if is_ensemble(default.folder):
        return default.folder / ENSEMBLE_FILE
    return RunFolder(default.folder).model_file
