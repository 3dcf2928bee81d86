"""Find, unpack and read FER2013 into numpy arrays, split into train / validation / test.

Three forms are accepted:
  * an image folder: ``train/<emotion>/*.jpg`` and ``test/<emotion>/*.jpg``. When test file names
    start with ``PublicTest_``/``PrivateTest_`` (the Kaggle layout), PublicTest is the validation
    split and PrivateTest the test split; otherwise validation is a seeded stratified fraction of
    train and test is ``test/``;
  * the original ``fer2013.csv`` (columns ``emotion,pixels,Usage``);
  * a ``.tar.gz`` of the image folder, unpacked once into a cache.

This module does not import TensorFlow: the UI uses it to check a dataset quickly.

Every dataset form and split rule lives here, so no other module knows them; hence the length.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fer import CLASSES, IMAGE_SIZE, PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "data"
# Folders (os.pathsep-separated) the app may read datasets from, besides data/ and FER_DATA.
DATA_ROOTS_ENV = "FER_DATA_ROOTS"
OUTSIDE_ROOTS = ("datasets are read only from data/, FER_DATA and FER_DATA_ROOTS; "
                 "add the folder to FER_DATA_ROOTS to use it")
CSV_FORMAT = "a fer2013.csv needs the columns emotion, pixels and Usage"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
SPLIT_TITLES = {"train": "Training", "val": "Validation (PublicTest)", "test": "Test (PrivateTest)"}


class DataError(ValueError):
    """The dataset is missing or not in a form we can read; the message says what and where."""


@dataclass
class Split:
    images: np.ndarray  # (n, 48, 48) uint8
    labels: np.ndarray  # (n,) int64, canonical class index
    names: list[str]  # file path relative to the dataset root, or "row <n>" for the CSV

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(CLASSES))
        return {name: int(counts[i]) for i, name in enumerate(CLASSES)}

    def subset(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index], [self.names[i] for i in index])


@dataclass
class Dataset:
    source: Path
    train: Split
    val: Split
    test: Split
    val_description: str
    test_description: str
    warnings: list[str] = field(default_factory=list)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)


def cache_dir() -> Path:
    """Where unpacked archives live (git-ignored); ``FER_CACHE`` overrides it."""
    return Path(os.environ.get("FER_CACHE") or PROJECT_ROOT / ".cache")


def default_data_location() -> Path | None:
    """``FER_DATA``, else FER2013 in ``data/`` of the project; None if none."""
    if os.environ.get("FER_DATA"):
        return Path(os.environ["FER_DATA"]).expanduser()
    candidates = [DATA_DIR / "fer2013_images.tar.gz", DATA_DIR / "fer2013.csv", DATA_DIR]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def default_dataset() -> Path:
    """The dataset an empty "dataset" setting means, as a concrete path: ``FER_DATA``, FER2013's
    archive or CSV in ``data/``, else the first dataset folder in ``data/`` by name. A run stores
    this path when it is created, so importing another dataset later never changes what a run
    (or its resume, or a sweep's next trial) trains on. A DataError when there is none."""
    path = _given_or_default(None).expanduser()
    if not path.is_dir():
        return path
    for csv_name in ("fer2013.csv", "fer2013.csv.gz"):
        if not (path / "train").is_dir() and (path / csv_name).is_file():
            return path / csv_name
    return _find_image_root(path)


def _given_or_default(location: str | os.PathLike | None) -> Path:
    """What a user typed, or the default location when empty; a DataError when there is neither."""
    if location is not None and str(location).strip() != "":
        return Path(str(location).strip())
    found = default_data_location()
    if found is None:
        raise DataError(
            "no dataset given and none found: set FER_DATA, pass --data, or put FER2013 "
            f"(fer2013_images.tar.gz, fer2013.csv or train/+test/ folders) in {DATA_DIR}"
        )
    return found


def _real_path(path: Path) -> Path:
    """``path`` with ``~``, symlinks and ``..`` resolved, whether it exists or not."""
    with contextlib.suppress(RuntimeError):  # ~someone who is not a user here: keep it as typed
        path = path.expanduser()
    return Path(os.path.realpath(path))


def allowed_data_roots() -> list[Path]:
    """The folders (or file) the app may read datasets from, symlinks resolved.

    ``data/`` of the project, ``FER_DATA`` (a folder or one file) and every folder listed in
    ``FER_DATA_ROOTS`` (separated by ``os.pathsep``). The command line is not limited to these.
    """
    roots = [DATA_DIR]
    if os.environ.get("FER_DATA", "").strip():
        roots.append(Path(os.environ["FER_DATA"].strip()))
    extra = os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep)
    roots += [Path(entry.strip()) for entry in extra if entry.strip()]
    return [_real_path(root) for root in roots if "\0" not in str(root)]


