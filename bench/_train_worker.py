"""One measurement in a fresh process (so thread settings, precision policies and caches never leak
between measurements); used by bench.input_pipeline and bench.train_step. Prints one JSON line.

    python -m bench._train_worker --mode pipeline|train --feeder idg|tfdata|memory --model NAME ...
    python -m bench._train_worker --jobs '[{"mode": "train", ...}, ...]'   # several, one process

``--feeder idg`` needs tf-keras (the seeds' ImageDataGenerator): run it with the bench venv's
python (see bench/common.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

FLIP_ONLY = {"augment": True, "flip": True, "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "crop": 0,
             "erasing": 0.0}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench._train_worker")
    p.add_argument("--jobs", default="", help="a JSON list of option dicts, run one after another")
    p.add_argument("--mode", choices=["pipeline", "train"], default="train")
    p.add_argument("--feeder", choices=["idg", "tfdata", "memory"], default="memory")
    p.add_argument("--model", default="mini_xception")
    p.add_argument("--augment", choices=["flip", "preset", "preset_fused"], default="flip",
                   help="flip only; the preset's Keras augmentation layers; or the preset's flip, "
                        "rotation, zoom and translation fused into one affine warp (a candidate)")
    p.add_argument("--data", default="", help="FER2013 image folder (train/, test/)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="timed steps (batches)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (tracing, caches)")
    p.add_argument("--max-train", type=int, default=0, help="train on a subset (0 = all)")
    p.add_argument("--jit", action="store_true", help="compile(jit_compile=True)")
    p.add_argument("--spe", type=int, default=1, help="compile(steps_per_execution=N)")
    p.add_argument("--precision", default="float32", help="float32 or mixed_bfloat16")
    p.add_argument("--intra", type=int, default=0, help="intra-op threads (0 = TensorFlow's default)")
    p.add_argument("--inter", type=int, default=0, help="inter-op threads (0 = TensorFlow's default)")
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def idg_iterator(args: argparse.Namespace):
    """The seeds' pipeline: ImageDataGenerator(rescale, horizontal_flip, validation_split=0.2)."""
    from tf_keras.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rescale=1.0 / 255, horizontal_flip=True, validation_split=0.2)
    return generator.flow_from_directory(
        os.path.join(args.data, "train"), target_size=(48, 48), color_mode="grayscale",
        batch_size=args.batch_size, class_mode="categorical", subset="training", shuffle=True, seed=42)


def our_dataset(args: argparse.Namespace):
    """Ours: fer.data.load_dataset (decode once) + fer.pipeline.training_dataset."""
    from fer.config import TrainConfig
    from fer.data import load_dataset
    from fer.pipeline import training_dataset

    start = time.perf_counter()
    dataset = load_dataset(args.data, max_train_samples=args.max_train)
    load_s = time.perf_counter() - start
    overrides = FLIP_ONLY if args.augment == "flip" else {}
    config = TrainConfig.for_architecture(args.model, batch_size=args.batch_size, **overrides)
    if args.augment == "preset_fused":
        return fused_dataset(dataset.train.images, dataset.train.labels, config), load_s, len(dataset.train)
    return training_dataset(dataset.train.images, dataset.train.labels, config), load_s, len(dataset.train)


def fused_dataset(images, labels, config):
    """``training_dataset`` with flip + rotation + zoom + translation as ONE bilinear affine warp per
    image (the Keras layers warp three times). Same distributions as the layers: angle uniform in
    +-rotation degrees, one zoom factor in 1 +- zoom for both axes, shifts uniform in +-translation
    of the side, nearest fill. Crop and erasing are not covered (the mini_xception preset uses neither)."""
    import math

    import keras
    import tensorflow as tf

    from fer.config import TrainConfig
    from fer.pipeline import training_dataset

    plain = training_dataset(images, labels, TrainConfig.from_dict({**config.to_dict(), "augment": False}))
    size = 48.0
    centre = (size - 1) / 2

    def warp(x, y):
        n = tf.shape(x)[0]
        angle = tf.random.uniform([n], -1.0, 1.0) * config.rotation * math.pi / 180
        zoom = 1.0 + tf.random.uniform([n], -config.zoom, config.zoom)
        dx = tf.random.uniform([n], -config.translation, config.translation) * size
        dy = tf.random.uniform([n], -config.translation, config.translation) * size
        flip = tf.where(tf.random.uniform([n]) < 0.5, -1.0, 1.0) if config.flip else tf.ones([n])
        cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
        a0, a1, b0, b1 = cos * flip, -sin, sin * flip, cos
        a2 = centre - a0 * centre - a1 * centre - dx
        b2 = centre - b0 * centre - b1 * centre - dy
        zeros = tf.zeros([n])
        transform = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return keras.ops.image.affine_transform(x, transform, interpolation="bilinear",
                                                fill_mode="nearest"), y

    return plain.map(warp, num_parallel_calls=tf.data.AUTOTUNE)


