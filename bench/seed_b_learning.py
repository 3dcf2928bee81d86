"""Why did seed notebooks 001/003 stay at about 25% (one class for every face)? Short runs of
``seed_cnn_b`` (notebook 001's network) on real FER2013, one variant per suspect.

    python -m bench.seed_b_learning                     # every variant, 14,400 faces each
    python -m bench.seed_b_learning --images 960 --every 480 --variants faithful notebook_002

Each variant trains the same network from the same initial weights on the same faces in the same
order (batch 16 like the notebook, unless the variant says otherwise) and is scored on 1,000
PublicTest faces every ``--every`` faces: accuracy, and the share of faces given the most common
prediction (1.0 = one class for all, the notebook's symptom). Variants:

- ``faithful``: the preset as fer-lab trains it (pixels rescaled in the model, fer-lab's
  augmentation with the notebook's ranges, Adam 1e-4).
- ``notebook_generator``: the notebook's own input pipeline (Keras' legacy ImageDataGenerator,
  rotation 20, shifts 0.2, shear 0.2, zoom 0.2, flips, nearest fill), same network.
- ``no_rescaling``: raw 0-255 pixels into the network (notebook 003 never shows its generator).
- ``no_augmentation``: flips only.
- ``lr_1e-3``: ten times the notebook's learning rate.
- ``head_003``: notebook 003's head (Dense 256 and 512, each batch norm, ReLU, dropout 0.25).
- ``head_without_dropout``: notebook 001's head without its dropout 0.5.
- ``head_with_batch_norm``: notebook 001's head with batch norm between Dense 128 and its ReLU.
- ``batch_64_lr_5e-4``: notebook 002's batch size and learning rate.
- ``notebook_002``: notebook 002's preset (``seed_cnn_c``) with its batch size and learning rate,
  flips only: the seed network that did learn, in the same harness.

It also counts the training batches of each epoch when Keras 3 fits a legacy generator the way
the notebooks do (``steps_per_epoch = n // batch_size`` on a generator of ``ceil(n / batch_size)``
batches): every second epoch trains on one batch.

Needs the dataset (FER_DATA or data/). Writes bench/results/seed_b_learning.json.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.common import hardware, write_result

# What each variant changes from the faithful seed_cnn_b preset (batch 16, Adam 1e-4, the
# notebook's augmentation, pixels rescaled in the model).
VARIANTS: dict[str, dict] = {
    "faithful": {},
    "notebook_generator": {"generator": True},
    "no_rescaling": {"rescale": False},
    "no_augmentation": {"augment": False},
    "lr_1e-3": {"learning_rate": 1e-3},
    "head_003": {"architecture": "seed_cnn_b2"},
    "head_without_dropout": {"head": "no_dropout"},
    "head_with_batch_norm": {"head": "batch_norm"},
    "batch_64_lr_5e-4": {"batch": 64, "learning_rate": 5e-4},
    "notebook_002": {"architecture": "seed_cnn_c", "batch": 64, "learning_rate": 5e-4,
                     "augment": False},
}
BATCH = 16
VALIDATION_FACES = 1000


def _network(settings: dict, seed: int):
    import keras

    from fer.config import TrainConfig
    from fer.models import build_model

    config = TrainConfig.for_architecture(settings.get("architecture", "seed_cnn_b"), seed=seed)
    keras.utils.set_random_seed(seed)
    network = build_model(config)
    head = settings.get("head")
    if head:
        # Notebook 001's head rebuilt on the same trunk (everything up to Flatten).
        trunk = keras.Model(network.input, network.get_layer(index=len(network.layers) - 4).output)
        x = keras.layers.Dense(128)(trunk.output)
        if head == "batch_norm":
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        if head == "batch_norm":
            x = keras.layers.Dropout(0.5)(x)
        network = keras.Model(trunk.input, keras.layers.Dense(7, activation="softmax")(x))
    if not settings.get("rescale", True):
        # The same layers without the Rescaling layer.
        inputs = keras.Input(shape=network.input_shape[1:])
        x = inputs
        for layer in network.layers[2:]:
            x = layer(x)
        network = keras.Model(inputs, x)
    return config, network


def _train_model(settings: dict, config, network):
    import keras

    from fer.augment import with_augmentation

    if settings.get("generator"):
        model = network  # the generator augments
    elif not settings.get("augment", True):
        model = with_augmentation(network, config.__class__.from_dict(
            {**config.to_dict(), "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "shear": 0.0}))
    else:
        model = with_augmentation(network, config)
    model.compile(keras.optimizers.Adam(settings.get("learning_rate", config.learning_rate)),
                  "categorical_crossentropy", metrics=["accuracy"])
    return model


def run_variant(variant: str, train, val, images: int, every: int, seed: int) -> dict:
    """Train on ``images`` faces (the same ones, in the same order, for every variant), scoring
    every ``every`` faces."""
    import keras

    settings = VARIANTS[variant]
    batch = settings.get("batch", BATCH)
    config, network = _network(settings, seed)
    model = _train_model(settings, config, network)
    order = np.random.default_rng(seed).permutation(len(train.labels))[:images]
    x = train.images[order][..., None].astype("float32")
    y = keras.utils.to_categorical(train.labels[order], 7)
    generator = None
    if settings.get("generator"):
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

        generator = ImageDataGenerator(rotation_range=20, width_shift_range=0.2,
                                       height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
                                       horizontal_flip=True, fill_mode="nearest")
    points = []
    started = time.time()
    for start in range(0, images, every):
        chunk = slice(start, min(start + every, images))
        if generator is not None:
            flow = generator.flow(x[chunk], y[chunk], batch_size=batch, shuffle=False, seed=seed + start)
            history = model.fit(flow, epochs=1, verbose=0)
        else:
            history = model.fit(x[chunk], y[chunk], batch_size=batch, epochs=1, shuffle=False, verbose=0)
        predicted = network.predict(val.images[..., None].astype("float32"), batch_size=256,
                                    verbose=0).argmax(axis=1)
        point = {
            "images": chunk.stop,
            "steps": chunk.stop // batch,
            "train_accuracy": round(float(history.history["accuracy"][-1]), 4),
            "val_accuracy": round(float((predicted == val.labels).mean()), 4),
            "most_common_prediction_share": round(float(np.bincount(predicted, minlength=7).max()
                                                        / len(predicted)), 4),
        }
        points.append(point)
        print(variant, point, f"{time.time() - started:.0f}s", flush=True)
    return {"variant": variant, "settings": settings, "batch": batch, "points": points,
            "seconds": round(time.time() - started, 1)}


def notebook_epoch_lengths(epochs: int = 4) -> list[int]:
    """Training batches per epoch of ``fit(generator, steps_per_epoch=n // batch)``, as in
    notebooks 000-003, on 100 random faces in batches of 16 (7 batches, 6 steps asked)."""
    import warnings

    import keras
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (100, 48, 48, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 7, 100), 7)
    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(7, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    lengths: list[int] = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            lengths.append(0)

        def on_train_batch_end(self, batch, logs=None):
            lengths[-1] += 1

    flow = ImageDataGenerator(horizontal_flip=True).flow(x, y, batch_size=BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Your input ran out of data": the point of the count
        model.fit(flow, steps_per_epoch=len(x) // BATCH, epochs=epochs, verbose=0, callbacks=[Count()])
    return lengths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--images", type=int, default=14_400,
                        help="training faces per variant (900 steps of 16)")
    parser.add_argument("--every", type=int, default=2_400, help="score every this many faces")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fer.data import DataError, load_dataset

    try:
        dataset = load_dataset(None)
    except DataError as exc:
        parser.exit(2, f"error: {exc}\n")
    lengths = notebook_epoch_lengths()
    print("batches per epoch of fit(generator, steps_per_epoch=n // batch):", lengths, flush=True)
    rng = np.random.default_rng(args.seed)
    val = dataset.val.subset(rng.permutation(len(dataset.val))[:VALIDATION_FACES])
    results = [run_variant(v, dataset.train, val, args.images, args.every, args.seed)
               for v in args.variants]
    write_result("seed_b_learning", {"hardware": hardware(), "images": args.images,
                                    "validation_faces": len(val), "notebook_epoch_batches": lengths,
                                    "variants": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
