"""The Dataset page: class distribution per split, sample faces per class, and uploading a dataset
through the browser's file uploader into data/<name>/ (a background import with progress)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from app_driver import array, figures, no_exception, open_page, texts
from helpers import wait_until
from synthetic import label_of, write_archive, write_fer_csv, write_image_folder
from test_access import force_click, open_as

import fer.data
import fer.dataset_import
from fer import CLASSES, PROJECT_ROOT
from fer.data import SPLIT_TITLES, load_dataset, resolve_location, sample_faces

# The published FER2013 class counts (canonical order), as the README's Data section lists them.
FER2013_COUNTS = {
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "val": [467, 56, 496, 895, 653, 415, 607],
    "test": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """The project's data/ folder, moved to a tmp folder; FER_DATA unset."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setattr(fer.data, "DATA_DIR", folder)
    monkeypatch.delenv("FER_DATA", raising=False)
    return folder


def bars(app) -> dict[str, list[int]]:
    """Split title -> images per class, from the distribution chart."""
    (figure,) = figures(app)
    return {trace.name: [int(v) for v in array(trace.y)] for trace in figure.data}


def wait_for_imports(data_dir: Path) -> list[dict]:
    def finished():
        jobs = fer.dataset_import.list_imports(data_dir)
        return jobs and all(s.get("state") in ("done", "failed") for _, s in jobs) and jobs
    return [status for _, status in wait_until(finished, timeout=90, what="the import to finish")]


def test_the_page_shows_counts_per_split_and_sample_faces_of_every_class(data_dir):
    write_image_folder(data_dir / "tiny", train={name: 2 + i for i, name in enumerate(CLASSES)}, test=1)
    app = open_page("dataset")
    no_exception(app)
    assert app.title[0].value == "Dataset"
    assert app.selectbox(key="dataset.chosen").value == data_dir / "tiny"
    assert bars(app) == {SPLIT_TITLES["train"]: [2, 3, 4, 5, 6, 7, 8], SPLIT_TITLES["val"]: [1] * 7,
                         SPLIT_TITLES["test"]: [1] * 7}
    images = app.get("image")
    assert len(images) == len(CLASSES)  # one row of faces per class
    assert "**happy** · 5 in this split" in texts(app.markdown)
    captions = [img.caption for image in images for img in image.proto.imgs]
    assert len(captions) == 35 and all(c.startswith("Training_") for c in captions)

    app.segmented_control(key="dataset.split").set_value("test").run()
    no_exception(app)
    captions = [img.caption for image in app.get("image") for img in image.proto.imgs]
    assert len(captions) == 7 and all(c.startswith("PrivateTest_") for c in captions)
    assert "**happy** · 1 in this split" in texts(app.markdown)


def test_shares_make_splits_of_different_sizes_comparable(data_dir):
    write_image_folder(data_dir / "tiny", train=4, test=1)
    app = open_page("dataset")
    app.toggle(key="dataset.share").set_value(True).run()
    no_exception(app)
    for values in bars(app).values():
        assert values == [14] * 7  # 1/7 of every split, rounded down by int()


def test_the_sample_grid_follows_the_split_and_seed(data_dir):
    write_image_folder(data_dir / "tiny", train=12, test=1)
    app = open_page("dataset")
    first = [list(image.proto.imgs) for image in app.get("image")]
    app.number_input(key="dataset.seed").set_value(5).run()
    no_exception(app)
    captions = [[img.caption for img in image.proto.imgs] for image in app.get("image")]
    assert [[img.caption for img in row] for row in first] != captions  # other faces
    assert all(len(row) == 8 and all(c.startswith("Training_") for c in row) for row in captions)


def test_a_dataset_can_be_chosen_among_data_and_fer_data(data_dir, tmp_path, monkeypatch):
    write_image_folder(data_dir / "a", train=2, test=1)
    outside = write_fer_csv(tmp_path / "elsewhere" / "fer2013.csv",
                            {"Training": 2, "PublicTest": 1, "PrivateTest": 1})
    monkeypatch.setenv("FER_DATA", str(outside))
    app = open_page("dataset")
    chosen = app.selectbox(key="dataset.chosen")
    assert chosen.options == ["FER_DATA (fer2013.csv)", "data/a"]
    assert chosen.value == outside  # FER_DATA is the default, as everywhere
    assert bars(app)[SPLIT_TITLES["train"]] == [2] * 7
    chosen.set_value(data_dir / "a").run()
    no_exception(app)
    assert bars(app)[SPLIT_TITLES["train"]] == [2] * 7 and len(app.get("image")) == 7


def test_an_archive_is_unpacked_only_when_asked_so_the_page_opens_fast(data_dir, tiny_data):
    write_archive(tiny_data, data_dir / "fer2013_images.tar.gz")
    app = open_page("dataset")
    no_exception(app)
    assert not app.get("plotly_chart") and not app.get("image")
    next(b for b in app.button if b.label == "Unpack and show").click().run()
    no_exception(app)
    assert bars(app)[SPLIT_TITLES["train"]] == [4] * 7
    app.run()  # unpacked once: shown at once from now on
    assert bars(app) and not [b for b in app.button if b.label == "Unpack and show"]