def measure_pipeline(args: argparse.Namespace) -> dict:
    if args.feeder == "idg":
        start = time.perf_counter()
        iterator = idg_iterator(args)
        setup_s = time.perf_counter() - start
        n_batches = len(iterator)
        batches = (iterator[i % n_batches] for i in range(args.warmup + args.steps))
        images = iterator.samples
    else:
        ds, setup_s, images = our_dataset(args)
        batches = iter(ds.repeat().take(args.warmup + args.steps))
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    count = 0
    for x, _y in batches:
        count += len(x)
    seconds = time.perf_counter() - start
    return {"images_per_s": round(count / seconds, 1), "images": count, "seconds": round(seconds, 3),
            "setup_s": round(setup_s, 2), "train_images": images}


class _Timer:
    """Keras callback: wall time from the end of the first timed batch to the end of the last."""

    def __init__(self):
        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(cb):  # noqa: N805
                super().__init__()
                cb.times: list[float] = []

            def on_train_batch_end(cb, batch, logs=None):  # noqa: N805
                cb.times.append(time.perf_counter())

        self.callback = Callback()


def measure_train(args: argparse.Namespace) -> dict:
    if args.intra or args.inter:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.intra)
        tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    import keras
    import numpy as np
    import tensorflow as tf

    from fer.config import TrainConfig
    from fer.models import build_model
    from fer.train import _optimizer

    keras.utils.set_random_seed(0)
    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    overrides = FLIP_ONLY if args.augment == "flip" else {}
    config = TrainConfig.for_architecture(args.model, batch_size=args.batch_size, **overrides)
    setup_s = 0.0
    if args.feeder == "idg":
        start = time.perf_counter()
        iterator = idg_iterator(args)
        setup_s = time.perf_counter() - start

        class Seeds(keras.utils.PyDataset):
            """The DirectoryIterator as a Keras 3 PyDataset with one loader thread (like tf-keras'
            fit(workers=1)); x * 255 because our models rescale their raw-pixel input themselves."""

            def __len__(self):
                return len(iterator)

            def __getitem__(self, index):
                x, y = iterator[index]
                return x * 255.0, y

        data = Seeds(workers=1, use_multiprocessing=False, max_queue_size=10)
    elif args.feeder == "tfdata":
        data, setup_s, _ = our_dataset(args)
        data = data.repeat()
    else:
        rng = np.random.default_rng(0)
        x = tf.constant(rng.integers(0, 256, (args.batch_size, 48, 48, 1)).astype(np.float32))
        y = tf.constant(np.eye(7, dtype=np.float32)[rng.integers(0, 7, args.batch_size)])
        data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model = build_model(config)
    model.compile(optimizer=_optimizer(config, 448), metrics=["accuracy"],
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  jit_compile=args.jit, steps_per_execution=args.spe)
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=max(args.warmup, args.spe), verbose=0)
    warmup_s = time.perf_counter() - start
    traces_before = _traces(model)
    timer = _Timer()
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timer.callback])
    seconds = time.perf_counter() - start
    traces_after = _traces(model)
    times = timer.callback.times
    # Steady state: from the first callback to the last (callbacks come every `spe` steps).
    steady_steps = (len(times) - 1) * args.steps / len(times) if times else 0
    steady = (times[-1] - times[0]) if len(times) > 1 else seconds
    steady_rate = steady_steps * args.batch_size / steady if len(times) > 1 and steady > 0 else None
    return {"images_per_s": round(args.steps * args.batch_size / seconds, 1),
            "steady_images_per_s": round(steady_rate, 1) if steady_rate else None,
            "step_ms": round(seconds / args.steps * 1000, 1), "steps": args.steps,
            "seconds": round(seconds, 2), "warmup_s": round(warmup_s, 2), "setup_s": round(setup_s, 2),
            "params": int(model.count_params()),
            "retraces": None if traces_before is None or traces_after is None else traces_after - traces_before}


def _traces(model) -> int | None:
    """How many times the tf.functions behind Keras' train function were traced so far (Keras 3
    wraps them in plain Python closures); None where none is found."""
    found: list[int] = []

    def search(function, depth: int) -> None:
        for cell in getattr(function, "__closure__", None) or []:
            value = cell.cell_contents
            if hasattr(value, "experimental_get_tracing_count"):
                found.append(value.experimental_get_tracing_count())
            elif callable(value) and depth < 3:
                search(value, depth + 1)

    search(getattr(model, "train_function", None), 0)
    return sum(found) if found else None


def options(job: dict) -> list[str]:
    """Command-line options for a job dict (True = a bare flag; None/False = left out)."""
    argv: list[str] = []
    for key, value in job.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.jobs:
        for job in json.loads(args.jobs):
            run(parse(options(job)))
            if job.get("precision", "float32") != "float32":
                import keras

                keras.mixed_precision.set_global_policy("float32")
        return 0
    run(args)
    return 0


def run(args: argparse.Namespace) -> None:
    result = measure_pipeline(args) if args.mode == "pipeline" else measure_train(args)
    result.update({"mode": args.mode, "feeder": args.feeder, "model": args.model, "augment": args.augment,
                   "batch_size": args.batch_size, "jit": args.jit, "spe": args.spe,
                   "precision": args.precision, "intra": args.intra, "inter": args.inter,
                   "peak_rss_mb": peak_rss_mb()})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