def check_data_allowed(location: str | os.PathLike | None) -> Path:
    """The dataset path the app may read for ``location`` (empty = the default), else a DataError.

    The path is resolved (``~``, symlinks, ``..``) and must lie inside :func:`allowed_data_roots`.
    Nothing else about it is looked at first, so the refusal is the same whether the path
    exists or not. Returns the resolved path, for the caller to read.
    """
    path = _given_or_default(location)
    refusal = f"dataset path {str(path)!r} is outside the allowed folders: {OUTSIDE_ROOTS}"
    if "\0" in str(path):
        raise DataError(refusal)
    real = _real_path(path)
    if not any(real.is_relative_to(root) for root in allowed_data_roots()):
        raise DataError(refusal)
    return real


def resolve_location(location: str | os.PathLike | None) -> Path:
    """Turn what a user typed (or nothing) into a readable folder or CSV, unpacking archives.

    Any path is read: the app checks it with :func:`check_data_allowed` first.
    """
    path = _given_or_default(location).expanduser()
    if "\0" in str(path):
        raise DataError(f"dataset path {str(path)!r} contains a NUL character")
    if not path.exists():
        raise DataError(f"dataset not found: {path} does not exist")
    if not path.is_file() and not path.is_dir():
        raise DataError(f"{path} is neither a folder nor a regular file (a pipe or device?)")
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            return _find_image_root(unpack_archive(path))
        if name.endswith((".csv", ".csv.gz")):
            return path
        raise DataError(f"{path} is neither a folder, a .tar.gz archive nor a fer2013.csv file")
    for csv_name in ("fer2013.csv", "fer2013.csv.gz"):
        if not (path / "train").is_dir() and (path / csv_name).is_file():
            return path / csv_name
    return _find_image_root(path)


def unpacked_folder(archive: Path) -> Path:
    """Where :func:`unpack_archive` puts ``archive`` (a new folder whenever the archive changes)."""
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_dir() / "datasets" / f"{archive.name.split('.')[0]}-{key[:12]}"


