"""Ensembles of runs: several runs' networks whose probabilities are averaged, used as one model.

An ensemble is a small folder beside the runs (``experiments/<name>/``)::

    ensemble.json         the manifest: its members, where they came from, their data settings
    members/<run>.keras   a copy of each member's model.keras (so deleting a run keeps the ensemble)
    eval/, eval-<mode>/   its evaluations, written by ``fer.evaluate`` as for a run

``Predictor.load`` builds one Keras model from the members (an ``Average`` of their softmax
outputs), so Predict, Evaluate, test-time augmentation (each view goes through every member),
Grad-CAM and Export treat it as one network. A member that is missing, changed since the ensemble
was made (sha256), or damaged gives a message naming it. Made on the Evaluate page ("Make an
ensemble of these runs") or with ``python -m fer.ensemble create NAME RUN RUN ...``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fer import IMAGE_SIZE
from fer.files import is_regular_file, write_json_atomic
from fer.run_folder import RunFolder
from fer.schemas import checked, load_checked

ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"
MIN_MEMBERS, MAX_MEMBERS = 2, 16
FORMAT = 1
KIND = "fer-lab ensemble"
# The members' settings that say which faces they validate and test on (kept in the manifest).
DATA_KEYS = ("data", "validation_split", "seed", "max_train_samples")

_MEMBER = {
    "type": "object",
    "required": ["name", "file", "sha256"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "file": {"type": "string", "pattern": r"^members/[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.keras$"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "architecture": {"type": ["string", "null"], "maxLength": 100},
        "crop": {"type": "integer", "minimum": 0, "maximum": IMAGE_SIZE},
        "val_accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "source": {"type": ["string", "null"], "maxLength": 4096},
    },
}
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["kind", "format", "members"],
    "properties": {
        "kind": {"const": KIND},
        "format": {"const": FORMAT},
        "created": {"type": "number", "minimum": 0},
        "members": {"type": "array", "items": _MEMBER, "minItems": MIN_MEMBERS, "maxItems": MAX_MEMBERS},
        "data": {"type": "object"},
        "crop": {"type": "integer", "minimum": 0, "maximum": IMAGE_SIZE},
    },
}


class EnsembleError(ValueError):
    """An ensemble cannot be made or used; the message names the member or the setting."""


def is_ensemble(path: Path | str) -> bool:
    """True for an ensemble folder (or its ensemble.json)."""
    path = Path(path)
    if path.name == ENSEMBLE_FILE:
        return is_regular_file(path)
    return is_regular_file(path / ENSEMBLE_FILE)


def model_file(folder: Path | str) -> Path:
    """The file a model folder is loaded from: an ensemble's ensemble.json, a run's model.keras."""
    folder = Path(folder)
    return folder / ENSEMBLE_FILE if is_ensemble(folder) else RunFolder(folder).model_file


def ensemble_folder(path: Path | str) -> Path:
    path = Path(path)
    return path.parent if path.name == ENSEMBLE_FILE else path


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The checked manifest of an ensemble folder; EnsembleError says what is wrong with it."""
    folder = ensemble_folder(folder)
    manifest, problems = load_checked(folder / ENSEMBLE_FILE, MANIFEST_SCHEMA, times=("created",))
    if manifest is None and not problems:
        raise EnsembleError(f"{folder} is not an ensemble: it has no {ENSEMBLE_FILE}")
    if problems or manifest is None or "members" not in manifest:
        raise EnsembleError(f"ensemble {folder.name} is damaged: {'; '.join(problems[:3])}")
    names = [member["file"] for member in manifest["members"]]
    if len(set(names)) != len(names):
        raise EnsembleError(f"ensemble {folder.name} is damaged: a member file is listed twice")
    return manifest


def check_members(folder: Path | str) -> list[Path]:
    """The member files of an ensemble, each checked to be there, unchanged and a .keras archive,
    without loading any (no TensorFlow import): EnsembleError names the first bad one."""
    from fer.predict import ModelError, check_model_file

    folder = ensemble_folder(folder)
    manifest = read_manifest(folder)
    files = []
    for member in manifest["members"]:
        path = folder / member["file"]
        where = f"ensemble {folder.name}: member {member['name']}"
        if not os.path.lexists(path):
            raise EnsembleError(f"{where} is missing ({member['file']} is not in the ensemble's folder); "
                                "make the ensemble again")
        try:
            check_model_file(path)
        except ModelError as exc:
            raise EnsembleError(f"{where}: {exc}") from None
        if _sha256(path) != member["sha256"]:
            raise EnsembleError(f"{where} is damaged: {member['file']} changed after the ensemble was "
                                "made (its sha256 differs); make the ensemble again")
        files.append(path)
    return files


