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
            raise ValueError(f"batch_size={batch_size} is larger than the training set ({len(labels)} images)")
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
    """Batches in file order, no augmentation; the last batch may be short."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.batch_size = _features(images), _one_hot(labels), batch_size

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[rows], self.y[rows]


def training_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                     first_epoch: int = 0, class_weights: dict[int, float] | None = None) -> TrainingBatches:
    """The training input of a run (see ``TrainingBatches``)."""
    return TrainingBatches(images, labels, batch_size, seed, first_epoch, class_weights)


def evaluation_batches(images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> EvaluationBatches:
    """The validation input of a run (see ``EvaluationBatches``)."""
    return EvaluationBatches(images, labels, batch_size)