def unpack_archive(archive: Path) -> Path:
    """Unpack ``archive`` once into the cache and return the folder; safe against concurrent calls."""
    target = unpacked_folder(archive)
    stem = archive.name.split(".")[0]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{stem}-"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"could not unpack {archive}: {_failure(exc)}; expected a .tar.gz of "
                        "train/ and test/ whose members stay inside it") from None
    try:
        tmp.rename(target)
    except OSError:
        # Another process unpacked the same archive first; use theirs.
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def _failure(exc: BaseException) -> str:
    """What went wrong, without the text of the exception: that may quote the file (a CSV line,
    an archive member's name)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # e.g. "Permission denied", "No space left on device"
    return type(exc).__name__


def _find_image_root(path: Path) -> Path:
    """The folder holding ``train/`` (the folder itself or a single level below it)."""
    if (path / "train").is_dir():
        return path
    # Sorted, so a data/ folder with several datasets always gives the same one (the first by name).
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    for sub in subdirs:
        if (sub / "train").is_dir():
            return sub
    raise DataError(
        f"{path} has no train/ folder: expected train/<emotion>/*.jpg and test/<emotion>/*.jpg "
        f"with emotion folders named {', '.join(CLASSES)}"
    )


def _class_index(folder: Path) -> int:
    name = folder.name.lower()
    if name not in CLASSES:
        raise DataError(
            f"unknown class folder {folder}: class folders must be named {', '.join(CLASSES)}"
        )
    return CLASSES.index(name)


def _utf8_name(name: str) -> bool:
    """Whether a file name is valid UTF-8 (Python keeps other bytes as surrogates, which no page,
    CSV or JSON file can hold)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _list_folder(split_dir: Path, root: Path, warnings: list[str]) -> list[tuple[Path, int]]:
    if not split_dir.is_dir():
        raise DataError(f"missing folder {split_dir}: expected {split_dir.name}/<emotion>/*.jpg")
    items: list[tuple[Path, int]] = []
    skipped: list[Path] = []
    class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{split_dir} has no class folders; expected {', '.join(CLASSES)}")
    for class_dir in class_dirs:
        label = _class_index(class_dir)
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        undecodable = [p for p in files if not _utf8_name(p.name)]
        files = [p for p in files if _utf8_name(p.name)]
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if undecodable:
            shown = undecodable[0].name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            warnings.append(f"skipped {len(undecodable)} file(s) in {class_dir.relative_to(root)} whose "
                            f"names are not valid UTF-8, e.g. {shown!r}: rename them to use them")
        if not images:
            warnings.append(f"class folder {class_dir} has no images")
        items += [(p, label) for p in images]
    missing = sorted(set(CLASSES) - {d.name.lower() for d in class_dirs})
    if missing:
        warnings.append(f"{split_dir} has no folder for: {', '.join(missing)}")
    if skipped:
        example = skipped[0].relative_to(root)
        warnings.append(f"skipped {len(skipped)} non-image file(s) in {split_dir}, e.g. {example}")
    if not items:
        raise DataError(f"{split_dir} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    return items


# The largest side of an image a dataset may hold (FER2013's faces are 48x48): a larger one is
# skipped from its header, so a planted 13000x13000 PNG costs nothing to a page that samples faces.
MAX_IMAGE_SIDE = 4096


def _read_images(items: list[tuple[Path, int]], root: Path, warnings: list[str]) -> Split:
    images = np.empty((len(items), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    names: list[str] = []
    bad: list[str] = []
    n = 0
    for path, label in items:
        try:
            with Image.open(path) as image:
                if max(image.size) > MAX_IMAGE_SIDE:  # from the header: never decoded
                    raise ValueError(f"{image.size[0]}x{image.size[1]} pixels")
                image = image.convert("L")
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
                images[n] = np.asarray(image)
        except (OSError, ValueError, Image.DecompressionBombError):
            bad.append(str(path.relative_to(root)))
            continue
        labels[n] = label
        names.append(str(path.relative_to(root)))
        n += 1
    if items and n == 0:
        folder = items[0][0].parent.parent
        raise DataError(f"none of the {len(items)} images in {folder} could be read (e.g. {bad[0]}); "
                        "were they deleted or damaged?")
    if bad:
        warnings.append(f"skipped {len(bad)} unreadable image(s), e.g. {bad[0]}")
    return Split(images[:n], labels[:n], names)


def _stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(rest, held_out) with ``fraction`` of every class held out, reproducibly."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(split.labels):
        index = np.flatnonzero(split.labels == label)
        rng.shuffle(index)
        held.append(index[: int(round(len(index) * fraction))])
    held_index = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    mask = np.ones(len(split), dtype=bool)
    mask[held_index] = False
    return split.subset(np.flatnonzero(mask)), split.subset(held_index)


def _stratified_sample(split: Split, count: int, seed: int) -> Split:
    """Exactly ``count`` images of ``split``, each class keeping its share (largest remainders)."""
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(split.labels, return_counts=True)
    quotas = sizes * count / len(split)
    take = np.floor(quotas).astype(int)
    # Hand the images left over by rounding down to the classes with the largest remainders.
    for i in np.argsort(-(quotas - take), kind="stable")[: count - int(take.sum())]:
        take[i] += 1
    chosen = []
    for label, n in zip(classes, take, strict=True):
        index = np.flatnonzero(split.labels == label)
        rng.shuffle(index)
        chosen.append(index[:n])
    return split.subset(np.sort(np.concatenate(chosen)))


def _load_folder(root: Path, validation_split: float, seed: int) -> Dataset:
    warnings: list[str] = []
    train_items = _list_folder(root / "train", root, warnings)
    test_items = _list_folder(root / "test", root, warnings)
    public = [it for it in test_items if it[0].name.startswith("PublicTest_")]
    private = [it for it in test_items if it[0].name.startswith("PrivateTest_")]
    train = _read_images(train_items, root, warnings)
    if public and private:
        val = _read_images(public, root, warnings)
        test = _read_images(private, root, warnings)
        val_description, test_description = ("PublicTest (test/PublicTest_*)",
                                             "PrivateTest (test/PrivateTest_*)")
    else:
        train, val = _stratified_split(train, validation_split, seed)
        test = _read_images(test_items, root, warnings)
        val_description = f"{validation_split:.0%} of train (stratified, seed {seed})"
        test_description = "test/"
    return Dataset(root, train, val, test, val_description, test_description, warnings)


def _csv_pixels(path: Path, texts: np.ndarray) -> np.ndarray:
    """The (rows, 48, 48) uint8 faces of a fer2013.csv's pixels column, parsed row by row in C
    (a whole-column split would make 80 million Python strings: about 7 GB for FER2013)."""
    expected = IMAGE_SIZE * IMAGE_SIZE
    images = np.empty((len(texts), expected), np.uint8)
    wrong: list[tuple[int, int]] = []  # (row, how many values it has)
    for row, text in enumerate(texts):
        if not isinstance(text, str):  # an empty field reads as missing (NaN)
            text = ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)  # NumPy < 2.4: not yet an error
                values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):  # something that is not a whole number
            count = len(text.split())
            if count == expected:
                raise DataError(f"{path}: row {row} has non-numeric pixel values; pixels must be "
                                f"{expected} whole numbers 0..255 separated by spaces") from None
            wrong.append((row, count))
            continue
        if len(values) != expected:
            wrong.append((row, len(values)))
            continue
        if values.min() < 0 or values.max() > 255:
            raise DataError(f"{path}: pixel values must be in 0..255 (row {row} is not)")
        images[row] = values
    if wrong:
        raise DataError(f"{path}: row {wrong[0][0]} has {wrong[0][1]} pixel values, expected {expected} "
                        f"(48x48); {len(wrong)} row(s) are wrong")
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def _load_csv(path: Path) -> Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"could not read {path} as CSV ({_failure(exc)}); {CSV_FORMAT}") from None
    missing = [name for name in ("emotion", "pixels", "Usage") if name not in frame.columns]
    if missing:
        # Never the columns it has: the header of any CSV would be shown to whoever typed the path.
        raise DataError(f"{path} is not a fer2013.csv: it has no {', '.join(missing)} column; {CSV_FORMAT}")
    images = _csv_pixels(path, frame["pixels"].astype(str).to_numpy())
    try:
        labels = frame["emotion"].to_numpy().astype(np.int64)
    except ValueError:
        raise DataError(f"{path}: non-numeric emotion values; they must be whole numbers "
                        f"0..{len(CLASSES) - 1}") from None
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        raise DataError(f"{path}: emotion values must be 0..{len(CLASSES) - 1}")
    usage = frame["Usage"].astype(str).to_numpy()
    unknown = np.flatnonzero(~np.isin(usage, ["Training", "PublicTest", "PrivateTest"]))
    if len(unknown):
        raise DataError(f"{path}: row {int(unknown[0])} has an unknown Usage value; {len(unknown)} "
                        "row(s) do; expected Training, PublicTest or PrivateTest")

    def take(kind: str) -> Split:
        index = np.flatnonzero(usage == kind)
        if len(index) == 0:
            raise DataError(f"{path} has no rows with Usage={kind}")
        return Split(images[index], labels[index], [f"row {i}" for i in index])

    return Dataset(path, take("Training"), take("PublicTest"), take("PrivateTest"),
                   "PublicTest rows", "PrivateTest rows")