def load_network(folder: Path | str):
    """(one Keras model averaging the members' probabilities, the ten-crop side to use)."""
    import keras

    from fer.predict import ModelError, load_keras_model

    folder = ensemble_folder(folder)
    manifest = read_manifest(folder)
    files = check_members(folder)
    networks = []
    for index, (member, path) in enumerate(zip(manifest["members"], files, strict=True)):
        try:
            network = load_keras_model(path)
        except ModelError as exc:
            raise EnsembleError(f"ensemble {folder.name}: member {member['name']}: {exc}") from None
        # Each member becomes a named sub-model (two members of one architecture share layer names).
        networks.append(keras.Model(network.inputs[0], network.outputs[0], name=f"member_{index}"))
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    outputs = keras.layers.Average(dtype="float32", name="probabilities")([net(inputs) for net in networks])
    return keras.Model(inputs, outputs, name="ensemble"), int(manifest.get("crop") or 0)


def summary(folder: Path | str) -> str:
    """"ensemble of N: arch, arch x2, ..." (its members' architectures)."""
    try:
        members = read_manifest(folder)["members"]
    except EnsembleError:
        return "ensemble, damaged"
    architectures = [str(member.get("architecture") or "?") for member in members]
    counted = [f"{name} x{architectures.count(name)}" if architectures.count(name) > 1 else name
               for name in dict.fromkeys(architectures)]
    return f"ensemble of {len(members)}: {', '.join(counted)}"


def describe(folder: Path | str) -> str:
    """"<name> (ensemble of N: ..., <test accuracy>)" as lists of models show it."""
    from fer.run_folder import describe_model

    return describe_model(ensemble_folder(folder) / ENSEMBLE_FILE)


def find_ensembles(root: Path | None = None) -> list[Path]:
    """Ensemble folders in the experiments folder, by name."""
    from fer.runs import experiments_dir, is_run_id

    root = Path(root or experiments_dir())
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    return [entry for entry in entries if is_run_id(entry.name) and entry.is_dir() and is_ensemble(entry)]


def _member_model(source: Path) -> tuple[Path, RunFolder]:
    """A member's model.keras and its run folder, from a run folder, a run id or a model.keras."""
    from fer.runs import experiments_dir, is_run_id

    path = Path(source)
    if not path.exists() and is_run_id(str(source)):
        path = experiments_dir() / str(source)
    if path.is_dir():
        if is_ensemble(path):
            raise EnsembleError(f"{path.name} is an ensemble: name its runs instead "
                                "(ensembles are not nested)")
        return RunFolder(path).model_file, RunFolder(path)
    return path, RunFolder(path.parent)