def test_without_a_dataset_the_page_says_where_to_get_one(data_dir):
    app = open_page("dataset")
    no_exception(app)
    assert any("No dataset yet" in text for text in texts(app.info))
    assert not app.get("plotly_chart")


def test_uploading_a_tar_gz_through_the_browser_imports_it_and_lists_it(data_dir, tiny_data, tmp_path):
    archive = write_archive(tiny_data, tmp_path / "fer2013_images.tar.gz")
    app = open_page("dataset")
    app.file_uploader(key="dataset.upload").set_value(
        ("fer2013_images.tar.gz", archive.read_bytes(), "application/gzip")).run()
    assert app.text_input(key="dataset.name").placeholder == "fer2013_images"
    next(b for b in app.button if b.label == "Import").click().run()
    no_exception(app)
    assert not app.error, texts(app.error)
    (status,) = wait_for_imports(data_dir)
    assert status["state"] == "done", status
    app.run()
    no_exception(app)
    assert any("Imported **fer2013\\_images**: 42 images" in text for text in texts(app.success))
    assert app.selectbox(key="dataset.chosen").options == ["data/fer2013_images"]
    assert bars(app)[SPLIT_TITLES["train"]] == [4] * 7
    next(b for b in app.button if b.label == "Dismiss").click().run()
    assert fer.dataset_import.list_imports(data_dir) == [] and not app.success


def test_uploading_a_fer2013_csv_converts_it_under_the_name_typed(data_dir, tmp_path):
    csv = write_fer_csv(tmp_path / "fer2013.csv", {"Training": 2, "PublicTest": 1, "PrivateTest": 1})
    app = open_page("dataset")
    app.file_uploader(key="dataset.upload").set_value(("fer2013.csv", csv.read_bytes(), "text/csv")).run()
    app.text_input(key="dataset.name").input("from-csv").run()
    next(b for b in app.button if b.label == "Import").click().run()
    (status,) = wait_for_imports(data_dir)
    assert status["state"] == "done" and status["kind"] == "csv"
    app.run()
    assert bars(app) == {SPLIT_TITLES["train"]: [2] * 7, SPLIT_TITLES["val"]: [1] * 7,
                         SPLIT_TITLES["test"]: [1] * 7}


def test_a_malicious_upload_is_refused_on_the_page_and_nothing_is_kept(data_dir, tmp_path):
    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("train/angry/a.png", b"x")
        zf.writestr("../../outside.txt", b"owned")
    app = open_page("dataset")
    upload = ("evil.zip", evil.read_bytes(), "application/zip")
    app.file_uploader(key="dataset.upload").set_value(upload).run()
    next(b for b in app.button if b.label == "Import").click().run()
    (status,) = wait_for_imports(data_dir)
    assert status["state"] == "failed"
    app.run()
    assert any("Import of **evil** failed" in text and "leaves the archive" in text
               for text in texts(app.error))
    assert [p.name for p in data_dir.iterdir()] == [fer.dataset_import.IMPORTS]
    assert not (tmp_path / "outside.txt").exists()


def test_a_taken_name_is_refused_at_once(data_dir, tiny_data, tmp_path):
    write_image_folder(data_dir / "fer2013_images", train=1, test=1)
    archive = write_archive(tiny_data, tmp_path / "fer2013_images.tar.gz")
    app = open_page("dataset")
    app.file_uploader(key="dataset.upload").set_value(
        ("fer2013_images.tar.gz", archive.read_bytes(), "application/gzip")).run()
    next(b for b in app.button if b.label == "Import").click().run()
    assert any("exists already" in text for text in texts(app.error))
    assert fer.dataset_import.list_imports(data_dir) == []


