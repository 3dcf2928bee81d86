"""Every Keras backend trains, evaluates and predicts; with JAX nothing imports TensorFlow (nor any
package beyond requirements-jax.txt); the same seed gives the same run; two devices train like one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, worker_env
from synthetic import face

from fer import CLASSES, DEFAULT_MODEL_DIR, PROJECT_ROOT
from fer.backends import BACKENDS
from fer.evaluate import read_evaluation
from fer.files import read_json
from fer.run_folder import RunFolder

pytestmark = pytest.mark.slow

JAX_ONLY = Path(__file__).resolve().parent / "jax_only.py"
# The VGG-FER augmentation (warp, crop and erasing) on the cheap network.
FULL_AUGMENTATION = ["--rotation", "10", "--zoom", "0.2", "--translation", "0.2", "--crop", "40",
                     "--erasing", "0.5"]


def without_tensorflow(args: list, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """``python -m <args>`` (or ``-c CODE``) under JAX as with only requirements-jax.txt installed:
    importing TensorFlow (or the dashboard's packages) fails."""
    return subprocess.run([sys.executable, JAX_ONLY, *map(str, args)], cwd=PROJECT_ROOT,
                          env=worker_env(KERAS_BACKEND="jax", **env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def train_args(experiments: Path, name: str, data: Path, *flags: str) -> list:
    return ["fer.train", "--experiments", experiments, "--name", name, "--architecture", "mini_xception",
            "--data", data, "--epochs", "2", "--batch-size", "4", "--lr-schedule", "none", *flags]


def history_without_timings(run: Path) -> pd.DataFrame:
    return RunFolder(run).read_history().drop(columns=["seconds", "time"])


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory) -> Path:
    """A compilation cache of this module's own, empty before ``jax_run``."""
    return tmp_path_factory.mktemp("jax-cache")


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory, tiny_data, jax_cache):
    experiments = tmp_path_factory.mktemp("jax")
    result = without_tensorflow(train_args(experiments, "jax", tiny_data, "--backend", "jax",
                                           *FULL_AUGMENTATION), timeout=300, FER_JAX_CACHE=str(jax_cache))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return experiments / "jax"


@pytest.mark.timeout(400)
def test_a_second_run_of_the_same_network_compiles_nothing_new(jax_run, jax_cache, tmp_path, tiny_data):
    """The worker keeps JAX's compiled functions: another run of the same network and batch size
    (another seed too) finds every one of them in the cache and adds none."""
    compiled = sorted(path.name for path in jax_cache.iterdir())
    assert compiled, "the first run left nothing in the compilation cache"
    result = without_tensorflow(train_args(tmp_path, "again", tiny_data, "--backend", "jax", "--seed", "7",
                                           *FULL_AUGMENTATION), timeout=300, FER_JAX_CACHE=str(jax_cache))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert sorted(path.name for path in jax_cache.iterdir()) == compiled


CACHE_SETTINGS = """
import json, os, sys
from fer.backends import use_compilation_cache
if sys.argv[2] == "imported":
    import jax
folder = use_compilation_cache(sys.argv[1])
names = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
seen = {"folder": folder and str(folder), "env": {name: os.environ.get(name) for name in names}}
if "jax" in sys.modules:
    import jax
    seen["config"] = jax.config.jax_compilation_cache_dir
print(json.dumps(seen))
"""


def cache_settings(backend: str, jax_imported: bool = False, **env: str) -> dict:
    result = subprocess.run([sys.executable, "-c", CACHE_SETTINGS, backend,
                             "imported" if jax_imported else "-"], cwd=PROJECT_ROOT,
                            env=worker_env(**env), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_the_compilation_cache_lives_in_the_cache_folder_and_can_be_moved_or_switched_off(tmp_path):
    cache = tmp_path / "cache"
    seen = cache_settings("jax", FER_CACHE=str(cache), FER_JAX_CACHE="")
    assert seen["folder"] == str(cache / "jax") and (cache / "jax").is_dir()
    assert seen["env"] == {"JAX_COMPILATION_CACHE_DIR": str(cache / "jax"),
                           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    # JAX already imported: its configuration is updated instead of the environment it has read.
    assert cache_settings("jax", jax_imported=True, FER_JAX_CACHE=str(tmp_path / "moved"))["config"] == \
        str(tmp_path / "moved")
    for off in ("off", " OFF ", "0", "no"):
        assert cache_settings("jax", FER_JAX_CACHE=off)["folder"] is None
    (tmp_path / "a-file").write_text("")  # a folder that cannot be made: compile as usual
    assert cache_settings("jax", FER_JAX_CACHE=str(tmp_path / "a-file" / "jax"))["folder"] is None
    # The user's own JAX setting wins; TensorFlow has no use for it.
    mine = cache_settings("jax", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "mine"))
    assert mine["folder"] is None and mine["env"]["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "mine")
    assert cache_settings("tensorflow")["env"]["JAX_COMPILATION_CACHE_DIR"] is None


@pytest.mark.timeout(400)
def test_the_worker_trains_and_evaluates_on_jax_with_only_the_jax_requirements(jax_run):
    status = RunFolder(jax_run).read_status()
    assert status["state"] == "finished" and status["error"] is None
    assert (status["backend"], status["device"]) == ("jax", "1 x cpu")
    assert read_json(jax_run / "config.json")["backend"] == "jax"
    assert list(RunFolder(jax_run).read_history()["epoch"]) == [1, 2]
    assert read_evaluation(jax_run)["splits"]["test"]["accuracy"] == pytest.approx(status["test_accuracy"])


@pytest.mark.timeout(400)
def test_a_run_trained_on_jax_is_an_ordinary_run_for_tensorflow(jax_run, tmp_path):
    """Its model.keras (the network alone) loads and evaluates to the same numbers on TensorFlow."""
    from fer.evaluate import evaluate_run

    copy = shutil.copytree(jax_run, tmp_path / "copy")
    shutil.rmtree(copy / "eval")
    assert evaluate_run(copy) == {
        "val_accuracy": pytest.approx(RunFolder(jax_run).read_status()["val_accuracy"]),
        "test_accuracy": pytest.approx(RunFolder(jax_run).read_status()["test_accuracy"])}


PREDICT = """
import json, sys
import numpy as np
from fer.predict import Predictor
faces = np.load(sys.argv[1])
predictor = Predictor.load(None)
print(json.dumps({mode: predictor.predict_faces(faces, tta=mode).tolist()
                  for mode in ("none", "flip", "ten_crop")}))
"""


@pytest.mark.timeout(300)
def test_predictions_on_jax_equal_those_on_tensorflow(tmp_path):
    """The shipped model gives the same probabilities on both backends, for every TTA mode and for
    batch sizes that are and are not a power of two (the JAX path pads them)."""
    from fer.predict import Predictor

    faces = np.stack([face(i % len(CLASSES), i) for i in range(13)]).astype(np.float32)
    np.save(tmp_path / "faces.npy", faces)
    result = without_tensorflow(["-c", PREDICT, tmp_path / "faces.npy"], timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    on_jax = json.loads(result.stdout.strip().splitlines()[-1])
    predictor = Predictor.load(DEFAULT_MODEL_DIR)
    for mode, probabilities in on_jax.items():
        np.testing.assert_allclose(probabilities, predictor.predict_faces(faces, tta=mode), atol=2e-4)


@pytest.mark.timeout(400)
def test_evaluation_cli_on_jax_matches_the_workers_tensorflow_evaluation(trained_run, tmp_path):
    assert trained_run.returncode == 0, trained_run.output[-4000:]
    copy = shutil.copytree(trained_run.path, tmp_path / "copy")
    shutil.rmtree(copy / "eval")
    result = without_tensorflow(["fer.evaluate", "--run", copy], timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    ours, original = read_evaluation(copy)["splits"], read_evaluation(trained_run.path)["splits"]
    for split in ("val", "test"):
        assert ours[split]["confusion_matrix"] == original[split]["confusion_matrix"]


@pytest.mark.timeout(500)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_seed_gives_the_same_run(backend, tmp_path, tiny_data):
    """Weights, shuffling and augmentation all follow the run's seed: history.csv repeats exactly."""
    for name in ("first", "second"):
        result = run_cli(train_args(tmp_path, name, tiny_data, "--backend", backend, "--seed", "7",
                                    *FULL_AUGMENTATION), timeout=300)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    first, second = history_without_timings(tmp_path / "first"), history_without_timings(tmp_path / "second")
    pd.testing.assert_frame_equal(first, second)
    other = run_cli(train_args(tmp_path, "other", tiny_data, "--backend", backend, "--seed", "8",
                               *FULL_AUGMENTATION), timeout=300)
    assert other.returncode == 0
    assert not history_without_timings(tmp_path / "other")["loss"].equals(first["loss"])


@pytest.mark.timeout(500)
def test_two_devices_train_like_one_on_jax(tmp_path, tiny_data):
    """Data parallelism over two (virtual CPU) devices: the global batch is split, the gradients
    averaged, so the run matches the one-device run up to rounding."""
    for devices in ("1", "2"):
        # Both runs see the CPU as two devices (XLA compiles a little differently for one), and
        # train on 28 faces and validate on 7: the odd validation batch is padded for two devices.
        result = without_tensorflow(train_args(tmp_path, f"devices{devices}", tiny_data, "--backend", "jax",
                                               "--devices", devices, *FULL_AUGMENTATION), timeout=300,
                                    XLA_FLAGS="--xla_force_host_platform_device_count=2")
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert RunFolder(tmp_path / "devices2").read_status()["device"] == "2 x cpu"
    one, two = history_without_timings(tmp_path / "devices1"), history_without_timings(tmp_path / "devices2")
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-3)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-3)


EVERY_PRESET = """
import json, math
import numpy as np
import keras
from fer.architectures import ARCHITECTURES
from fer.config import TrainConfig
from fer.pipeline import training_batches
from fer.recipe import training_model
rng = np.random.default_rng(0)
faces, labels = rng.integers(0, 256, (8, 48, 48)).astype(np.uint8), np.arange(8) % 7
losses = {}
for name in ARCHITECTURES:
    config = TrainConfig.for_architecture(name, batch_size=4, backend="jax")
    model = training_model(config, 2)
    history = model.fit(training_batches(faces, labels, 4, config.seed), epochs=1, verbose=0)
    losses[name] = history.history["loss"][0]
    keras.backend.clear_session()
print(json.dumps(losses))
"""


@pytest.mark.timeout(600)
def test_every_preset_trains_a_tiny_epoch_on_jax_with_its_augmentation():
    """Each architecture with its preset (augmentation in the step) trains under JAX without TensorFlow."""
    from fer.architectures import ARCHITECTURES

    result = without_tensorflow(["-c", EVERY_PRESET], timeout=560)
    assert result.returncode == 0, result.stderr[-4000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(losses) == list(ARCHITECTURES)
    assert all(np.isfinite(loss) for loss in losses.values()), losses


SEEDED_ON_JAX = """
import sys
from fer.config import TrainConfig
from fer.devices import make_deterministic, prepare_process
prepare_process(TrainConfig(backend="jax"))
import keras
make_deterministic(TrainConfig(backend="jax"))
print(keras.backend.backend(), "tensorflow" in sys.modules)
"""


def test_a_worker_on_jax_never_imports_tensorflow_even_where_it_is_installed():
    """Keras' set_random_seed would import TensorFlow to seed it too; the worker keeps it out."""
    pytest.importorskip("tensorflow")
    result = subprocess.run([sys.executable, "-c", SEEDED_ON_JAX], cwd=PROJECT_ROOT, env=worker_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["jax", "False"]


@pytest.mark.timeout(120)
def test_a_backend_that_is_not_installed_fails_the_run_with_a_message(tmp_path, tiny_data):
    result = without_tensorflow(train_args(tmp_path, "tf", tiny_data, "--backend", "tensorflow"), timeout=100)
    assert result.returncode == 1
    status = RunFolder(tmp_path / "tf").read_status()
    assert status["state"] == "failed"
    assert "backend 'tensorflow' is not installed here" in status["error"]
    assert "Traceback" not in result.stdout + result.stderr
