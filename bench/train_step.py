"""Issue 5.2 - training step speed on CPU: mini_xception and vgg_fer, what helps and what does not.

    python -m bench.train_step            # full measurement (a few minutes on 2 cores)
    python -m bench.train_step --quick    # two steps per variant on a tiny synthetic set (smoke test)

Each variant trains the preset (its batch size, optimizer and augmentation, fed by
``fer.pipeline.training_dataset`` exactly like ``fer.train``) in a fresh process and times a fixed
number of steps after an untimed warm-up (tracing). One epoch of FER2013 is 28709 // 64 = 448
steps: ``epoch_s`` extrapolates the measured step time to that (validation excluded), because a
real vgg_fer epoch takes most of an hour on two cores. Variants: ``jit_compile=True`` (XLA),
``steps_per_execution``, ``mixed_bfloat16``, explicit thread settings. Layouts are already
channels-last (Keras' default, the only layout TensorFlow's CPU convolutions support).
Retracing: the training set is batched with ``drop_remainder=True`` so every step has one shape
(one trace); ``retraces`` counts traces of the train function during the timed steps.

There is no GPU on this machine: the GPU half of the issue (mixed precision, XLA, batch size and
utilisation on a GPU) is not measured here. Needs no bench venv.
"""

from __future__ import annotations

import argparse
import sys

from bench.common import fer_folder, run_jobs, write_result

STEPS_PER_EPOCH = 28709 // 64
VARIANTS = {
    "mini_xception": [("baseline", {}), ("steps_per_execution=16", {"spe": 16}),
                      ("mixed_bfloat16", {"precision": "mixed_bfloat16"}), ("jit_compile", {"jit": True}),
                      ("threads intra=2 inter=1", {"intra": 2, "inter": 1})],
    "vgg_fer": [("baseline", {}), ("steps_per_execution=4", {"spe": 4}),
                ("mixed_bfloat16", {"precision": "mixed_bfloat16"}), ("jit_compile", {"jit": True})],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny synthetic data, mini_xception baseline only, two steps (smoke test)")
    parser.add_argument("--models", default=",".join(VARIANTS))
    parser.add_argument("--steps", default="mini_xception=48,vgg_fer=8",
                        help="timed steps per model (a multiple of every steps_per_execution)")
    args = parser.parse_args(argv)
    folder, data_kind = fer_folder(args.quick)
    steps = dict(item.split("=") for item in args.steps.split(","))
    models = ["mini_xception"] if args.quick else args.models.split(",")
    jobs, names = [], []
    for model in models:
        for name, options in VARIANTS[model][:1] if args.quick else VARIANTS[model]:
            spe = options.get("spe", 1)
            job = {"mode": "train", "feeder": "tfdata", "augment": "preset", "model": model,
                   "data": str(folder), "batch_size": 8 if args.quick else 64,
                   "steps": spe * 2 if args.quick else int(steps[model]),
                   "warmup": spe if args.quick else max(spe, 4), **options}
            jobs.append(job)
            names.append((model, name))
    results = run_jobs(sys.executable, jobs, fresh=not args.quick)
    table: dict[str, dict] = {}
    for (model, name), row in zip(names, results, strict=True):
        row["epoch_s"] = round(row["step_ms"] * STEPS_PER_EPOCH / 1000, 1)
        table.setdefault(model, {})[name] = row
    ratios = {model: {name: round(rows["baseline"]["step_ms"] / row["step_ms"], 2) for name, row in rows.items()}
              for model, rows in table.items()}
    write_result("train_step", {
        "quick": args.quick, "data": f"{data_kind} ({folder})", "gpu": "none: CPU-only machine, GPU part not measured",
        "notes": ["epoch_s = step_ms x 448 steps (FER2013 train, batch 64), validation excluded",
                  "speedup = baseline step time / variant step time (> 1 is faster)",
                  "--quick runs all variants in one process: its numbers mean nothing"],
        "variants": table, "speedup_vs_baseline": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
