"""Tiny synthetic FER2013 look-alikes: image folders, a fer2013.csv and a .tar.gz of a folder.

Every face's mean brightness encodes its canonical label (``LABEL_BASE + LABEL_STEP * label``), so
a test can check that a loader mapped each class folder by its name, whatever the folder order.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from fer import CLASSES, IMAGE_SIZE

LABEL_BASE = 20
LABEL_STEP = 30


def face(label: int, index: int = 0) -> np.ndarray:
    """A 48x48 uint8 image whose mean brightness says ``label`` (small noise keeps images distinct)."""
    rng = np.random.default_rng(1000 * label + index)
    noise = rng.integers(-4, 5, (IMAGE_SIZE, IMAGE_SIZE))
    return np.clip(LABEL_BASE + LABEL_STEP * label + noise, 0, 255).astype(np.uint8)


def label_of(image: np.ndarray) -> int:
    """The label that :func:`face` encoded into ``image``."""
    return int(round((float(np.mean(image)) - LABEL_BASE) / LABEL_STEP))


def _counts(count: int | dict[str, int], classes: Iterable[str]) -> dict[str, int]:
    return dict(count) if isinstance(count, dict) else {name: count for name in classes}


def write_faces(folder: Path, label: int, count: int, prefix: str, suffix: str = ".png",
                start: int = 0) -> list[Path]:
    """``count`` faces of ``label`` as ``folder/<prefix><n><suffix>``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"{prefix}{label}{i:04d}{suffix}"
        Image.fromarray(face(label, i), mode="L").save(path)
        paths.append(path)
    return paths


def write_image_folder(root: Path, train: int | dict[str, int] = 4, test: int | dict[str, int] = 2,
                       kaggle: bool = True, classes: Iterable[str] = CLASSES,
                       suffix: str = ".png") -> Path:
    """``root/train/<emotion>/`` and ``root/test/<emotion>/`` with ``train``/``test`` faces per class.

    With ``kaggle`` the test folder holds ``test`` PublicTest_ and ``test`` PrivateTest_ faces per
    class (the msambare layout); without it, ``test`` plain-named faces per class.
    """
    classes = list(classes)
    for name, count in _counts(train, classes).items():
        write_faces(root / "train" / name, CLASSES.index(name), count, "Training_", suffix)
    for name, count in _counts(test, classes).items():
        folder, label = root / "test" / name, CLASSES.index(name)
        if kaggle:
            write_faces(folder, label, count, "PublicTest_", suffix)
            write_faces(folder, label, count, "PrivateTest_", suffix)
        else:
            write_faces(folder, label, count, "face_", suffix)
    return root


def write_fer_csv(path: Path, per_usage: dict[str, int] | None = None,
                  classes: Iterable[str] = CLASSES) -> Path:
    """A fer2013.csv (``emotion,pixels,Usage``) with ``per_usage[usage]`` rows per class."""
    per_usage = per_usage or {"Training": 3, "PublicTest": 1, "PrivateTest": 1}
    lines = ["emotion,pixels,Usage"]
    for usage, count in per_usage.items():
        for name in classes:
            label = CLASSES.index(name)
            for i in range(count):
                pixels = " ".join(map(str, face(label, i).ravel()))
                lines.append(f"{label},{pixels},{usage}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_archive(folder: Path, archive: Path, top: str | None = None) -> Path:
    """A .tar.gz of ``folder``'s train/ and test/, at the archive root (like the shared archive)
    or under one ``top`` folder."""
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("train", "test"):
            tar.add(folder / name, arcname=f"{top}/{name}" if top else name)
    return archive
