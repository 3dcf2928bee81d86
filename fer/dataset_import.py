"""Import an uploaded FER2013 into ``data/<name>/``: a zip or tar(.gz) of the image folders, or a
``fer2013.csv`` (optionally gzipped), checked and then unpacked or converted.

Every check that protects the server runs while the file is read, before anything is kept:
archive members must stay inside the archive (no absolute paths, no ``..``), be plain files or
folders (no links, devices or pipes), stay under a member count and a total unpacked size (a
zip or gzip "bomb" is stopped as soon as it passes the cap, whatever its headers claim). The
result must look like FER2013: ``train/<emotion>/`` and ``test/<emotion>/`` with images that
decode, or a CSV with ``emotion, pixels, Usage``, 48x48 pixel values and known labels.

A CSV is converted to the image-folder layout (lossless PNG; ``Training_``, ``PublicTest_`` and
``PrivateTest_`` file prefixes), which :mod:`fer.data` reads like the Kaggle folders. Work happens
in a hidden folder under ``data/.imports/``; the finished dataset is renamed into place, so
``data/<name>/`` is either complete or absent.

The dashboard runs this module as a background process (``python -m fer.dataset_import``),
which reports progress in a status file; it is also a command for a shell. No TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import re
import secrets
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
from PIL import Image

from fer import CLASSES, IMAGE_SIZE
from fer.data import IMAGE_SUFFIXES
from fer.files import write_json_atomic
from fer.workers import pid_running

# An upload as the dashboard accepts it; .streamlit/config.toml's server.maxUploadSize matches.
MAX_UPLOAD_MB = 400
# FER2013's image folders hold 35,887 images in 58 MB (about 100 MB as tar); its CSV is 301 MB.
MAX_MEMBERS = 100_000
MAX_UNPACKED_BYTES = 1 << 30
MAX_MEMBER_BYTES = 16 << 20  # one face image (a CSV member may be as large as MAX_UNPACKED_BYTES)
# The original download from the Kaggle challenge is fer2013.tar.gz holding fer2013/fer2013.csv;
# the challenge's newer zip has icml_face_data.csv (the same columns).
ARCHIVED_CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")
MAX_CSV_ROWS = 200_000
MAX_CSV_LINE = 1 << 16  # characters; a fer2013.csv line has about 8,000
# The largest GNU long-name or PAX header a tar member may have (tarfile reads it whole).
MAX_TAR_HEADER_BYTES = 1 << 16
MAX_IMAGE_SIDE = 4096  # a spot-checked image larger than this is refused before decoding
SPOT_CHECKS_PER_CLASS = 3
SPOT_CHECK_SEED = 0
CHUNK = 1 << 20
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
USAGE_PREFIX = {"Training": ("train", "Training_"), "PublicTest": ("test", "PublicTest_"),
                "PrivateTest": ("test", "PrivateTest_")}
CSV_COLUMNS = ("emotion", "pixels", "Usage")
IMPORTS = ".imports"  # under the data folder: jobs in progress (hidden from dataset discovery)
STATUS_FILE = "status.json"
UNPACKED = "unpacked"
CONVERTED = "converted"
STARTUP_GRACE_S = 10  # a job's process may take this long to write its pid
SKIPPED_PARTS = ("__MACOSX",)  # macOS adds this folder of resource forks to zips


class ImportProblem(ValueError):
    """The upload is refused; the message says why in a sentence for the user."""


@dataclass
class ImportResult:
    target: Path
    kind: str  # "archive" or "csv"
    images: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split folder -> class -> count
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


Progress = Callable[[str, float], None]  # (phase, fraction of the input read)


def _no_progress(phase: str, fraction: float) -> None:
    """Progress reports go nowhere (used when no status file is kept)."""


# Names an import may not take: data/train or data/test would turn data/ itself into a dataset.
RESERVED_NAMES = ("train", "test")


def check_name(name: str, data_dir: Path) -> Path:
    """``data_dir/<name>`` for a new dataset name, else an ImportProblem."""
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name) or name.endswith((".gz", ".zip", ".tar", ".csv", ".tgz")):
        raise ImportProblem("the dataset name must be 1 to 64 letters, digits, '_', '-' or '.', start "
                            "with a letter or digit and not end like a file (.zip, .tar.gz, .csv)")
    if name.lower() in RESERVED_NAMES:
        raise ImportProblem(f"{name!r} cannot be a dataset's name: data/{name} would make data/ itself look "
                            "like a dataset (a FER2013 split folder); choose another name")
    target = data_dir / name
    if target.exists() or target.is_symlink():
        raise ImportProblem(f"data/{name} exists already: choose another name or delete it first")
    return target


def default_name(filename: str) -> str:
    """A dataset name from an upload's file name: ``fer2013_images.tar.gz`` -> ``fer2013_images``."""
    stem = Path(filename).name
    for suffix in (".tar.gz", ".csv.gz", ".tgz", ".tar", ".zip", ".csv", ".gz"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")[:64]
    return stem or "fer2013"


def detect_kind(path: Path) -> str:
    """``zip``, ``tar`` (plain or gzipped) or ``csv`` (plain or gzipped), from the file's bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        with gzip.open(path, "rb") as handle:
            try:
                start = handle.read(512)
            except (OSError, EOFError):
                raise ImportProblem("the file looks gzipped but could not be decompressed") from None
        return "tar" if _is_tar_header(start) else "csv"
    with open(path, "rb") as handle:
        start = handle.read(512)
    return "tar" if _is_tar_header(start) else "csv"


def _is_tar_header(block: bytes) -> bool:
    return len(block) == 512 and block[257:262] == b"ustar"


def safe_member_path(name: str) -> PurePosixPath | None:
    """The member's path inside the archive, None for one to skip silently (macOS resource forks,
    hidden files), or an ImportProblem when it would land outside the target folder."""
    if "\0" in name or "\\" in name:
        raise ImportProblem("the archive has a member name with a backslash or NUL character; "
                            "re-create it with zip or tar on the folders train/ and test/")
    try:
        name.encode("utf-8")  # tarfile keeps undecodable bytes as surrogates
    except UnicodeEncodeError:
        raise ImportProblem("the archive has a member name that is not valid UTF-8 (made on a system "
                            "with another file name encoding); rename the files, or re-create the "
                            "archive on a system that uses UTF-8") from None
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise ImportProblem("the archive has a member name with a control character (a line break, "
                            "a tab); rename the files")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ImportProblem("the archive has a member whose path leaves the archive (an absolute path "
                            "or '..'); it is refused")
    parts = [part for part in path.parts if part not in ("", ".")]
    if not parts or any(part.startswith(".") or part in SKIPPED_PARTS for part in parts):
        return None
    return PurePosixPath(*parts)


def _too_many_members() -> ImportProblem:
    return ImportProblem(f"the archive has more than {MAX_MEMBERS:,} members; FER2013 has 35,887 images")


class _Budget:
    """Counts members and unpacked bytes against the caps, whatever the archive's headers say."""

    def __init__(self) -> None:
        self.members = 0
        self.bytes = 0

    def member(self) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise _too_many_members()

    def add(self, size: int) -> None:
        self.bytes += size
        if self.bytes > MAX_UNPACKED_BYTES:
            raise ImportProblem(f"the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20:,} MB "
                                "(FER2013's images take 58 MB): refused as a possible archive bomb")


