"""The CPU preset's candidates: training speed and short proxy runs of the same budget.

    python -m bench.cpu_preset --speed              # images/s of each candidate, float32 and bf16
    python -m bench.cpu_preset --proxy --budget 720  # + a proxy run each (real FER2013, PublicTest)
    python -m bench.cpu_preset --quick              # tiny synthetic set, two candidates (smoke test)

Every candidate trains with ``vgg_fer_cpu``'s recipe (its augmentation, SGD + Nesterov, cosine to
zero, L2, dropout) through ``fer.recipe.training_model``, fed by ``fer.pipeline.training_batches``,
as ``fer.train`` does; only the network differs. Candidates:

- ``vgg16`` / ``vgg24`` / ``vgg32``: VGG-FER's trunk (Khaireddin & Chen 2021) of eight 3x3
  conv-BN-ReLU layers at base width 16, 24 or 32 (VGG-FER's own is 64), one 256-unit head;
  ``vgg32`` is the ``vgg_fer_cpu`` preset.
- ``tang``: Tang's 2013 Kaggle winner (conv 5x5-32, 4x4-32, 5x5-64, each max-pooled 3/2, Dense
  3072), with batch normalisation after each convolution.

Speed: each (candidate, precision) in a fresh process trains ``--steps`` batches of 64 after a
warm-up, ``--rounds`` times, and reports the median images/s (``mixed_bfloat16`` is the CPU's
16-bit type) and the median of images per CPU-second times the cores (``images_per_cpu_s_x_cores``): on a
virtual machine whose cores are lent in bursts the wall-clock rate of a 20-second fit varies up to
2x between rounds while the CPU time per image stays within about 10%. The proxy run of a
candidate trains ``epochs = budget x its float32 images per CPU-second x cores / training faces``
epochs (at least 1), so every candidate gets the same compute however busy the machine is while
it trains, and reports its best PublicTest accuracy. Runs with another training run on the
machine are slower, not different: the epoch counts come from the speed measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench.common import ROOT, fer_folder, log, write_result

CANDIDATES = ("vgg16", "vgg24", "vgg32", "tang")
WIDTHS = {"vgg16": (16, 32, 64, 128), "vgg24": (24, 48, 96, 192), "vgg32": (32, 64, 128, 256)}
PRECISIONS = ("float32", "mixed_bfloat16")
BATCH = 64


def build(name: str, config):
    """The candidate network ``name`` for ``config`` (raw 0-255 pixels in, float32 softmax out)."""
    import keras
    from keras import layers

    from fer.models import _classifier, _inputs, _l2, vgg_fer_narrow

    if name in WIDTHS:
        return vgg_fer_narrow(config, WIDTHS[name], name)
    reg = _l2(config)
    inputs, x = _inputs()
    for filters, size in ((32, 5), (32, 4), (64, 5)):
        x = layers.Conv2D(filters, size, padding="same", kernel_regularizer=reg, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(3072, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, _classifier(x), name="tang")


def flops(model) -> int:
    """Multiply-adds x 2 of one forward pass of one face: convolutions and dense layers."""
    import numpy as np

    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kernel = layer.kernel.shape
            out = layer.output.shape
            total += 2 * int(np.prod(kernel)) * int(out[1]) * int(out[2])
        elif kind == "Dense":
            total += 2 * int(np.prod(layer.kernel.shape))
    return total


def _config(data: str, epochs: int, quick: bool):
    from fer.config import TrainConfig

    return TrainConfig.for_architecture("vgg_fer_cpu", data=data, epochs=epochs, backend="tensorflow",
                                        deterministic=False, **({"batch_size": 8} if quick else {}))


def worker(job: dict) -> dict:
    """One candidate in this process: its speed (``steps`` > 0) or its proxy run (``epochs`` > 0)."""
    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy(job.get("precision", "float32"))
    from fer.data import load_dataset
    from fer.pipeline import evaluation_batches, training_batches
    from fer.recipe import training_model

    quick = job["quick"]
    batch = 8 if quick else BATCH
    if job.get("epochs"):
        dataset = load_dataset(job["data"])
        steps = len(dataset.train) // batch
        config = _config(job["data"], job["epochs"], quick)
        model = training_model(config, steps, network=build(job["candidate"], config))
        started = time.time()
        history = model.fit(training_batches(dataset.train.images, dataset.train.labels, batch, config.seed),
                            validation_data=evaluation_batches(dataset.val.images, dataset.val.labels),
                            epochs=config.epochs, verbose=2)
        accuracy = history.history["val_accuracy"]
        return {"candidate": job["candidate"], "epochs": config.epochs,
                "train_s": round(time.time() - started, 1),
                "best_public_test": round(float(max(accuracy)), 4),
                "best_epoch": int(np.argmax(accuracy)) + 1, "last_public_test": round(float(accuracy[-1]), 4)}
    config = _config(job["data"], 1, quick)
    network = build(job["candidate"], config)
    model = training_model(config, job["steps"], network=network)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * job["steps"], 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, batch * job["steps"])
    warm = training_batches(images[:batch * 3], labels[:batch * 3], batch, 0)
    model.fit(warm, epochs=1, verbose=0)
    rates, cpu_rates = [], []
    cores = len(os.sched_getaffinity(0))
    for round_ in range(job.get("rounds", 1)):
        timed = training_batches(images, labels, batch, 1 + round_)
        started, cpu_started = time.perf_counter(), time.process_time()
        model.fit(timed, epochs=1, verbose=0)
        rates.append(round(batch * job["steps"] / (time.perf_counter() - started), 1))
        cpu_rates.append(round(cores * batch * job["steps"] / (time.process_time() - cpu_started), 1))
    return {"candidate": job["candidate"], "precision": job.get("precision", "float32"),
            "params": network.count_params(), "mflops": round(flops(network) / 1e6, 1),
            "images_per_s": statistics.median(rates), "images_per_s_per_round": rates,
            "images_per_cpu_s_x_cores": statistics.median(cpu_rates)}


def _run(job: dict) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    log("running", json.dumps(job))
    result = subprocess.run([sys.executable, "-m", "bench.cpu_preset", "--job", json.dumps(job)], cwd=ROOT,
                            env=env, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"candidate job failed ({result.returncode}):\n{result.stderr[-3000:]}")
    row = json.loads(lines[-1])
    log("  ->", row)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_preset", description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="measure images/s only (the default)")
    parser.add_argument("--proxy", action="store_true", help="also train each candidate for --budget")
    parser.add_argument("--budget", type=float, default=720.0,
                        help="proxy budget in seconds of float32 training at the measured speed")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--steps", type=int, default=60, help="timed batches per speed measurement")
    parser.add_argument("--rounds", type=int, default=3, help="timed fits per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data (smoke test)")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        print(json.dumps(worker(json.loads(args.job))), flush=True)
        return 0
    folder, data_kind = fer_folder(args.quick)
    candidates = ["vgg16", "tang"] if args.quick else args.candidates.split(",")
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidates {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    steps = 3 if args.quick else args.steps
    speed = [_run({"candidate": name, "precision": precision, "steps": steps, "data": str(folder),
                   "quick": args.quick, "rounds": 1 if args.quick else args.rounds})
             for name in candidates for precision in (PRECISIONS[:1] if args.quick else PRECISIONS)]
    result = {"quick": args.quick, "data": data_kind, "batch_size": 8 if args.quick else BATCH,
              "speed": speed}
    if args.proxy or args.quick:
        from fer.data import load_dataset

        faces = len(load_dataset(folder).train)
        proxy = []
        for name in candidates:
            rate = next(row["images_per_cpu_s_x_cores"] for row in speed if row["candidate"] == name
                        and row["precision"] == "float32")
            epochs = 1 if args.quick else max(1, round(args.budget * rate / faces))
            proxy.append(_run({"candidate": name, "epochs": epochs, "data": str(folder),
                               "quick": args.quick}))
        result.update(budget_s=args.budget, training_faces=faces, proxy=proxy)
    write_result("cpu_preset", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
