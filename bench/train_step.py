"""Training step speed on CPU: mini_xception and vgg_fer, what helps and what does not,
on every Keras backend, interleaved in time.

    python -m bench.train_step                   # both backends (a few minutes on 2 cores)
    python -m bench.train_step --backend jax     # one backend (tensorflow, jax, or both)
    python -m bench.train_step --quick           # tiny synthetic set, two variants (smoke test)

Every variant trains the preset as ``fer.train`` does (with_augmentation(network, preset), its
batch size and optimizer, fed by ``fer.pipeline.training_batches``). ONE worker process per
(backend, model) builds and compiles one model per variant, warms each up (tracing, XLA
compilation), then alternates timed fits of ``--steps`` steps over the variants for ``--rounds``
rounds, because this machine's speed drifts over minutes. ``baseline`` is the product's setting
(steps_per_execution from fer.recipe.steps_per_execution: 16 for mini_xception, 1 for vgg_fer;
``jit_compile="auto"``: XLA under JAX, none on TensorFlow's CPU; float32). Variants: another
``steps_per_execution``, ``mixed_bfloat16`` (the CPU's 16-bit type), and on TensorFlow
``jit_compile=True`` (XLA; under JAX every step is XLA already). speedup = the median over rounds of
variant rate / baseline rate of the same round (> 1 is faster). One epoch of FER2013 is
28709 // 64 = 448 steps: ``epoch_s`` extrapolates the median rate to that (validation excluded).
Explicit thread settings are process-wide, so they cannot alternate in one process: run
``python -m bench._train_worker --intra 2 --inter 1 ...`` by hand (earlier: no change).

Without a GPU, the GPU measurements (mixed precision, XLA, batch size and
utilisation on a GPU) are not taken; ``gpu`` in the JSON says so. Needs no bench venv.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.common import add_interleaving_arguments, backends_argument, fer_folder, run_jobs, write_result

STEPS_PER_EPOCH = 28709 // 64
# name -> candidate settings (see bench._train_worker); "baseline" is the product's.
VARIANTS = {
    "mini_xception": [("baseline", {}), ("steps_per_execution=1", {"spe": 1}),
                      ("mixed_bfloat16", {"precision": "mixed_bfloat16"}),
                      ("jit_compile", {"jit": "true"})],
    "vgg_fer": [("baseline", {}), ("steps_per_execution=4", {"spe": 4}),
                ("mixed_bfloat16", {"precision": "mixed_bfloat16"}), ("jit_compile", {"jit": "true"})],
}
TENSORFLOW_ONLY = {"jit_compile"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny synthetic data, mini_xception baseline and one variant (smoke test)")
    add_interleaving_arguments(parser, list(VARIANTS), "variant", rounds=3)
    args = parser.parse_args(argv)
    backends = backends_argument(args.backend)
    folder, data_kind = fer_folder(args.quick)
    steps = {k: int(v) for k, v in (item.split("=") for item in args.steps.split(",") if item)}
    models = ["mini_xception"] if args.quick else args.models.split(",")
    batch = 8 if args.quick else 64
    table: dict[str, dict[str, dict]] = {b: {} for b in backends}
    speedups: dict[str, dict[str, dict]] = {b: {} for b in backends}
    processes: dict[str, dict[str, dict]] = {b: {} for b in backends}
    devices = set()
    for model in models:
        for backend in backends:
            variants = [(name, settings) for name, settings in VARIANTS[model]
                        if backend == "tensorflow" or name not in TENSORFLOW_ONLY]
            if args.quick:
                variants = variants[:2]
            job = {"mode": "compare", "backend": backend, "model": model, "data": str(folder),
                   "batch_size": batch, "steps": 3 if args.quick else steps.get(model, 0),
                   "fit_seconds": args.fit_seconds,
                   "warmup": 1 if args.quick else 4, "rounds": 2 if args.quick else args.rounds,
                   "candidates": [{"name": name, "feeder": "ours", "augment": "preset", **settings}
                                  for name, settings in variants]}
            row = run_jobs(sys.executable, [job], backend=backend)[0]
            devices.add(row["device"])
            rows = row["candidates"]
            base = rows["baseline"]["images_per_s_per_round"]
            for cand in rows.values():
                cand["epoch_s"] = round(STEPS_PER_EPOCH * 64 / cand["median_images_per_s"], 1)
                cand["step_ms"] = round(batch / cand["median_images_per_s"] * 1000, 1)
            table[backend][model] = rows
            processes[backend][model] = {k: row.get(k) for k in (
                "device", "fastest_per_round", "order_per_round", "preset_augmentation", "steps", "rounds",
                "tensorflow_imported", "tensorflow_imports_refused", "peak_rss_mb", "job_s",
                "load_average_1min_start_end")}
            speedups[backend][model] = {
                name: round(statistics.median(x / b for x, b in zip(cand["images_per_s_per_round"], base,
                                                                     strict=True)), 2)
                for name, cand in rows.items()}
    gpu = any(not d.endswith("x cpu") for d in devices)
    write_result("train_step", {
        "quick": args.quick, "data": f"{data_kind} ({folder})", "backends": backends,
        "gpu": (f"measured on {', '.join(sorted(devices))}" if gpu
                else "none: CPU-only machine, GPU part (mixed precision, XLA, batch size, utilisation) "
                     "not measured"),
        "notes": ["one worker process per (backend, model): every variant compiled there and timed in "
                  "alternating rounds (forward, then reversed order) after one warm-up fit each",
                  "baseline = the product's settings (fer.recipe.steps_per_execution, jit_compile='auto', "
                  "float32)",
                  "rates: steps x batch / time from the first step's begin to the last step's end in each "
                  "timed fit (fit setup and TensorFlow's end-of-fit tf.data wait left out: see "
                  "bench.input_pipeline)",
                  "speedup = median over rounds of variant rate / baseline rate of the same round "
                  "(> 1 is faster)",
                  "epoch_s = 448 steps of 64 at the median rate, validation excluded",
                  "load_average_1min_start_end (per worker process): on two cores a load above ~2 means "
                  "other processes shared the CPU, so every rate is lower (the ratios less affected)",
                  "--quick runs on 28 images: its numbers mean nothing"],
        "variants": table, "speedup_vs_baseline": speedups, "processes": processes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
