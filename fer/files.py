"""Small file helpers: atomic writes so a reader never sees half a file, and capped reads that
never block or exhaust memory, whatever a (damaged or hostile) folder holds.

A reader here opens only regular files: a named pipe would block the reader for good and a link
to ``/dev/zero`` would read until memory runs out. Every read has a size limit.
"""

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The largest JSON file of a run that is read (status, progress, config, metrics: a few KB each).
JSON_MAX_BYTES = 1 << 20


class FileProblem(OSError):
    """A file that is not read: not a regular file, or larger than the limit for its kind."""


def _process_umask() -> int:
    """The process' umask, read once at import (``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it). The file gets the
    mode a plain ``open`` would give it (0644 under the usual umask), not mkstemp's 0600, or an
    existing file's mode."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o666 & ~_UMASK
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


@contextlib.contextmanager
def open_regular(path: Path) -> Iterator[tuple[int, os.stat_result]]:
    """An open file descriptor of ``path`` and its stat, if it is a regular file.

    Opened without blocking (a named pipe opens at once, and is then refused), so a reader is
    never stuck. Raises FileNotFoundError, FileProblem, or another OSError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(f"{Path(path).name} is not a regular file")
        yield fd, info
    finally:
        os.close(fd)


def is_regular_file(path: Path) -> bool:
    """True for a regular file (a link to one included), without blocking on special files."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The whole of a regular file of at most ``max_bytes`` (FileProblem if larger)."""
    with open_regular(path) as (fd, info):
        if info.st_size > max_bytes:
            raise FileProblem(f"{Path(path).name} is larger than {max_bytes:,} bytes")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    content = b"".join(chunks)
    if len(content) > max_bytes:  # it grew while being read
        raise FileProblem(f"{Path(path).name} is larger than {max_bytes:,} bytes")
    return content


def read_tail(path: Path, max_bytes: int) -> bytes:
    """The last ``max_bytes`` of a regular file (a log), however large the file is."""
    with open_regular(path) as (fd, info):
        start = max(0, info.st_size - max_bytes)
        return os.pread(fd, max_bytes, start)


def load_json(path: Path, max_bytes: int = JSON_MAX_BYTES) -> Any:
    """The parsed JSON file. Raises FileNotFoundError when it is missing and FileProblem (with a
    reason that never quotes the file's content) when it cannot be used."""
    try:
        data = read_bytes(path, max_bytes)
    except (FileNotFoundError, FileProblem):
        raise
    except OSError as exc:
        raise FileProblem(f"{Path(path).name} cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FileProblem(f"{Path(path).name} is not valid JSON") from None


def read_json(path: Path, max_bytes: int = JSON_MAX_BYTES) -> Any | None:
    """The parsed JSON file, or None when it is missing, unreadable, too large or not a file."""
    try:
        return load_json(path, max_bytes)
    except OSError:
        return None