def make_ensemble(sources: list[Path | str], name: str, root: Path | None = None) -> Path:
    """Make ensemble ``name`` in ``root`` (default: the experiments folder) from runs (folders or
    ids) or model.keras files, and return its folder. The members' files are checked (no
    TensorFlow import) and copied; the folder appears whole or not at all."""
    from fer.predict import ModelError, check_model_file
    from fer.runs import experiments_dir, is_run_id

    root = Path(root or experiments_dir())
    if not is_run_id(name):
        raise EnsembleError(f"{name!r} is not a valid ensemble name: use letters, digits, '.', '_' "
                            "and '-', starting with a letter or digit")
    target = root / name
    if os.path.lexists(target):
        raise EnsembleError(f"{name} already exists in {root}: choose another name")
    if len(sources) < MIN_MEMBERS:
        raise EnsembleError(f"an ensemble needs at least {MIN_MEMBERS} runs, got {len(sources)}")
    if len(sources) > MAX_MEMBERS:
        raise EnsembleError(f"an ensemble holds at most {MAX_MEMBERS} runs, got {len(sources)}")
    members: list[dict[str, Any]] = []
    models: list[Path] = []
    for source in sources:
        model, run = _member_model(Path(source))
        try:
            check_model_file(model)
        except ModelError as exc:
            raise EnsembleError(f"member {run.name}: {exc}") from None
        if any(os.path.samefile(model, seen) for seen in models):
            raise EnsembleError(f"{run.name} is named twice: each member must be another run")
        models.append(model)
        config = run.read_config_values() or {}
        status = run.read_status() if run.status_file.is_file() else {}
        stem = run.name if is_run_id(run.name) else f"member{len(members)}"
        if any(member["name"] == stem for member in members):
            stem = f"{stem}-{len(members)}"
        crop = config.get("crop") if isinstance(config.get("crop"), int) else 0
        accuracy = status.get("best_val_accuracy")
        architecture = config.get("architecture")
        members.append({"name": stem, "file": f"{MEMBERS_DIR}/{stem}.keras",
                        "architecture": architecture if isinstance(architecture, str) else None,
                        "crop": crop if 0 <= crop <= IMAGE_SIZE else 0,
                        "val_accuracy": accuracy if isinstance(accuracy, (int, float)) else None,
                        "source": str(Path(os.path.abspath(run.path))), "config": config})
    crops = {member["crop"] for member in members}
    datas = [{key: member["config"].get(key) for key in DATA_KEYS if key in member["config"]}
             for member in members]
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        (staging / MEMBERS_DIR).mkdir()
        for member, model in zip(members, models, strict=True):
            copy = staging / member["file"]
            shutil.copyfile(model, copy)
            with open(copy, "rb") as file:
                os.fsync(file.fileno())
            member["sha256"] = _sha256(copy)
            member.pop("config")
        manifest = {"kind": KIND, "format": FORMAT, "created": time.time(), "members": members,
                    # The members' ten-crop side when they agree (they trained on the same crops).
                    "crop": crops.pop() if len(crops) == 1 else 0,
                    # The first member's data settings: where Evaluate finds its validation and test faces.
                    "data": next((data for data in datas if data), {})}
        _, problems = checked(manifest, MANIFEST_SCHEMA, ENSEMBLE_FILE)
        if problems:
            raise EnsembleError("; ".join(problems))
        write_json_atomic(staging / ENSEMBLE_FILE, manifest)
        os.rename(staging, target)  # fails if the name was taken meanwhile
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # the name was taken meanwhile
            raise EnsembleError(f"{name} already exists in {root}: choose another name") from None
        raise EnsembleError(f"could not write the ensemble: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def data_config(folder: Path | str):
    """A TrainConfig carrying the ensemble's data settings (for ``fer.evaluate``)."""
    from fer.config import ConfigError, TrainConfig

    data = read_manifest(folder).get("data") or {}
    try:
        return TrainConfig.from_dict({key: data[key] for key in DATA_KEYS if key in data})
    except ConfigError as exc:
        raise EnsembleError(f"ensemble {ensemble_folder(folder).name}: its data settings are damaged: "
                            f"{exc}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python -m fer.ensemble``: make, list or check ensembles of runs."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m fer.ensemble", description=main.__doc__)
    parser.add_argument("--experiments", help="the experiments folder (default: experiments/)")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="make an ensemble of runs (their probabilities are averaged)")
    create.add_argument("name", help="the ensemble's name (a folder in the experiments folder)")
    create.add_argument("runs", nargs="+", help="run ids, run folders or model.keras files")
    create.add_argument("--evaluate", action="store_true",
                        help="then evaluate it on the validation and test faces (prints JSON)")
    sub.add_parser("list", help="the ensembles and their members")
    check = sub.add_parser("check", help="load an ensemble and check that it gives probabilities")
    check.add_argument("name")
    args = parser.parse_args(argv)
    root = Path(args.experiments) if args.experiments else None
    from fer.predict import ModelError
    from fer.runs import experiments_dir

    try:
        if args.command == "create":
            folder = make_ensemble(args.runs, args.name, root)
            print(f"ensemble: {folder}")
            print(describe(folder))
            if args.evaluate:
                from fer.evaluate import evaluate_run

                print(json.dumps(evaluate_run(folder), indent=2))
            return 0
        if args.command == "list":
            for folder in find_ensembles(root):
                print(describe(folder))
            return 0
        from fer.predict import Predictor

        folder = Path(root or experiments_dir()) / args.name
        predictor = Predictor.load(folder)
        print(f"{predictor.description}: loads, gives probabilities")
        return 0
    except (EnsembleError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
