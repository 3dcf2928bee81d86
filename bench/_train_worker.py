"""Measurements in one process per (backend, model); used by bench.input_pipeline and bench.train_step.
Prints one JSON line per job.

    python -m bench._train_worker --mode compare --backend jax --model vgg_fer --data FOLDER \\
        --candidates '[{"name": "model_bound", "feeder": "model_bound"}, ...]'
    python -m bench._train_worker --mode pipeline --backend tensorflow --data FOLDER
    python -m bench._train_worker --jobs '[{"mode": "compare", ...}, ...]'   # several, one process

``compare`` builds and compiles one training model per distinct model setting (augmentation,
steps_per_execution, jit_compile, precision), warms every candidate up once, then alternates short
timed fits over the candidates for several rounds (forward order in even rounds, reversed in odd
ones), so a host whose speed changes over minutes slows every candidate alike. Per candidate it
reports the images/s of every round (steps x batch / time from the first step's begin to the last
step's end, input waits included; see ``timed_fit`` for why not the whole fit call) and, per
round, the ratio to the fastest candidate of that round; the medians of those are what the
benchmarks compare.

The process is set up as ``fer.train`` sets up a run: ``fer.devices.prepare_process(config)``
(backend from ``--backend``, which also must match ``KERAS_BACKEND``), ``import keras``,
``fer.devices.make_deterministic(config)``, model = ``with_augmentation(build_model(config),
config)``, compiled by ``fer.recipe.training_model``
and fed by ``fer.pipeline.training_batches``. Under JAX the worker refuses ``import tensorflow``
(and reports who asked: ``fer.devices.make_deterministic`` -> ``keras.utils.set_random_seed``
imports it whenever it is installed).

Feeders: ``model_bound`` (one constant batch already on the device, fed over and over),
``ours`` (``fer.pipeline.training_batches``) and ``seeds_idg`` (the seeds' tf-keras
``ImageDataGenerator``; TensorFlow only: tf-keras is imported from the bench venv's
site-packages given by ``--seeds-path``, into this process, so it runs on the project's
TensorFlow and interleaves with ours).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

FEEDERS = ("model_bound", "ours", "seeds_idg")
# A candidate's model setting; candidates with equal settings share one compiled model.
MODEL_KEYS = ("augment", "spe", "jit", "precision")
CANDIDATE_DEFAULTS = {"feeder": "ours", "augment": "none", "spe": 0, "jit": "auto", "precision": "float32"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench._train_worker")
    p.add_argument("--jobs", default="", help="a JSON list of option dicts, run one after another")
    p.add_argument("--mode", choices=["compare", "pipeline"], default="compare")
    p.add_argument("--backend", default="", help="tensorflow or jax (default: KERAS_BACKEND)")
    p.add_argument("--model", default="mini_xception")
    p.add_argument("--candidates", default="",
                   help="compare: a JSON list of {name, feeder (model_bound|ours|seeds_idg), augment "
                        "(none|preset), spe (0 = the product's), jit (auto|true|false), precision}")
    p.add_argument("--feeders", default="ours,seeds_idg", help="pipeline: which feeders")
    p.add_argument("--data", default="", help="FER2013 image folder (train/, test/)")
    p.add_argument("--seeds-path", default="", help="site-packages folder holding tf_keras (bench venv)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=0, help="timed steps (batches) per candidate per round "
                                                      "(0 = calibrated from --fit-seconds)")
    p.add_argument("--fit-seconds", type=float, default=4.0,
                   help="with --steps 0: steps per fit so that the slowest candidate's fit takes about this")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per candidate first (at least one "
                                                        "steps_per_execution)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--max-train", type=int, default=0, help="train on a subset (0 = all)")
    p.add_argument("--intra", type=int, default=0, help="TensorFlow intra-op threads (0 = default)")
    p.add_argument("--inter", type=int, default=0, help="TensorFlow inter-op threads (0 = default)")
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---- process setup ----------------------------------------------------------------------------

TENSORFLOW_IMPORTS: list[str] = []


class _NoTensorFlow:
    """A meta-path finder that refuses ``import tensorflow`` (under JAX) and records who asked:
    the innermost project and Keras frames. Keras treats the ImportError as 'TensorFlow is not
    installed' (e.g. ``keras.utils.set_random_seed`` then seeds Python, NumPy and its backend only)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" and not name.startswith("tensorflow."):
            return None
        import traceback

        frames = [f for f in traceback.extract_stack()
                  if any(part in f.filename for part in ("/fer/", "/bench/", "/keras/src/"))
                  and "_train_worker.py" not in f.filename and "module_utils.py" not in f.filename]
        root = str(Path(__file__).resolve().parent.parent) + "/"
        where = " <- ".join(f"{f.filename.split('/site-packages/')[-1].split(root)[-1]}:{f.lineno} "
                            f"{f.name}" for f in frames[::-1][:3])
        if where not in TENSORFLOW_IMPORTS:
            TENSORFLOW_IMPORTS.append(where)
        raise ImportError(f"bench: {name} is not imported under the JAX backend")


