"""Input pipelines for every Keras backend: in-memory arrays, seeded shuffling, full batches.

Augmentation is not done here: it is a layer inside the training step (``fer.augment``), so the
pipeline only shuffles and slices arrays that are already in memory, and Keras prefetches the
next batches while the current step runs.
"""

from __future__ import annotations

import keras
import numpy as np

from fer import NUM_CLASSES


def _features(images: np.ndarray) -> np.ndarray:
    # Models take raw 0-255 pixels with a channel axis; they rescale themselves.
    return np.ascontiguousarray(images, dtype=np.float32)[..., None]


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled full batches of (faces, one-hot labels[, sample weights]).

    Epoch ``e`` uses the permutation drawn from ``(seed, e)``, so a run resumed at epoch ``e``
    sees the batches it would have seen without the interruption. Only full batches: a short last
    batch crashes oneDNN on CPU and would recompile an XLA step for a new shape.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                 first_epoch: int = 0, class_weights: dict[int, float] | None = None):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=8)
        if batch_size > len(labels):
            raise ValueError(f"batch_size={batch_size} is larger than the training set "
                             f"({len(labels)} images)")
        self.x = _features(images)
        self.y = _one_hot(labels)
        self.weights = None
        if class_weights:
            table = np.array([class_weights.get(c, 1.0) for c in range(NUM_CLASSES)], dtype=np.float32)
            self.weights = table[np.asarray(labels, dtype=np.int64)]
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = first_epoch
        self.order = self._order(first_epoch)

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.y))

    def __len__(self) -> int:
        return len(self.y) // self.batch_size

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        if self.weights is None:
            return self.x[rows], self.y[rows]
        return self.x[rows], self.y[rows], self.weights[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order(self.epoch)


class EvaluationBatches(keras.utils.PyDataset):
    """Batches in file order, no augmentation; the last batch may be short.

    With ``multiple_of`` > 1 (data parallelism: each device takes an equal share of a batch), a
    short batch is padded to a multiple of it with blank faces of weight 0, which count in
    neither the loss nor the accuracy.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, multiple_of: int = 1):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.multiple_of = _features(images), _one_hot(labels), multiple_of
        self.batch_size = max(multiple_of, batch_size - batch_size % multiple_of)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        x, y = self.x[rows], self.y[rows]
        if self.multiple_of == 1:
            return x, y
        weights = np.ones(len(y), dtype=np.float32)
        pad = -len(y) % self.multiple_of
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
            weights = np.concatenate([weights, np.zeros(pad, np.float32)])
        return x, y, weights


def training_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                     first_epoch: int = 0, class_weights: dict[int, float] | None = None) -> TrainingBatches:
    """The training input of a run (see ``TrainingBatches``)."""
    return TrainingBatches(images, labels, batch_size, seed, first_epoch, class_weights)


def evaluation_batches(images: np.ndarray, labels: np.ndarray, batch_size: int = 256,
                       multiple_of: int = 1) -> EvaluationBatches:
    """The validation input of a run (see ``EvaluationBatches``)."""
    return EvaluationBatches(images, labels, batch_size, multiple_of)
