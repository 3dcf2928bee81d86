"""Ensembles of runs (fer.ensemble): averaged probabilities, TTA on top, clear messages for missing
or damaged members, evaluation, export and the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_runs import model_run
from helpers import run_cli

from fer.config import TrainConfig
from fer.ensemble import ENSEMBLE_FILE, EnsembleError, find_ensembles, make_ensemble, read_manifest
from fer.predict import ModelError, Predictor
from fer.runs import available_models, create_run, list_runs


@pytest.fixture
def two_runs(tmp_path, tiny_data) -> tuple[Path, Path, Path]:
    root = tmp_path / "experiments"
    return root, model_run(root, "run-a", 1, tiny_data), model_run(root, "run-b", 2, tiny_data)


def faces(count: int = 6) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (count, 48, 48)).astype(np.float32)


def test_an_ensemble_of_two_runs_predicts_the_mean_of_their_probabilities(two_runs):
    root, a, b = two_runs
    folder = make_ensemble([a, b], "pair", root)
    ensemble = Predictor.load(folder)
    first, second = Predictor.load(a), Predictor.load(b)
    batch = faces()
    expected = (first.predict_faces(batch) + second.predict_faces(batch)) / 2
    assert not np.allclose(first.predict_faces(batch), second.predict_faces(batch), atol=1e-4)
    np.testing.assert_allclose(ensemble.predict_faces(batch), expected, atol=1e-6)
    # The members are copies: the runs can go and the ensemble stays usable.
    shutil.rmtree(a)
    np.testing.assert_allclose(Predictor.load(folder).predict_faces(batch), expected, atol=1e-6)


def test_test_time_augmentation_averages_the_ensembles_probabilities_over_views(two_runs):
    from fer.tta import tta_views

    root, a, b = two_runs
    ensemble = Predictor.load(make_ensemble([a, b], "pair", root))
    first, second = Predictor.load(a), Predictor.load(b)
    batch = faces(3)
    logs = [np.log(np.clip((first.predict_faces(view) + second.predict_faces(view)) / 2, 1e-12, 1))
            for view in tta_views(batch, "flip", ensemble.crop_size)]
    mean = np.mean(logs, axis=0)
    expected = np.exp(mean) / np.exp(mean).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ensemble.predict_faces(batch, tta="flip"), expected, atol=1e-5)


def test_the_manifest_names_members_and_their_data_and_the_ensemble_is_no_run(two_runs, tiny_data):
    root, a, b = two_runs
    folder = make_ensemble([a, b.name], "pair", root)  # a folder and a run id
    manifest = read_manifest(folder)
    assert [m["name"] for m in manifest["members"]] == ["run-a", "run-b"]
    assert [m["architecture"] for m in manifest["members"]] == ["mini_xception"] * 2
    assert manifest["members"][1]["val_accuracy"] == pytest.approx(0.32)
    assert Path(manifest["data"]["data"]) == Path(tiny_data)
    assert all((folder / m["file"]).is_file() for m in manifest["members"])
    assert [run.run_id for run in list_runs(root)] == ["run-b", "run-a"] or \
        {run.run_id for run in list_runs(root)} == {"run-a", "run-b"}
    assert find_ensembles(root) == [folder]
    assert "ensemble of 2: mini_xception x2" in Predictor.load(folder).description


def test_available_models_list_ensembles(two_runs, monkeypatch):
    root, a, b = two_runs
    monkeypatch.setenv("FER_EXPERIMENTS", str(root))
    folder = make_ensemble([a, b], "pair", root)
    labels = {path: label for label, path in available_models()}
    assert labels[folder / ENSEMBLE_FILE].startswith("pair (ensemble of 2: mini_xception x2")


@pytest.mark.parametrize("damage, message", [
    ("delete", "member run-b is missing"),
    ("truncate", "member run-b: "),
    ("replace", "member run-b is damaged: members/run-b.keras changed after the ensemble was made"),
])
def test_a_missing_or_damaged_member_is_named(two_runs, damage, message):
    root, a, b = two_runs
    folder = make_ensemble([a, b], "pair", root)
    member = folder / "members" / "run-b.keras"
    if damage == "delete":
        member.unlink()
    elif damage == "truncate":
        member.write_bytes(member.read_bytes()[:1000])
    else:
        shutil.copyfile(a / "model.keras", member)
    with pytest.raises(ModelError, match=message):
        Predictor.load(folder)


def test_a_damaged_manifest_says_so(two_runs):
    root, a, b = two_runs
    folder = make_ensemble([a, b], "pair", root)
    manifest = json.loads((folder / ENSEMBLE_FILE).read_text())
    manifest["members"][0]["file"] = "../../run-a/model.keras"  # outside the ensemble: refused
    (folder / ENSEMBLE_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="ensemble pair is damaged"):
        Predictor.load(folder)
    (folder / ENSEMBLE_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="ensemble pair is damaged"):
        Predictor.load(folder)


def test_making_an_ensemble_refuses_what_cannot_be_one(two_runs, tiny_data):
    root, a, b = two_runs
    with pytest.raises(EnsembleError, match="at least 2 runs"):
        make_ensemble([a], "one", root)
    with pytest.raises(EnsembleError, match="named twice"):
        make_ensemble([a, a], "twice", root)
    with pytest.raises(EnsembleError, match="not a valid ensemble name"):
        make_ensemble([a, b], "../escape", root)
    empty = create_run(TrainConfig.for_architecture("mini_xception", data=str(tiny_data)), root, "no-model")
    with pytest.raises(EnsembleError, match="member no-model: no model at"):
        make_ensemble([a, empty], "missing", root)
    (b / "model.keras").write_bytes(b"")
    with pytest.raises(EnsembleError, match="member run-b: .*damaged: the file is empty"):
        make_ensemble([a, b], "empty", root)
    make_ensemble([a, model_run(root, "run-c", 3, tiny_data)], "taken", root)
    with pytest.raises(EnsembleError, match="taken already exists"):
        make_ensemble([a, root / "run-c"], "taken", root)
    with pytest.raises(EnsembleError, match="is an ensemble"):
        make_ensemble([a, root / "taken"], "nested", root)
    # Nothing half-made is left behind by the refusals.
    assert sorted(p.name for p in root.iterdir()) == ["no-model", "run-a", "run-b", "run-c", "taken"]


def test_members_trained_on_crops_give_the_ensemble_their_ten_crop_side(tmp_path, tiny_data):
    root = tmp_path / "experiments"
    same = make_ensemble([model_run(root, "c1", 1, tiny_data, crop=40),
                          model_run(root, "c2", 2, tiny_data, crop=40)], "crops", root)
    assert Predictor.load(same).crop_size == 40
    mixed = make_ensemble([root / "c1", model_run(root, "c3", 3, tiny_data, crop=0)], "mixed", root)
    assert read_manifest(mixed)["crop"] == 0


def test_an_ensemble_is_evaluated_on_its_members_data(two_runs):
    from fer.evaluate import evaluate_run, read_evaluation

    root, a, b = two_runs
    folder = make_ensemble([a, b], "pair", root)
    result = evaluate_run(folder)
    metrics = read_evaluation(folder)
    assert metrics["splits"]["test"]["accuracy"] == pytest.approx(result["test_accuracy"])
    assert metrics["splits"]["test"]["n"] == 7  # tiny_data: one PrivateTest face per class


def test_grad_cam_of_an_ensemble_averages_its_members_maps(two_runs):
    from fer.explain import GradCam

    root, a, b = two_runs
    ensemble = Predictor.load(make_ensemble([a, b], "pair", root))
    batch = faces(2)
    maps, classes = GradCam(ensemble.model).heatmaps(batch)
    assert maps.shape == (2, 48, 48) and np.all(maps >= 0) and np.all(maps <= 1)
    np.testing.assert_array_equal(classes, ensemble.predict_faces(batch).argmax(axis=1))
    members = [GradCam(Predictor.load(run).model).heatmaps(batch, classes)[0] for run in (a, b)]
    total = members[0] + members[1]
    expected = total / np.maximum(total.max(axis=(1, 2), keepdims=True), 1e-12)
    np.testing.assert_allclose(maps, expected, atol=1e-4)


@pytest.mark.slow
def test_an_ensemble_exports_as_one_network_in_every_format(two_runs, tmp_path):
    from fer.export import FORMATS, export_model

    root, a, b = two_runs
    folder = make_ensemble([a, b], "pair", root)
    exported = export_model(folder, list(FORMATS), tmp_path / "out", faces=16)
    for fmt, result in exported["results"].items():
        assert result["verified"], (fmt, result.get("error"))
        assert result["agreement"] == 1.0


def test_the_command_line_makes_lists_and_checks_ensembles(two_runs):
    root, a, b = two_runs
    made = run_cli(["fer.ensemble", "--experiments", root, "create", "pair", "run-a", "run-b"], timeout=120)
    assert made.returncode == 0, made.stderr
    assert "pair (ensemble of 2: mini_xception x2)" in made.stdout
    listed = run_cli(["fer.ensemble", "--experiments", root, "list"], timeout=60)
    assert "pair (ensemble of 2" in listed.stdout
    assert run_cli(["fer.ensemble", "--experiments", root, "check", "pair"], timeout=120).returncode == 0
    refused = run_cli(["fer.ensemble", "--experiments", root, "create", "solo", "run-a"], timeout=60)
    assert refused.returncode == 2
    assert "an ensemble needs at least 2 runs" in refused.stderr and "Traceback" not in refused.stderr
    (root / "pair" / "members" / "run-a.keras").unlink()
    broken = run_cli(["fer.ensemble", "--experiments", root, "check", "pair"], timeout=120)
    assert broken.returncode == 2 and "member run-a is missing" in broken.stderr
    assert "Traceback" not in broken.stderr