def block_tensorflow() -> None:
    if not any(isinstance(f, _NoTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTensorFlow())


def setup(args: argparse.Namespace):
    """The preset's config on ``--backend``, the process prepared as fer.train prepares it."""
    from fer.backends import default_backend
    from fer.config import TrainConfig
    from fer.devices import make_deterministic, prepare_process

    backend = args.backend or default_backend()
    if backend == "jax":
        block_tensorflow()
    config = TrainConfig.for_architecture(args.model, batch_size=args.batch_size, backend=backend)
    prepare_process(config)
    if backend == "tensorflow" and (args.intra or args.inter):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    import keras

    if keras.backend.backend() != backend:
        raise SystemExit(f"Keras runs on {keras.backend.backend()}, not {backend}: set KERAS_BACKEND")
    make_deterministic(config)
    return config


def device_info(config) -> dict[str, Any]:
    from fer.devices import open_devices

    device = open_devices(config)
    return {"device": device, "gpu": not device.endswith("x cpu")}


def load_train(args: argparse.Namespace):
    """(images uint8 (n, 48, 48), labels, seconds): fer.data.load_dataset, decoding every image once."""
    from fer.data import load_dataset

    start = time.perf_counter()
    dataset = load_dataset(args.data or None, max_train_samples=args.max_train)
    return dataset.train.images, dataset.train.labels, time.perf_counter() - start


def seeds_iterator(args: argparse.Namespace):
    """The seeds' pipeline: ImageDataGenerator(rescale, horizontal_flip, validation_split=0.2)."""
    if args.seeds_path and args.seeds_path not in sys.path:
        sys.path.append(args.seeds_path)  # after ours: only tf_keras comes from the bench venv
    from tf_keras.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rescale=1.0 / 255, horizontal_flip=True, validation_split=0.2)
    return generator.flow_from_directory(
        os.path.join(args.data, "train"), target_size=(48, 48), color_mode="grayscale",
        batch_size=args.batch_size, class_mode="categorical", subset="training", shuffle=True, seed=42)


# ---- feeders ----------------------------------------------------------------------------------

class Feeder:
    """What ``fit`` gets for one candidate: ``make()`` returns a fresh input for one fit call."""

    def __init__(self, name: str, make, setup_s: float = 0.0, note: str = "", length: int | None = None):
        self.name, self.make, self.setup_s, self.note = name, make, setup_s, note
        self.length = length  # batches before it runs out (None: endless)