def load_dataset(location: str | os.PathLike | None = None, validation_split: float = 0.1,
                 seed: int = 42, max_train_samples: int = 0) -> Dataset:
    """Read the whole dataset into memory (FER2013 is 83 MB as uint8)."""
    source = resolve_location(location)
    dataset = _load_csv(source) if source.is_file() else _load_folder(source, validation_split, seed)
    if 0 < max_train_samples < len(dataset.train):
        dataset.train = _stratified_sample(dataset.train, max_train_samples, seed)
    return dataset


@dataclass
class DatasetSummary:
    source: Path
    counts: dict[str, dict[str, int]]  # split -> class -> count
    val_description: str
    test_description: str
    warnings: list[str]


def summarize_dataset(location: str | os.PathLike | None = None,
                      validation_split: float = 0.1, seed: int = 42) -> DatasetSummary:
    """Class counts per split without decoding images (fast enough for the UI)."""
    source = resolve_location(location)
    if source.is_file():
        dataset = _load_csv(source)
        counts = {name: dataset.split(name).class_counts() for name in SPLITS}
        return DatasetSummary(source, counts, dataset.val_description, dataset.test_description, [])
    warnings: list[str] = []
    train = _list_folder(source / "train", source, warnings)
    test = _list_folder(source / "test", source, warnings)
    public = [it for it in test if it[0].name.startswith("PublicTest_")]
    private = [it for it in test if it[0].name.startswith("PrivateTest_")]

    def count(items: list[tuple[Path, int]]) -> dict[str, int]:
        found = Counter(label for _, label in items)
        return {name: found.get(i, 0) for i, name in enumerate(CLASSES)}

    if public and private:
        counts = {"train": count(train), "val": count(public), "test": count(private)}
        return DatasetSummary(source, counts, "PublicTest (test/PublicTest_*)",
                              "PrivateTest (test/PrivateTest_*)", warnings)
    train_counts = count(train)
    val_counts = {k: int(round(v * validation_split)) for k, v in train_counts.items()}
    counts = {"train": {k: v - val_counts[k] for k, v in train_counts.items()},
              "val": val_counts, "test": count(test)}
    return DatasetSummary(source, counts, f"{validation_split:.0%} of train (stratified)",
                          "test/", warnings)


