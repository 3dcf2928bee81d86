"""Grad-CAM cost: the time to explain faces, next to the time to classify them.

    python -m bench.gradcam           # 10 timed calls per case (p50/p95)
    python -m bench.gradcam --quick   # 3 calls, two architectures (smoke test)
    KERAS_BACKEND=jax python -m bench.gradcam   # the JAX path (jax.grad over stateless_call)

Cases: one face (a Predict photo) and 48 faces (one page of the Evaluate gallery), each with
``GradCam.heatmaps`` for the predicted class
and for a chosen class (one pass each), against ``Predictor.predict_faces`` on the same faces. "setup"
is building the explainer and its first call (tracing or compiling), paid once per model since
the pages cache it. Models: the shipped model (or an untrained mini-Xception) and, unless
--quick, every architecture untrained (time does not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import log, percentiles, prediction_model, temp_dir, write_result  # noqa: E402


def timed(call, repeats: int) -> dict[str, float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def measure(model, repeats: int, faces) -> dict:
    from fer.explain import GradCam
    from fer.predict import Predictor

    predictor = Predictor(model, Path("bench"))
    predictor.predict_faces(faces[:1])
    start = time.perf_counter()
    explainer = GradCam(model)
    explainer.heatmaps(faces[:1], 0)
    explainer.heatmaps(faces[:1])
    setup = time.perf_counter() - start
    result = {"layer": explainer.layer_name, "grid": list(explainer.grid), "setup_s": round(setup, 3)}
    for count in (1, 48):
        batch = faces[:count]
        explainer.heatmaps(batch)  # a warm-up per batch shape
        predictor.predict_faces(batch)
        result[f"faces_{count}"] = {
            "predicted_class": timed(lambda b=batch: explainer.heatmaps(b), repeats),
            "chosen_class": timed(lambda b=batch: explainer.heatmaps(b, 3), repeats),
            "predict_faces": timed(lambda b=batch: predictor.predict_faces(b), repeats),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 calls, two architectures")
    parser.add_argument("--output", default=None, help="result JSON (default bench/results/gradcam.json)")
    args = parser.parse_args(argv)
    import keras
    import numpy as np

    from fer.architectures import ARCHITECTURES
    from fer.config import TrainConfig
    from fer.models import build_model

    repeats = 3 if args.quick else 10
    faces = np.random.default_rng(0).integers(0, 256, (48, 48, 48)).astype(np.float32)
    path, description = prediction_model(args.quick, temp_dir("gradcam"))
    log(f"Grad-CAM on {keras.backend.backend()}: {description}")
    models = {"shipped": measure(keras.saving.load_model(path, compile=False), repeats, faces)}
    for name in (["mini_xception", "vgg_fer_compact"] if args.quick else list(ARCHITECTURES)):
        log(f"  {name}")
        keras.utils.set_random_seed(0)
        models[name] = measure(build_model(TrainConfig.for_architecture(name)), repeats, faces)
    write_result("gradcam", {"quick": args.quick, "backend": keras.backend.backend(),
                             "model": description, "repeats": repeats, "models": models}, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