def model_bound_feeder(args: argparse.Namespace) -> Feeder:
    """One constant batch already on the device, fed over and over: the model-bound rate."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch_size, 48, 48, 1)).astype(np.float32)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, args.batch_size)]
    if keras.backend.backend() == "jax":
        import jax

        x, y = jax.device_put(x), jax.device_put(y)

        def forever():
            while True:
                yield x, y

        return Feeder("model_bound", forever, note="a generator of the same jax arrays (on the device)")
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors((tf.constant(x), tf.constant(y))).repeat()
    return Feeder("model_bound", lambda: dataset, note="tf.data.Dataset.from_tensors(batch).repeat()")


def ours_feeder(args: argparse.Namespace, data) -> Feeder:
    from fer.pipeline import training_batches

    images, labels, load_s = data
    batches = training_batches(images, labels, args.batch_size, seed=0)
    return Feeder("ours", lambda: batches, setup_s=load_s,
                  note=f"fer.pipeline.training_batches ({len(batches)} batches an epoch)",
                  length=len(batches))


def seeds_feeder(args: argparse.Namespace) -> Feeder:
    import keras

    start = time.perf_counter()
    iterator = seeds_iterator(args)
    setup_s = time.perf_counter() - start

    class Seeds(keras.utils.PyDataset):
        """The DirectoryIterator as a Keras 3 PyDataset with one loader thread (like tf-keras'
        fit(workers=1)); x * 255 because our models rescale their raw-pixel input themselves.
        Full batches only (the iterator's short last batch would retrace the step)."""

        def __len__(self):
            return iterator.samples // args.batch_size

        def __getitem__(self, index):
            x, y = iterator[index]
            return x * 255.0, y

    data = Seeds(workers=1, use_multiprocessing=False, max_queue_size=10)
    return Feeder("seeds_idg", lambda: data, setup_s=setup_s, length=len(data),
                  note="tf-keras ImageDataGenerator.flow_from_directory "
                       "(flip; decodes the files every epoch)")


# ---- models -----------------------------------------------------------------------------------

def build_training_model(config, candidate: dict[str, Any], epoch_steps: int):
    """The training model fer.train builds (with_augmentation in front of the network), compiled as
    fer.train compiles it, with the candidate's augmentation, steps_per_execution, jit and precision."""
    import keras

    from fer.config import TrainConfig
    from fer.recipe import steps_per_execution, training_model

    if candidate["augment"] == "none":
        config = TrainConfig.from_dict({**config.to_dict(), "augment": False})
    spe = candidate["spe"] or steps_per_execution(config, epoch_steps)
    jit = {"auto": "auto", "true": True, "false": False}[str(candidate["jit"]).lower()]
    keras.mixed_precision.set_global_policy(candidate["precision"])
    try:
        model = training_model(config, epoch_steps, jit_compile=jit, steps_per_call=spe)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model, spe


def augmentation_of(config) -> dict[str, Any]:
    return {key: getattr(config, key)
            for key in ("flip", "rotation", "zoom", "translation", "crop", "erasing")}


def sync(model) -> None:
    """Wait until the model's last step has finished (JAX dispatches asynchronously)."""
    import keras

    if keras.backend.backend() == "jax":
        for variable in model.trainable_variables:
            variable.value.block_until_ready()


class _Executions:
    """Keras callback: wall time of every execution (``steps_per_execution`` steps, input included):
    from the end of the previous one (or the first batch's begin) to its end. Keras converts the
    step's logs to Python numbers before calling it, so under JAX too each execution has finished."""

    def __init__(self):
        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(cb):  # noqa: N805
                super().__init__()
                cb.marks: list[float] = []

            def on_train_batch_begin(cb, batch, logs=None):  # noqa: N805
                if not cb.marks:
                    cb.marks.append(time.perf_counter())

            def on_train_batch_end(cb, batch, logs=None):  # noqa: N805
                cb.marks.append(time.perf_counter())

        self.callback = Callback()

    def durations(self) -> list[float]:
        marks = self.callback.marks
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def timed_fit(model, feeder: Feeder, steps: int) -> dict[str, Any]:
    """One fit(steps_per_epoch=steps): ``steps_s`` from the first step's begin (its input
    included) to the end of the last, ``wall_s`` the whole call (until the last step finished),
    ``tail_s`` from the last step's end to the return, ``executions`` the seconds of each execution.

    On TensorFlow, ``tail_s`` is sometimes seconds long: destroying the tf.data iterator waits for
    tf.data's autotuning thread, which wakes 10 ms x (2^k - 1) after the iterator was made (2.55 s,
    5.11 s, 10.23 s, ...); with autotuning off the wait is gone. A real run pays it once per epoch
    (Keras makes a new iterator every epoch), a short timed fit once per fit, so rates here use
    ``steps_s``; ``wall_s`` is reported beside them."""
    executions = _Executions()
    start = time.perf_counter()
    model.fit(feeder.make(), epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[executions.callback])
    sync(model)
    end = time.perf_counter()
    marks = executions.callback.marks
    return {"wall_s": end - start, "steps_s": marks[-1] - marks[0], "tail_s": end - marks[-1],
            "executions": executions.durations()}


def _traces(model) -> int | None:
    """How many times the tf.functions behind Keras' train function were traced so far (Keras 3
    wraps them in plain Python closures); None where none is found (always under JAX)."""
    found: list[int] = []

    def search(function, depth: int) -> None:
        for cell in getattr(function, "__closure__", None) or []:
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if hasattr(value, "experimental_get_tracing_count"):
                found.append(value.experimental_get_tracing_count())
            elif callable(value) and depth < 3:
                search(value, depth + 1)

    search(getattr(model, "train_function", None), 0)
    return sum(found) if found else None


def interleave(rates: dict[str, list[float]]) -> dict[str, Any]:
    """Per candidate: rates per round, their median, and per round the ratio to that round's
    fastest candidate (and the median of those ratios)."""
    names = list(rates)
    rounds = len(rates[names[0]])
    fastest = [max(names, key=lambda n, r=r: rates[n][r]) for r in range(rounds)]
    out: dict[str, Any] = {"fastest_per_round": fastest, "candidates": {}}
    for name in names:
        ratios = [rates[name][r] / rates[fastest[r]][r] for r in range(rounds)]
        out["candidates"][name] = {
            "images_per_s_per_round": [round(x, 1) for x in rates[name]],
            "median_images_per_s": round(statistics.median(rates[name]), 1),
            "ratio_to_fastest_per_round": [round(x, 3) for x in ratios],
            "median_ratio_to_fastest": round(statistics.median(ratios), 3)}
    return out


def measure_compare(args: argparse.Namespace) -> dict[str, Any]:
    config = setup(args)
    info = device_info(config)
    candidates = [{**CANDIDATE_DEFAULTS, **c} for c in json.loads(args.candidates)]
    data = load_train(args) if any(c["feeder"] == "ours" for c in candidates) else None
    feeders: dict[str, Feeder] = {}
    skipped: dict[str, str] = {}
    for c in candidates:
        if c["feeder"] in feeders:
            continue
        if c["feeder"] == "model_bound":
            feeders["model_bound"] = model_bound_feeder(args)
        elif c["feeder"] == "ours":
            feeders["ours"] = ours_feeder(args, data)
        elif c["feeder"] == "seeds_idg":
            if config.backend != "tensorflow":
                skipped[c["name"]] = "the seeds' ImageDataGenerator needs TensorFlow"
                continue
            try:
                feeders["seeds_idg"] = seeds_feeder(args)
            except ImportError as exc:
                skipped[c["name"]] = f"tf-keras not importable ({exc})"
                continue
        else:
            raise SystemExit(f"unknown feeder {c['feeder']!r}")
    candidates = [c for c in candidates if c["name"] not in skipped]
    # Steps in one epoch (448 for FER2013 at batch 64): the product's steps_per_execution and schedule.
    epoch_steps = max(1, (len(data[1]) if data is not None else 28709) // args.batch_size)
    models: dict[tuple, tuple] = {}
    built: dict[str, dict[str, Any]] = {}
    for c in candidates:
        key = tuple(str(c[k]) for k in MODEL_KEYS)
        if key not in models:
            start = time.perf_counter()
            models[key] = build_training_model(config, c, epoch_steps)
            models[key] += (round(time.perf_counter() - start, 2),)
        model, spe, build_s = models[key]
        built[c["name"]] = {"feeder": c["feeder"], "model": list(models).index(key), "spe": spe,
                            "augmentation": "preset" if c["augment"] == "preset" else "none",
                            "jit_compile": c["jit"], "precision": c["precision"], "build_s": build_s}

    def model_of(c: dict[str, Any]):
        return models[tuple(str(c[k]) for k in MODEL_KEYS)][0]

    # Warm-up: every candidate once (tracing / XLA compilation for each input signature).
    for c in candidates:
        spe = built[c["name"]]["spe"]
        fit = timed_fit(model_of(c), feeders[c["feeder"]], max(args.warmup, spe) // spe * spe)
        built[c["name"]]["warmup_s"] = round(fit["wall_s"], 2)
    unit = math.lcm(*(b["spe"] for b in built.values()))
    steps = args.steps
    if not steps:
        # Calibration: one more untimed fit of `unit` steps each; the slowest candidate's step time
        # sets the steps per fit so that its fits take about --fit-seconds.
        slowest = max(timed_fit(model_of(c), feeders[c["feeder"]], unit)["steps_s"] / unit
                      for c in candidates)
        steps = max(1, round(args.fit_seconds / slowest / unit)) * unit
        # Never past the end of a feeder's epoch (each fit starts a new pass at its first batch).
        shortest = min((f.length for f in feeders.values() if f.length), default=None)
        if shortest:
            steps = max(unit, min(steps, shortest // unit * unit))
    elif steps % unit:
        raise SystemExit(f"--steps {steps} is not a multiple of every steps_per_execution (lcm {unit})")
    traces_before = {c["name"]: _traces(model_of(c)) for c in candidates}
    rates: dict[str, list[float]] = {c["name"]: [] for c in candidates}
    walls: dict[str, list[float]] = {c["name"]: [] for c in candidates}
    tails: dict[str, list[float]] = {c["name"]: [] for c in candidates}
    executions: dict[str, list[float]] = {c["name"]: [] for c in candidates}
    orders = []
    for r in range(args.rounds):
        order = candidates if r % 2 == 0 else candidates[::-1]
        orders.append([c["name"] for c in order])
        for c in order:
            fit = timed_fit(model_of(c), feeders[c["feeder"]], steps)
            rates[c["name"]].append(steps * args.batch_size / fit["steps_s"])
            walls[c["name"]].append(steps * args.batch_size / fit["wall_s"])
            tails[c["name"]].append(fit["tail_s"])
            executions[c["name"]] += [d / built[c["name"]]["spe"] for d in fit["executions"]]
    for c in candidates:
        after, before = _traces(model_of(c)), traces_before[c["name"]]
        built[c["name"]]["retraces_in_timed_rounds"] = (None if before is None or after is None
                                                        else after - before)
    result = interleave(rates)
    fast = {name: args.batch_size / statistics.quantiles(d, n=4)[0] if len(d) > 1 else None
            for name, d in executions.items()}
    best = max((v for v in fast.values() if v), default=None)
    for name, row in result["candidates"].items():
        row.update(built[name])
        row["step_s_per_execution_min_median_max"] = [
            round(f(executions[name]) , 3) for f in (min, statistics.median, max)
        ] if executions[name] else None
        row["fast_mode_images_per_s"] = round(fast[name], 1) if fast[name] else None
        row["fast_mode_ratio_to_fastest"] = round(fast[name] / best, 3) if fast[name] and best else None
        row["fit_wall_images_per_s_per_round"] = [round(x, 1) for x in walls[name]]
        row["end_of_fit_wait_s_per_round"] = [round(x, 2) for x in tails[name]]
    return {**info, "candidates": result["candidates"], "fastest_per_round": result["fastest_per_round"],
            "order_per_round": orders, "skipped": skipped,
            "feeders": {name: {"setup_s": round(f.setup_s, 2), "note": f.note}
                        for name, f in feeders.items()},
            "preset_augmentation": augmentation_of(config), "epoch_steps": epoch_steps,
            "steps": steps, "steps_chosen": "calibrated" if not args.steps else "given",
            "rounds": args.rounds}


def measure_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline-only images/s (no model): batches taken from each feeder, interleaved in rounds."""
    config = setup(args)
    wanted = args.feeders.split(",")
    sources: dict[str, tuple] = {}
    skipped: dict[str, str] = {}
    if "ours" in wanted:
        from fer.pipeline import training_batches

        images, labels, load_s = load_train(args)
        batches = training_batches(images, labels, args.batch_size, seed=0)
        sources["ours"] = (batches, len(batches), load_s)
    if "seeds_idg" in wanted:
        if config.backend != "tensorflow":
            skipped["seeds_idg"] = "the seeds' ImageDataGenerator needs TensorFlow"
        else:
            try:
                start = time.perf_counter()
                iterator = seeds_iterator(args)
                sources["seeds_idg"] = (iterator, iterator.samples // args.batch_size,
                                        time.perf_counter() - start)
            except ImportError as exc:
                skipped["seeds_idg"] = f"tf-keras not importable ({exc})"
    position = dict.fromkeys(sources, 0)

    def take(name: str, count: int) -> float:
        source, length, _ = sources[name]
        start = time.perf_counter()
        images = 0
        for _ in range(count):
            x, _y = source[position[name] % length]
            position[name] += 1
            images += len(x)
        return images / (time.perf_counter() - start)

    for name in sources:
        take(name, args.warmup)
    rates: dict[str, list[float]] = {name: [] for name in sources}
    names = list(sources)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(take(name, args.steps))
    result = interleave(rates) if rates else {"candidates": {}}
    for name, row in result["candidates"].items():
        row["setup_s"] = round(sources[name][2], 2)
    return {"candidates": result["candidates"], "skipped": skipped, "steps": args.steps,
            "rounds": args.rounds}


# ---- entry ------------------------------------------------------------------------------------

def options(job: dict) -> list[str]:
    """Command-line options for a job dict (True = a bare flag; None/False = left out; lists and
    dicts as JSON)."""
    argv: list[str] = []
    for key, value in job.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, dict)):
            argv += [flag, json.dumps(value)]
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


def run(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = measure_pipeline(args) if args.mode == "pipeline" else measure_compare(args)
    import keras

    result.update({"mode": args.mode, "backend": keras.backend.backend(), "keras": keras.__version__,
                   "model": args.model if args.mode == "compare" else None, "batch_size": args.batch_size,
                   "tensorflow_imported": "tensorflow" in sys.modules, "peak_rss_mb": peak_rss_mb(),
                   "job_s": round(time.perf_counter() - start, 1),
                   # Two cores: a 1-minute load above ~2 means other processes shared them.
                   "load_average_1min_start_end": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
    if result["backend"] == "jax":
        result["tensorflow_imports_refused"] = TENSORFLOW_IMPORTS
    print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.jobs:
        for job in json.loads(args.jobs):
            run(parse(options(job)))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
