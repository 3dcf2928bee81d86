"""The app reads datasets only inside data/, FER_DATA and FER_DATA_ROOTS, and never shows file contents.

The Train page's "Check dataset" and "Launch training" used to read any path on the server and echo
what they found (a CSV's header line, whether a path exists). The command line stays unrestricted.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

import pytest
from app_driver import experiments, no_exception, open_page
from synthetic import write_fer_csv, write_image_folder

import fer.data
import fer.workers
from fer import IMAGE_SIZE
from fer.data import DataError, allowed_data_roots, check_data_allowed, load_dataset, summarize_dataset
from fer.runs import experiments_dir

SECRETS = ("admin_user", "password_hash", "api_key", "sk-live-0123", "hunter2")
SECRET_CSV = "admin_user,password_hash,api_key\nroot,hunter2,sk-live-0123\n"


class Roots:
    """A test's own data/ (fer.data.DATA_DIR), one FER_DATA_ROOTS folder and a folder outside both."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.allowed = tmp_path / "allowed"
        self.outside = tmp_path / "outside"
        for folder in (self.data, self.allowed, self.outside):
            folder.mkdir()


@pytest.fixture
def roots(tmp_path, monkeypatch) -> Roots:
    """Roots set for this test alone (replacing conftest's FER_DATA_ROOTS = all tmp folders)."""
    made = Roots(tmp_path)
    monkeypatch.setattr(fer.data, "DATA_DIR", made.data)
    monkeypatch.delenv("FER_DATA", raising=False)
    monkeypatch.setenv("FER_DATA_ROOTS", str(made.allowed))
    return made


@pytest.fixture
def launched(monkeypatch) -> list[Path]:
    """Launch records the run folder instead of starting a worker, so nothing trains."""
    started: list[Path] = []
    monkeypatch.setattr(fer.workers, "launch", started.append)
    return started


def page_text(node) -> str:
    """Everything the page sends to the browser (every element's protobuf), as one string."""
    parts = [str(getattr(node, "proto", "") or "")]
    parts += [page_text(child) for child in getattr(node, "children", {}).values()]
    return "\n".join(parts)


def check_dataset(path: Path | str):
    """The Train page after typing ``path`` and clicking "Check dataset"."""
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(path)).run()
    next(b for b in app.button if b.label == "Check dataset").click().run()
    no_exception(app)
    return app


def launch(path: Path | str):
    """The Train page after typing ``path`` and clicking "Launch training"."""
    app = open_page("train")
    app.text_input(key="train.data").set_value(str(path)).run()
    next(b for b in app.button if b.label == "Launch training").click().run()
    no_exception(app)
    return app


def plain(text: str) -> str:
    """Markdown's text as a reader sees it: the pages escape file names and paths they show."""
    return re.sub(r"\\(.)", r"\1", text)


def refusal(path: Path | str) -> str:
    """The DataError check_data_allowed raises for ``path``, with the path itself blanked out."""
    with pytest.raises(DataError) as info:
        check_data_allowed(path)
    return str(info.value).replace(repr(str(path)), "<path>")


# ---- the Train page ---------------------------------------------------------------------------

def test_check_dataset_refuses_a_csv_outside_the_roots_and_shows_none_of_it(roots):
    secret = roots.outside / "creds.csv"
    secret.write_text(SECRET_CSV)
    app = check_dataset(secret)
    (error,) = app.error
    assert "FER_DATA_ROOTS" in plain(error.value) and "outside the allowed folders" in plain(error.value)
    assert not app.dataframe
    shown = plain(page_text(app._tree))
    assert str(secret) in shown  # the page is really in the text searched below
    for word in SECRETS:
        assert word not in shown, word


def test_check_dataset_reads_a_csv_inside_fer_data_roots(roots):
    path = write_fer_csv(roots.allowed / "fer2013.csv")
    app = check_dataset(path)
    assert not app.error
    assert list(app.dataframe[0].value.loc["total"]) == [21, 7, 7]


def test_a_malformed_csv_inside_the_roots_is_an_error_without_its_header(roots):
    secret = roots.allowed / "creds.csv"
    secret.write_text(SECRET_CSV)
    app = check_dataset(secret)
    (error,) = app.error
    message = plain(error.value)
    assert "emotion, pixels and Usage" in message and "outside the allowed" not in message
    shown = plain(page_text(app._tree))
    for word in SECRETS:
        assert word not in shown, word


def test_an_outside_path_gets_the_same_message_whether_it_exists_or_not(roots):
    (roots.outside / "creds.csv").write_text(SECRET_CSV)
    paths = [roots.outside / "creds.csv", roots.outside / "missing.csv", roots.outside,
             roots.outside.parent / "no-such-folder" / "x.csv", Path("/etc/passwd"), Path("/no/such/file")]
    messages = {refusal(path) for path in paths}
    assert len(messages) == 1
    assert "add the folder to FER_DATA_ROOTS" in messages.pop()
    shown = {plain(check_dataset(path).error[0].value).replace(str(path), "<path>") for path in paths[:2]}
    assert len(shown) == 1 and "does not exist" not in shown.pop()


@pytest.mark.parametrize("root", ["data", "allowed"])
def test_a_symlink_inside_a_root_pointing_outside_is_refused(roots, root):
    """data/link -> outside is outside: symlinks (and ``..``) are resolved before the check."""
    write_image_folder(roots.outside / "fer", train=1, test=1)
    (roots.outside / "creds.csv").write_text(SECRET_CSV)
    inside = getattr(roots, root)
    (inside / "link").symlink_to(roots.outside, target_is_directory=True)
    (inside / "creds.csv").symlink_to(roots.outside / "creds.csv")
    for path in (inside / "link" / "fer", inside / "link", inside / "creds.csv",
                 inside / ".." / "outside" / "creds.csv"):
        assert "FER_DATA_ROOTS" in refusal(path), path
    app = check_dataset(inside / "creds.csv")
    assert "FER_DATA_ROOTS" in plain(app.error[0].value)
    for word in SECRETS:
        assert word not in page_text(app._tree), word