def member_limit(name: str) -> int:
    """The largest size accepted for one archive member: an image, or a whole fer2013.csv."""
    return MAX_UNPACKED_BYTES if name.lower().endswith(".csv") else MAX_MEMBER_BYTES


def _too_large(name: str) -> ImportProblem:
    return ImportProblem(f"an archive member is larger than {member_limit(name) >> 20:,} MB "
                         "(FER2013's images are about 2 KB); refused as a possible archive bomb")


def _copy_capped(source: IO[bytes], target: Path, budget: _Budget, declared: int) -> None:
    """Write ``source`` to ``target`` counting every byte; refuse beyond the caps or the declared size."""
    written = 0
    with open(target, "xb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            budget.add(len(chunk))
            if written > member_limit(target.name) or written > declared:
                raise _too_large(target.name)
            out.write(chunk)


def _place(root: Path, member: PurePosixPath) -> Path:
    target = root.joinpath(*member.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


class _CappedTarInfo(tarfile.TarInfo):
    """A tar header whose GNU long name or PAX extension may not claim more than
    ``MAX_TAR_HEADER_BYTES``: tarfile reads such a header's data into memory whole (a 3.7 MB tar can
    claim 3 GiB), so the claim is refused before anything is read."""

    def _proc_member(self, tarfile_):
        extended = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                    tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        if self.type in extended and self.size > MAX_TAR_HEADER_BYTES:
            raise ImportProblem(f"a tar header claims {self.size:,} bytes of name or extended data "
                                f"(more than {MAX_TAR_HEADER_BYTES:,}): refused as a possible archive bomb")
        return super()._proc_member(tarfile_)


def _unpack_tar(archive: Path, root: Path, progress: Progress) -> None:
    budget = _Budget()
    size = max(archive.stat().st_size, 1)
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*", tarinfo=_CappedTarInfo) as tar:
            for member in tar:
                budget.member()
                if not (member.isreg() or member.isdir()) or member.issparse():
                    raise ImportProblem("the archive holds links, devices or other special files; "
                                        "only plain files and folders are accepted")
                if member.size > member_limit(member.name):
                    raise _too_large(member.name)
                path = safe_member_path(member.name)
                source = tar.extractfile(member) if path is not None and member.isreg() else None
                if source is not None:
                    _copy_capped(source, _place(root, path), budget, member.size)
                elif member.isreg():
                    # Skipped (hidden, __MACOSX): its bytes are still inflated to reach the next
                    # member, so they count, by the header's size, before that work is done.
                    budget.add(member.size)
                if budget.members % 500 == 0:
                    progress("unpacking", raw.tell() / size)
    except (tarfile.TarError, EOFError, zlib.error):
        raise ImportProblem("the file is not a complete tar or tar.gz archive (was the upload "
                            "complete?)") from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise ImportProblem("the archive holds the same file twice") from None


def _zip_mode_ok(info: zipfile.ZipInfo) -> bool:
    kind = stat.S_IFMT(info.external_attr >> 16)
    return kind in (0, stat.S_IFREG, stat.S_IFDIR)


def _zip_directory_entries(archive: Path) -> int | None:
    """The entry count the zip's end record declares (read before ``zipfile`` parses a central
    directory that may hold millions of entries); None when it cannot be read."""
    try:
        with open(archive, "rb") as handle:
            record = zipfile._EndRecData(handle)  # noqa: SLF001 - the stdlib's own reader of the record
    except (OSError, struct.error):
        return None
    return None if not record else int(record[zipfile._ECD_ENTRIES_TOTAL])  # noqa: SLF001


def _unpack_zip(archive: Path, root: Path, progress: Progress) -> None:
    budget = _Budget()
    if (entries := _zip_directory_entries(archive)) is not None and entries > MAX_MEMBERS:
        raise _too_many_members()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ImportProblem("the file is not a readable zip archive") from None
    except UnicodeDecodeError:  # a name flagged as UTF-8 that is not
        raise ImportProblem("the archive has a member name marked as UTF-8 that is not valid UTF-8; "
                            "rename the files or re-create the archive") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _too_many_members()
        if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
            raise ImportProblem(f"the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20:,} MB "
                                "(FER2013's images take 58 MB): refused as a possible archive bomb")
        for info in infos:
            if not _zip_mode_ok(info):
                raise ImportProblem("the archive holds links, devices or other special files; "
                                    "only plain files and folders are accepted")
            if info.flag_bits & 0x1:
                raise ImportProblem("the archive is password-protected; upload an unencrypted one")
            if info.file_size > member_limit(info.filename):
                raise _too_large(info.filename)
            safe_member_path(info.filename)  # every name is checked before anything is written
        for i, info in enumerate(infos):
            budget.member()
            path = safe_member_path(info.filename)
            if path is None or info.is_dir():
                continue
            try:
                with zf.open(info) as source:
                    _copy_capped(source, _place(root, path), budget, info.file_size)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError):
                raise ImportProblem("the archive is damaged or uses an unsupported compression") from None
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise ImportProblem("the archive holds the same file twice") from None
            if i % 500 == 0:
                progress("unpacking", i / len(infos))


def _find_root(unpacked: Path) -> Path:
    """The folder holding ``train/`` and ``test/`` (the archive's top, or its one top folder), or the
    archived fer2013.csv (at the top or in one folder)."""
    if (unpacked / "train").is_dir():
        return unpacked
    tops = [p for p in unpacked.iterdir() if p.is_dir()]
    if len(tops) == 1 and (tops[0] / "train").is_dir():
        return tops[0]
    for name in ARCHIVED_CSV_NAMES:
        for folder in (unpacked, *tops):
            if (folder / name).is_file():
                return folder / name
    raise ImportProblem("the archive has no train/ folder: expected train/<emotion>/ and "
                        f"test/<emotion>/ (emotions: {', '.join(CLASSES)}) at its top or in one folder, "
                        "or a fer2013.csv")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _spot_check(path: Path, root: Path, decode: bool = True) -> None:
    """Refuse an image whose header says it is larger than ``MAX_IMAGE_SIDE`` (every image is
    checked so, from its header alone), or, with ``decode``, one that cannot be decoded."""
    relative = path.relative_to(root)
    try:
        with Image.open(path) as image:
            size = image.size
            if decode and max(size) <= MAX_IMAGE_SIDE:
                image.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        raise ImportProblem(f"{relative} is not an image that can be decoded") from None
    if max(size) > MAX_IMAGE_SIDE:
        raise ImportProblem(f"{relative} is {size[0]}x{size[1]} pixels; FER2013 faces are 48x48")


def check_image_folders(root: Path) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Class counts per split folder and warnings; an ImportProblem unless ``root`` is FER2013-shaped.

    Every class folder must be named after an emotion; every image's size is read from its header
    (none may be larger than ``MAX_IMAGE_SIDE``), and a few seeded images per class are decoded.
    """
    counts: dict[str, dict[str, int]] = {}
    warnings: list[str] = []
    rng = np.random.default_rng(SPOT_CHECK_SEED)
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise ImportProblem(f"the archive has no {split}/ folder next to train/: expected "
                                f"{split}/<emotion>/ folders")
        stray = [p.name for p in folder.iterdir() if not p.is_dir()]
        if stray:
            warnings.append(f"{split}/ holds {len(stray)} file(s) outside the emotion folders; "
                            "they are ignored")
        counts[split] = {}
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if class_dir.name.lower() not in CLASSES:
                raise ImportProblem(f"{split}/{class_dir.name} is not an emotion folder: folders under "
                                    f"{split}/ must be named {', '.join(CLASSES)}")
            images = _images_in(class_dir)
            decoded = set(rng.permutation(len(images))[:SPOT_CHECKS_PER_CLASS].tolist())
            for index, image in enumerate(images):
                _spot_check(image, root, decode=index in decoded)
            counts[split][class_dir.name.lower()] = len(images)
        if not sum(counts[split].values()):
            raise ImportProblem(f"{split}/ has no images in its emotion folders ({', '.join(CLASSES)})")
        missing = [name for name in CLASSES if not counts[split].get(name)]
        if missing:
            warnings.append(f"{split}/ has no images of: {', '.join(missing)}")
    return counts, warnings


class _CountingReader(io.RawIOBase):
    """Reads ``source`` and counts the bytes, refusing more than ``limit`` (a gzip bomb)."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self.source, self.limit, self.count = source, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.source.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise ImportProblem(f"the CSV is larger than {self.limit >> 20:,} MB uncompressed (fer2013.csv "
                                "has 301 MB): refused as a possible gzip bomb")
        buffer[: len(data)] = data
        return len(data)


def _capped_lines(text: IO[str]) -> Iterator[str]:
    """The lines of ``text``, none read whole beyond ``MAX_CSV_LINE`` characters (one line of a
    gzipped CSV could otherwise inflate to gigabytes in memory)."""
    while line := text.readline(MAX_CSV_LINE + 1):
        if len(line) > MAX_CSV_LINE:
            raise ImportProblem(f"the CSV has a line longer than {MAX_CSV_LINE:,} characters (a "
                                "fer2013.csv line has about 8,000): not a fer2013.csv")
        yield line


def _csv_rows(raw: IO[bytes]) -> Iterator[list[str]]:
    """The CSV's rows (a byte-order mark and blank lines, as spreadsheets write them, are fine)."""
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    source = gzip.GzipFile(fileobj=raw) if gzipped else raw
    text = io.TextIOWrapper(io.BufferedReader(_CountingReader(source, MAX_UNPACKED_BYTES)),
                            encoding="utf-8-sig", newline="")
    csv.field_size_limit(1 << 16)  # one row's pixels take about 8 KB
    yield from (row for row in csv.reader(_capped_lines(text)) if row and any(field.strip() for field in row))


def _parse_pixels(text: str, row: int) -> np.ndarray:
    try:  # numpy parses the numbers in C: 15 times faster than splitting the text in Python
        pixels = np.fromstring(text, dtype=np.int64, sep=" ")  # 2**32 must not wrap to 0
    except ValueError:
        raise ImportProblem(f"CSV row {row} has a pixel value that is not a whole number") from None
    if pixels.size != IMAGE_SIZE * IMAGE_SIZE:
        raise ImportProblem(f"CSV row {row} has {pixels.size} pixel values; each face needs "
                            f"{IMAGE_SIZE * IMAGE_SIZE} (48x48) separated by spaces")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ImportProblem(f"CSV row {row} has a pixel value outside 0..255")
    return pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _convert_csv(path: Path, root: Path, progress: Progress) -> dict[str, dict[str, int]]:
    """Write every CSV row as ``root/<split>/<emotion>/<Usage>_<row>.png``; class counts per split."""
    size = max(path.stat().st_size, 1)
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    usages: set[str] = set()
    for split in counts:
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
    with open(path, "rb") as raw:
        rows = _csv_rows(raw)
        try:
            header = [column.strip() for column in next(rows)]
        except (StopIteration, UnicodeDecodeError, csv.Error, OSError, EOFError):
            raise ImportProblem("the file is neither a zip or tar archive nor a fer2013.csv") from None
        missing = [name for name in CSV_COLUMNS if name not in header]
        if missing:
            raise ImportProblem(f"the CSV has no {', '.join(missing)} column: a fer2013.csv has the columns "
                                "emotion, pixels and Usage")
        emotion, pixels, usage = (header.index(name) for name in CSV_COLUMNS)
        row = 0
        try:
            for row, fields in enumerate(rows, start=1):
                if row > MAX_CSV_ROWS:
                    raise ImportProblem(f"the CSV has more than {MAX_CSV_ROWS:,} rows; "
                                        "fer2013.csv has 35,887")
                if len(fields) != len(header):
                    raise ImportProblem(f"CSV row {row} has {len(fields)} fields; the header has "
                                        f"{len(header)}")
                label = fields[emotion].strip()
                if label not in {str(i) for i in range(len(CLASSES))}:
                    raise ImportProblem(f"CSV row {row} has emotion {label[:10]!r}; expected 0..6 "
                                        f"({', '.join(f'{i}={n}' for i, n in enumerate(CLASSES))})")
                kind = fields[usage].strip()
                if kind not in USAGE_PREFIX:
                    raise ImportProblem(f"CSV row {row} has Usage {kind[:20]!r}; expected Training, "
                                        "PublicTest or PrivateTest")
                image = _parse_pixels(fields[pixels], row)
                split, prefix = USAGE_PREFIX[kind]
                name = CLASSES[int(label)]
                Image.fromarray(image, mode="L").save(root / split / name / f"{prefix}{row - 1:05d}.png",
                                                      compress_level=1)
                counts[split][name] = counts[split].get(name, 0) + 1
                usages.add(kind)
                if row % 1000 == 0:
                    progress("converting", raw.tell() / size)
        except (UnicodeDecodeError, csv.Error, EOFError, zlib.error):
            raise ImportProblem(f"the CSV cannot be read after row {row} (not UTF-8 text, or a damaged "
                                "gzip)") from None
        except gzip.BadGzipFile:
            raise ImportProblem("the CSV's gzip compression is damaged") from None
    if row == 0:
        raise ImportProblem("the CSV has a header but no rows")
    if "Training" not in usages or not usages & {"PublicTest", "PrivateTest"}:
        raise ImportProblem("the CSV needs Training rows and PublicTest or PrivateTest rows in its "
                            "Usage column")
    return counts


def import_dataset(source: Path, name: str, data_dir: Path, progress: Progress = _no_progress,
                   work_dir: Path | None = None) -> ImportResult:
    """Check ``source`` and put it into ``data_dir/<name>/`` in one rename; an ImportProblem if refused.

    ``work_dir`` (default: a new folder under ``data_dir/.imports/``) must be on the same file
    system as ``data_dir``; what is unpacked there is removed whatever happens.
    """
    started = time.monotonic()
    source = Path(source)
    target = check_name(name, data_dir)
    if not source.is_file():
        raise ImportProblem(f"{source.name} is not a file")
    own_work = work_dir is None
    if work_dir is None:
        work_dir = data_dir / IMPORTS / secrets.token_hex(6)
    unpacked = work_dir / UNPACKED
    unpacked.mkdir(parents=True)
    try:
        kind = detect_kind(source)
        warnings: list[str] = []
        if kind == "csv":
            counts = _convert_csv(source, unpacked, progress)
            root = unpacked
        else:
            (_unpack_zip if kind == "zip" else _unpack_tar)(source, unpacked, progress)
            progress("checking", 1.0)
            root = _find_root(unpacked)
            if root.is_file():  # the challenge's fer2013.tar.gz: convert the CSV it holds
                kind, converted = "csv", work_dir / CONVERTED
                counts = _convert_csv(root, converted, progress)
                root = converted
            else:
                counts, warnings = check_image_folders(root)
        check_name(name, data_dir)  # another import may have taken the name meanwhile
        try:
            root.rename(target)
        except OSError as exc:
            raise ImportProblem(f"could not move the dataset into data/{name}: {exc.strerror}") from None
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
        shutil.rmtree(work_dir / CONVERTED, ignore_errors=True)
        if own_work:
            shutil.rmtree(work_dir, ignore_errors=True)
    images = sum(sum(c.values()) for c in counts.values())
    return ImportResult(target, "csv" if kind == "csv" else "archive", images, counts, warnings,
                        time.monotonic() - started)


# ---- background jobs for the dashboard ---------------------------------------------------------

def imports_dir(data_dir: Path) -> Path:
    return data_dir / IMPORTS


def start_import(upload: IO[bytes], filename: str, name: str, data_dir: Path) -> Path:
    """Save an uploaded file into a new job folder and start the import in its own process.

    Returns the job folder. The name is checked first, so a taken name is refused at once.
    """
    check_name(name, data_dir)
    if any(status.get("name") == name.strip() and status.get("state") in ("queued", "running")
           for _, status in list_imports(data_dir)):
        raise ImportProblem(f"an import into data/{name.strip()} is running already")
    job = imports_dir(data_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    job.mkdir(parents=True)
    source = job / "upload"
    try:
        with open(source, "xb") as out:
            shutil.copyfileobj(upload, out, CHUNK)
        write_json_atomic(job / STATUS_FILE, {"state": "queued", "name": name.strip(), "file": filename,
                                              "phase": "starting", "fraction": 0.0, "started": time.time()})
    except OSError:
        # A full disk: no half-saved upload is left behind, and no import without a status.
        shutil.rmtree(job, ignore_errors=True)
        raise
    try:
        with open(job / "log.txt", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "fer.dataset_import", str(source), "--name", name.strip(),
                 "--data-dir", str(data_dir), "--job", str(job)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent)
    except OSError:
        shutil.rmtree(job, ignore_errors=True)  # the saved upload may be hundreds of MB
        raise
    _update(job, pid=process.pid)
    return job


def _update(job: Path, **values) -> None:
    status = read_status(job)
    status.update(values)
    write_json_atomic(job / STATUS_FILE, status)


def read_status(job: Path) -> dict:
    try:
        value = json.loads((job / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def list_imports(data_dir: Path) -> list[tuple[Path, dict]]:
    """(job folder, status) of every import, newest first; a job whose process died is ``failed``."""
    folder = imports_dir(data_dir)
    jobs = sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True) if folder.is_dir() else []
    found = []
    for job in jobs:
        status = read_status(job)
        try:
            stale = time.time() - float(status.get("started") or 0) > STARTUP_GRACE_S
        except (TypeError, ValueError):
            stale = True
        if status.get("state") in ("queued", "running") and stale and not pid_running(status.get("pid")):
            status = {**status, "state": "failed", "error": "the import process ended unexpectedly"}
        found.append((job, status))
    return found


def dismiss_import(job: Path) -> None:
    """Forget a finished import (its folder holds no dataset any more)."""
    shutil.rmtree(job, ignore_errors=True)


def _run_job(source: Path, name: str, data_dir: Path, job: Path) -> int:
    last = [0.0]

    def progress(phase: str, fraction: float) -> None:
        if time.monotonic() - last[0] > 0.3:
            last[0] = time.monotonic()
            _update(job, state="running", phase=phase, fraction=round(min(max(fraction, 0.0), 1.0), 3))

    _update(job, state="running", phase="reading", pid=os.getpid())
    try:
        result = import_dataset(source, name, data_dir, progress, work_dir=job)
    except ImportProblem as exc:
        _update(job, state="failed", error=str(exc), finished=time.time())
        return 2
    except OSError as exc:
        _update(job, state="failed", error=f"the import failed: {exc.strerror or exc}", finished=time.time())
        return 1
    finally:
        (job / "upload").unlink(missing_ok=True)
    _update(job, state="done", phase="done", fraction=1.0, finished=time.time(), target=str(result.target),
            kind=result.kind, images=result.images, counts=result.counts, warnings=result.warnings,
            seconds=round(result.seconds, 2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fer.dataset_import",
        description="Check a FER2013 zip/tar(.gz) of train/ and test/, or a fer2013.csv(.gz), and put "
                    "it into data/<name>/ as image folders.")
    parser.add_argument("source", type=Path, help="the archive or CSV file")
    parser.add_argument("--name", required=True, help="the new dataset's folder name under data/")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: data/ of the project")
    parser.add_argument("--job", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from fer.data import DATA_DIR

    data_dir = args.data_dir or DATA_DIR
    if args.job:
        return _run_job(args.source, args.name, data_dir, args.job)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = import_dataset(args.source, args.name, data_dir)
    except ImportProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"imported {result.images:,} images into {result.target} in {result.seconds:.1f} s")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