def validation_is_public_test(location: str | os.PathLike | None = None) -> bool | None:
    """Whether validation is PublicTest (a fer2013.csv, or test/ holding PublicTest_ and
    PrivateTest_ files) rather than a fraction of train, told quickly without reading an image.

    None when that cannot be told quickly: an archive not unpacked yet (unpacking FER2013 takes
    seconds), or a dataset that is missing or not in a readable form.
    """
    try:
        path = _given_or_default(location).expanduser()
        if path.is_file() and path.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
            folder = unpacked_folder(path)
            if not folder.is_dir():
                return None
            source = _find_image_root(folder)
        else:
            source = resolve_location(path)
        if source.is_file():
            return True  # fer2013.csv: validation is its PublicTest rows (the loader needs them)
        found = set()
        for class_dir in (source / "test").iterdir():
            if not class_dir.is_dir():
                continue
            with os.scandir(class_dir) as entries:
                for entry in entries:
                    found.update(prefix for prefix in ("PublicTest_", "PrivateTest_")
                                 if entry.name.startswith(prefix))
                    if len(found) == 2:
                        return True
        return False
    except (DataError, OSError):
        return None


DATASET_FILES = (".tar.gz", ".tgz", ".tar", ".csv", ".csv.gz")


def find_datasets() -> list[Path]:
    """The datasets the app can show, without reading them: ``FER_DATA``, ``data/`` itself when it
    holds ``train/``, and every FER2013 archive, CSV or folder directly inside ``data/``.

    Only paths :func:`check_data_allowed` accepts are listed (a link in ``data/`` pointing
    elsewhere is not); hidden entries (an import in progress) are skipped.
    """
    found: list[Path] = []
    if os.environ.get("FER_DATA", "").strip():
        found.append(Path(os.environ["FER_DATA"].strip()).expanduser())
    if DATA_DIR.is_dir():
        if (DATA_DIR / "train").is_dir():
            found.append(DATA_DIR)
        for entry in sorted(DATA_DIR.iterdir()):
            if entry.name.startswith("."):
                continue
            is_folder = entry.is_dir() and any(
                (entry / name).exists() for name in ("train", "fer2013.csv", "fer2013.csv.gz"))
            if is_folder or (entry.is_file() and entry.name.lower().endswith(DATASET_FILES)):
                found.append(entry)
    allowed: list[Path] = []
    for path in found:
        with contextlib.suppress(DataError):
            check_data_allowed(path)
            if path not in allowed:
                allowed.append(path)
    return allowed