def test_a_symlink_inside_a_root_pointing_inside_one_is_read(roots):
    folder = write_image_folder(roots.allowed / "fer", train=1, test=1)
    (roots.data / "fer").symlink_to(folder, target_is_directory=True)
    assert check_data_allowed(roots.data / "fer") == folder.resolve()
    assert not check_dataset(roots.data / "fer").error


def test_launch_with_an_outside_dataset_is_refused_and_creates_no_run(roots, launched):
    outside = write_image_folder(roots.outside / "fer", train=1, test=1)
    app = launch(outside)
    assert "Cannot launch" in plain(app.error[0].value) and "FER_DATA_ROOTS" in plain(app.error[0].value)
    assert launched == [] and experiments(experiments_dir()) == []


def test_launch_with_a_dataset_inside_the_roots_creates_the_run(roots, launched):
    inside = write_image_folder(roots.allowed / "fer", train=1, test=1)
    app = launch(inside)
    assert not app.error
    assert len(launched) == 1 and experiments(experiments_dir()) == [launched[0].name]


# ---- the roots --------------------------------------------------------------------------------

def test_roots_are_data_fer_data_and_every_fer_data_roots_folder(roots, monkeypatch, tmp_path):
    other = tmp_path / "other"
    monkeypatch.setenv("FER_DATA_ROOTS", os.pathsep.join([str(roots.allowed), "", f" {other} "]))
    monkeypatch.setenv("FER_DATA", str(tmp_path / "mine.csv"))
    assert allowed_data_roots() == [roots.data.resolve(), (tmp_path / "mine.csv").resolve(),
                                    roots.allowed.resolve(), other.resolve()]
    assert check_data_allowed(other / "deep" / "fer2013.csv") == (other / "deep" / "fer2013.csv").resolve()
    assert check_data_allowed(tmp_path / "mine.csv") == (tmp_path / "mine.csv").resolve()
    assert check_data_allowed("") == (tmp_path / "mine.csv").resolve()  # empty = the default, FER_DATA
    for path in (tmp_path / "mine.csv.bak", tmp_path / "mine.csv" / ".." / "outside", tmp_path):
        assert "FER_DATA_ROOTS" in refusal(path), path


def test_without_fer_data_roots_only_data_and_fer_data_are_allowed(roots, monkeypatch):
    monkeypatch.delenv("FER_DATA_ROOTS")
    assert allowed_data_roots() == [roots.data.resolve()]
    assert check_data_allowed(roots.data / "fer2013.csv") == (roots.data / "fer2013.csv").resolve()
    assert "FER_DATA_ROOTS" in refusal(roots.allowed / "fer2013.csv")
    assert "FER_DATA_ROOTS" in refusal("x\0y")


def test_the_command_line_functions_still_read_any_path(roots):
    """fer.train / fer.evaluate (someone with a shell) call load_dataset directly: no roots there."""
    outside = write_image_folder(roots.outside / "fer", train=1, test=1)
    assert len(load_dataset(outside).train) == 7
    assert summarize_dataset(write_fer_csv(roots.outside / "fer2013.csv")).counts["test"]["happy"] == 1


# ---- messages never quote the file ------------------------------------------------------------

def fer_csv_with_row(tmp_path: Path, row: str) -> Path:
    path = write_fer_csv(tmp_path / "fer2013.csv")
    with path.open("a") as handle:
        handle.write(row.format(pixels=" ".join(["0"] * IMAGE_SIZE * IMAGE_SIZE)) + "\n")
    return path


@pytest.mark.parametrize("row", [
    "1,{pixels},hunter2",                  # an unknown Usage value
    "hunter2,{pixels},Training",           # a non-numeric emotion
    "1,{pixels} hunter2,Training",         # pixels with a word among them (2305 values)
    "1,hunter2 {pixels},Training",         # a word among pixels: one too many values
    '1,"{pixels}",Training,hunter2,extra',  # too many fields
])
def test_csv_errors_do_not_quote_the_bad_line(tmp_path, row):
    path = fer_csv_with_row(tmp_path, row)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert "hunter2" not in str(info.value) and str(path) in str(info.value)


def test_a_word_in_place_of_a_pixel_is_reported_without_quoting_it(tmp_path):
    pixels = " ".join(["0"] * (IMAGE_SIZE * IMAGE_SIZE - 1) + ["hunter2"])
    path = fer_csv_with_row(tmp_path, f"1,{pixels},Training")
    with pytest.raises(DataError, match="non-numeric") as info:
        load_dataset(path)
    assert "hunter2" not in str(info.value)


def test_a_csv_missing_columns_names_the_needed_ones_only(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,admin_user,password_hash\n1,root,x\n")
    with pytest.raises(DataError, match="no pixels, Usage column") as info:
        load_dataset(path)
    assert "admin_user" not in str(info.value) and "password_hash" not in str(info.value)


def test_an_archive_error_does_not_quote_member_names(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("owned")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="../../hunter2.txt")
    with pytest.raises(DataError, match="could not unpack") as info:
        load_dataset(archive)
    assert "hunter2" not in str(info.value) and str(archive) in str(info.value)