def test_a_full_disk_while_saving_an_upload_is_a_message_and_leaves_nothing(data_dir, tiny_data, tmp_path,
                                                                           monkeypatch):
    """The partial upload used to stay, read as an import that "failed: unknown reason"."""
    import errno
    import os

    def full(source, target, length=0):
        target.write(source.read(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fer.dataset_import.shutil, "copyfileobj", full)
    archive = write_archive(tiny_data, tmp_path / "fer2013_images.tar.gz")
    app = open_page("dataset")
    app.file_uploader(key="dataset.upload").set_value(
        ("fer2013_images.tar.gz", archive.read_bytes(), "application/gzip")).run()
    next(b for b in app.button if b.label == "Import").click().run()
    no_exception(app)
    assert any("could not save the upload in data/: No space left on device" in text
               for text in texts(app.error))
    imports = data_dir / fer.dataset_import.IMPORTS
    assert not imports.exists() or not any(imports.iterdir())
    assert not any("unknown reason" in text for text in texts(app.error))


def test_uploading_needs_a_signed_in_user_once_sign_in_is_configured(data_dir):
    write_image_folder(data_dir / "tiny", train=1, test=1)
    visitor = open_as("dataset", auth=True)
    no_exception(visitor)
    assert not visitor.get("file_uploader")
    assert "Sign in to upload a dataset: this dashboard lets only signed-in users act on it." in texts(
        visitor.warning)
    assert bars(visitor)  # reading stays open
    member = open_as("dataset", auth=True, user={"is_logged_in": True, "name": "Ada"})
    assert member.get("file_uploader")


def test_a_visitor_cannot_dismiss_an_import_result_even_with_a_forged_click(data_dir):
    job = data_dir / fer.dataset_import.IMPORTS / "20260101-000000-abcdef"
    job.mkdir(parents=True)
    (job / fer.dataset_import.STATUS_FILE).write_text(json.dumps(
        {"state": "failed", "name": "x", "error": "the CSV has no pixels column", "started": 0}))
    visitor = open_as("dataset", auth=True)
    assert any("the CSV has no pixels column" in text for text in texts(visitor.error))
    force_click(visitor, "Dismiss")
    no_exception(visitor)
    assert job.is_dir()
    member = open_as("dataset", auth=True, user={"is_logged_in": True, "name": "Ada"})
    next(b for b in member.button if b.label == "Dismiss").click().run()
    assert not job.exists()


@pytest.mark.parametrize("status", [
    '{"state": "done", "images": "many", "counts": [1]}', "[1, 2]", "{not json",
    '{"state": "running", "fraction": "half", "pid": 1, "started": 1e12}',
    '{"state": "running", "pid": "x", "started": "yesterday"}'])
def test_a_damaged_import_status_is_shown_as_such_without_a_traceback(data_dir, status):
    job = data_dir / fer.dataset_import.IMPORTS / "20260101-000000-abcdef"
    job.mkdir(parents=True)
    (job / fer.dataset_import.STATUS_FILE).write_text(status)
    app = open_page("dataset")
    no_exception(app)
    assert app.get("progress") or any("cannot be read" in t or "failed" in t for t in texts(app.error))


def test_the_dataset_page_never_imports_tensorflow(tmp_path):
    """The page stays fast: checked in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path[:0] = [{str(PROJECT_ROOT / "tests")!r}, {str(PROJECT_ROOT)!r}]
        import fer.data
        from app_driver import open_page
        from synthetic import write_image_folder
        fer.data.DATA_DIR = Path({str(tmp_path / "data")!r})
        write_image_folder(fer.data.DATA_DIR / "tiny", train=2, test=1)
        app = open_page("dataset")
        assert not app.exception, app.exception
        assert app.get("image"), "no sample faces"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "jax"))
        assert not loaded, loaded[:5]
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={"FER_EXPERIMENTS": str(tmp_path / "experiments"),
                                 "FER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin",
                                 "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]


def test_sample_faces_of_a_validation_fraction_are_the_loaders_validation_faces(tmp_path):
    """Without PublicTest_ files validation is a seeded fraction of train/: the grid shows those."""
    root = write_image_folder(tmp_path / "plain", train=10, test=2, kaggle=False)
    dataset = load_dataset(root, validation_split=0.2, seed=7)
    faces = sample_faces(root, "val", per_class=10, seed=0, validation_split=0.2, split_seed=7)
    shown = sorted(name for chosen in faces.values() for name, _ in chosen)
    assert shown == sorted(dataset.val.names) and len(shown) == 14
    for name, chosen in faces.items():
        assert all(label_of(image) == CLASSES.index(name) for _, image in chosen)
    train = sample_faces(root, "train", per_class=3, seed=1, validation_split=0.2, split_seed=7)
    assert not {n for c in train.values() for n, _ in c} & set(dataset.val.names)


def test_sample_faces_of_a_csv_follow_its_usage_and_labels(tmp_path):
    csv = write_fer_csv(tmp_path / "fer2013.csv", {"Training": 4, "PublicTest": 2, "PrivateTest": 3})
    faces = sample_faces(csv, "test", per_class=5, seed=3)
    assert all(len(chosen) == 3 for chosen in faces.values())
    assert all(label_of(image) == CLASSES.index(name)
               for name, chosen in faces.items() for _, image in chosen)

    def names(seed: int) -> list[str]:
        faces = sample_faces(csv, "train", per_class=2, seed=seed)
        return [name for chosen in faces.values() for name, _ in chosen]
    assert names(3) == names(3) and names(3) != names(4)  # seeded: the same seed, the same faces


@pytest.mark.slow
def test_the_real_fer2013_counts_match_the_published_distribution(real_data, monkeypatch, tmp_path):
    """Skips without FER_DATA (or FER2013 in data/); an archive is unpacked once into the cache."""
    monkeypatch.setenv("FER_DATA", str(real_data))
    resolve_location(real_data)  # unpack an archive before the page's time limit starts
    app = open_page("dataset")
    no_exception(app)
    assert bars(app) == {SPLIT_TITLES[split]: counts for split, counts in FER2013_COUNTS.items()}
    assert len(app.get("image")) == len(CLASSES)