def _split_items(root: Path, split: str, validation_split: float, seed: int) -> list[tuple[Path, int]]:
    """The image files of one split of an image-folder dataset, by the rules of :func:`load_dataset`
    (for a validation fraction of train: the same files when every image is readable)."""
    warnings: list[str] = []
    train = _list_folder(root / "train", root, warnings)
    test = _list_folder(root / "test", root, warnings)
    public = [it for it in test if it[0].name.startswith("PublicTest_")]
    private = [it for it in test if it[0].name.startswith("PrivateTest_")]
    if public and private:
        return {"train": train, "val": public, "test": private}[split]
    if split == "test":
        return test
    labels = np.array([label for _, label in train], dtype=np.int64)
    positions = Split(np.zeros((len(train), 1, 1), np.uint8), labels, [str(i) for i in range(len(train))])
    rest, held = _stratified_split(positions, validation_split, seed)
    return [train[int(i)] for i in (held if split == "val" else rest).names]


def sample_faces(location: str | os.PathLike | None = None, split: str = "train", per_class: int = 6,
                 seed: int = 0, validation_split: float = 0.1,
                 split_seed: int = 42) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Up to ``per_class`` faces of every class in ``split``, chosen with ``seed``: class name ->
    [(file or row, 48x48 uint8)]. Only the chosen images of a folder dataset are decoded."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    source = resolve_location(location)
    rng = np.random.default_rng(seed)
    faces: dict[str, list[tuple[str, np.ndarray]]] = {name: [] for name in CLASSES}
    if source.is_file():
        chosen = _load_csv(source).split(split)
        for label, name in enumerate(CLASSES):
            index = np.flatnonzero(chosen.labels == label)
            for i in np.sort(rng.permutation(index)[:per_class]):
                faces[name].append((chosen.names[i], chosen.images[i]))
        return faces
    items = _split_items(source, split, validation_split, split_seed)
    picked: list[tuple[Path, int]] = []
    for label in range(len(CLASSES)):
        of_class = [item for item in items if item[1] == label]
        picked += [of_class[i] for i in np.sort(rng.permutation(len(of_class))[:per_class])]
    if not picked:
        return faces
    read = _read_images(picked, source, [])
    for image, label, name in zip(read.images, read.labels, read.names, strict=True):
        faces[CLASSES[label]].append((name, image))
    return faces

