"""Issue 5.1 - training input pipeline: the seeds' ImageDataGenerator vs our tf.data pipeline.

    python -m bench.input_pipeline            # full measurement (real FER2013 when unpacked)
    python -m bench.input_pipeline --quick    # a few batches on a tiny synthetic set (smoke test)

Measures, each in a fresh process:
  (a) pipeline-only images/s: the seeds' ``ImageDataGenerator(rescale=1/255, horizontal_flip=True,
      validation_split=0.2).flow_from_directory(...)`` (tf-keras) vs ``fer.pipeline.training_dataset``
      with the same augmentation (flip only) and with the preset's full augmentation (Keras layers,
      and a fused one-warp candidate);
  (b) training images/s for ``seed_cnn_a`` and ``mini_xception`` fed by each pipeline;
  (c) the model-bound rate: the same model fed one in-memory batch over and over.
Targets: ours >= 3x the baseline pipeline-only; training with ours >= 90% of the model-bound rate.

The baseline needs tf-keras, which is installed only in the bench venv (never in the project):

    python -m venv --system-site-packages .cache/bench-venv
    .cache/bench-venv/bin/pip install tf-keras==2.21.0
    .cache/bench-venv/bin/pip install --no-deps fer==25.10.3   # (for bench.predict_latency)

Without the venv the baseline rows are reported as skipped. Uses the real FER2013 images when
present (the unpacked shared archive), else a synthetic set of the same size and format.
"""

from __future__ import annotations

import argparse
import sys

from bench.common import VENV_SETUP, bench_python, fer_folder, run_jobs, write_result

MODELS = ("seed_cnn_a", "mini_xception")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.input_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data, a few steps (smoke test)")
    parser.add_argument("--pipeline-steps", type=int, default=300, help="batches timed for pipeline-only")
    parser.add_argument("--train-steps", type=int, default=30, help="training steps timed per measurement")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    folder, data_kind = fer_folder(args.quick)
    batch = 8 if args.quick else 64
    pipeline_steps = 4 if args.quick else args.pipeline_steps
    train_steps, warmup = (2, 1) if args.quick else (args.train_steps, 5)
    baseline_python = bench_python()
    models = ["mini_xception"] if args.quick else args.models.split(",")
    base = {"data": str(folder), "batch_size": batch}

    # (name, job) for our interpreter and for the bench venv's (tf-keras baseline).
    ours = [("pipeline/ours_flip", {"mode": "pipeline", "feeder": "tfdata", "augment": "flip"}),
            ("pipeline/ours_preset_aug", {"mode": "pipeline", "feeder": "tfdata", "augment": "preset"}),
            ("pipeline/ours_preset_fused", {"mode": "pipeline", "feeder": "tfdata", "augment": "preset_fused"})]
    if args.quick:
        ours = ours[:1]
    seeds = [("pipeline/seeds_idg", {"mode": "pipeline", "feeder": "idg"})]
    for job in (ours + seeds):
        job[1].update(steps=pipeline_steps, warmup=1 if args.quick else 10)
    for model in models:
        train = {"mode": "train", "model": model, "steps": train_steps, "warmup": warmup}
        ours += [(f"{model}/model_bound", {**train, "feeder": "memory"}),
                 (f"{model}/ours_flip", {**train, "feeder": "tfdata", "augment": "flip"})]
        if not args.quick:
            ours.append((f"{model}/ours_preset_aug", {**train, "feeder": "tfdata", "augment": "preset"}))
            ours.append((f"{model}/ours_preset_fused", {**train, "feeder": "tfdata", "augment": "preset_fused"}))
        if not args.quick:  # (the smoke test keeps to the baseline's pipeline-only job)
            seeds.append((f"{model}/seeds_idg", {**train, "feeder": "idg"}))
    if not baseline_python:
        seeds = []
    results: dict[str, dict] = {}
    for python, jobs in ((sys.executable, ours), (baseline_python, seeds)):
        if jobs:
            done = run_jobs(python, [{**base, **job} for _, job in jobs], fresh=not args.quick)
            results.update(zip([name for name, _ in jobs], done, strict=True))

    pipeline = {name.split("/")[1]: row for name, row in results.items() if name.startswith("pipeline/")}
    training: dict[str, dict] = {model: {name.split("/")[1]: row for name, row in results.items()
                                         if name.startswith(f"{model}/")} for model in models}
    ratios: dict[str, float] = {}
    if "seeds_idg" in pipeline:
        seeds_rate = pipeline["seeds_idg"]["images_per_s"]
        ratios["pipeline_ours_flip_vs_seeds"] = round(pipeline["ours_flip"]["images_per_s"] / seeds_rate, 2)
        if "ours_preset_aug" in pipeline:
            ratios["pipeline_ours_preset_aug_vs_seeds"] = round(
                pipeline["ours_preset_aug"]["images_per_s"] / seeds_rate, 2)
    for model, rows in training.items():
        bound = rows["model_bound"]["images_per_s"]
        for name in ("ours_flip", "ours_preset_aug", "ours_preset_fused", "seeds_idg"):
            if name in rows:
                ratios[f"train_{model}_{name}_vs_model_bound"] = round(rows[name]["images_per_s"] / bound, 3)
        if "seeds_idg" in rows:
            ratios[f"train_{model}_ours_flip_vs_seeds"] = round(
                rows["ours_flip"]["images_per_s"] / rows["seeds_idg"]["images_per_s"], 2)

    targets = {}
    if "pipeline_ours_flip_vs_seeds" in ratios:
        targets["pipeline_ours_>=3x_seeds"] = ratios["pipeline_ours_flip_vs_seeds"] >= 3
    for model in training:
        key = f"train_{model}_ours_flip_vs_model_bound"
        targets[f"train_{model}_ours_>=90%_model_bound"] = ratios[key] >= 0.9
    write_result("input_pipeline", {
        "quick": args.quick, "data": f"{data_kind} ({folder})", "batch_size": batch,
        "baseline": ("tf-keras ImageDataGenerator.flow_from_directory(rescale=1/255, horizontal_flip=True, "
                     "validation_split=0.2), subset=training" if baseline_python
                     else f"skipped: no bench venv ({VENV_SETUP})"),
        "notes": ["each row is a fresh process; training rows time `steps` steps after `warmup` untimed ones",
                  "ours_flip = the same augmentation as the baseline (horizontal flip; rescaling is inside "
                  "the models); ours_preset_aug = the preset's flip+rotation+zoom+translation",
                  "--quick runs all jobs of one interpreter in one process: its numbers mean nothing",
                  "ours_preset_fused = a candidate, not in the product: the preset's flip, rotation, zoom "
                  "and translation as one affine warp per image (bench/_train_worker.fused_dataset) instead "
                  "of three Keras layers that each warp the batch",
                  "setup_s of ours = fer.data.load_dataset decoding every PNG once (train+val+test); "
                  "the seeds pipeline decodes PNGs on every epoch"],
        "pipeline_only": pipeline, "training": training, "ratios": ratios, "targets_met": targets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
