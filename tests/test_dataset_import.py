"""Importing an uploaded dataset into data/<name>/: archives and fer2013.csv are checked (paths that
escape, links, devices, bombs, member counts, structure, images that do not decode, CSV columns,
pixel counts, labels) and then unpacked or converted in one rename, readable by fer.data."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, wait_until
from synthetic import face, label_of, write_archive, write_fer_csv, write_image_folder

import fer.dataset_import as di
from fer import CLASSES
from fer.data import load_dataset, resolve_location
from fer.dataset_import import ImportProblem, import_dataset


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Kaggle layout: 3 training faces per class, 1 PublicTest and 1 PrivateTest per class."""
    return write_image_folder(tmp_path_factory.mktemp("src") / "fer2013", train=3, test=1)


def png(label: int = 0) -> bytes:
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(face(label), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symlink, as `zip --symlinks` stores it
            zf.writestr(info, target)
    return path


def tar_of(path: Path, members: dict[str, bytes], special: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in special:
            tar.addfile(info)
    return path


def valid_members(prefix: str = "") -> dict[str, bytes]:
    """The smallest FER2013-shaped archive content: one face per class in train/ and test/."""
    members = {}
    for label, name in enumerate(CLASSES):
        members[f"{prefix}train/{name}/Training_{label}.png"] = png(label)
        members[f"{prefix}test/{name}/PublicTest_{label}.png"] = png(label)
        members[f"{prefix}test/{name}/PrivateTest_{label}.png"] = png(label)
    return members


def refused(source: Path, data_dir: Path, match: str) -> None:
    """The import is refused with ``match`` in its message, and leaves nothing behind."""
    with pytest.raises(ImportProblem, match=match):
        import_dataset(source, "fer", data_dir)
    assert sorted(p.name for p in data_dir.iterdir() if p.name != di.IMPORTS) == []
    assert not any((data_dir / di.IMPORTS).iterdir()) if (data_dir / di.IMPORTS).exists() else True


def test_a_tar_gz_of_the_kaggle_folders_lands_in_data_and_reads_with_publictest_as_validation(
        folder, data_dir, tmp_path):
    result = import_dataset(write_archive(folder, tmp_path / "fer2013_images.tar.gz"), "fer2013", data_dir)
    assert result.target == data_dir / "fer2013" and result.kind == "archive" and result.images == 35
    assert result.counts["train"] == {name: 3 for name in CLASSES}
    assert result.counts["test"] == {name: 2 for name in CLASSES}
    dataset = load_dataset(data_dir / "fer2013")
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (21, 7, 7)
    assert dataset.val_description.startswith("PublicTest")
    assert [label_of(image) for image in dataset.train.images] == list(dataset.train.labels)
    assert not any((data_dir / di.IMPORTS).iterdir())  # the work folder is gone


def test_a_zip_with_one_top_folder_and_macos_extras_imports_its_train_and_test(data_dir, tmp_path):
    members = {**valid_members("archive/"), "__MACOSX/archive/train/._x.png": b"junk",
               "archive/.DS_Store": b"junk"}
    result = import_dataset(zip_of(tmp_path / "archive.zip", members), "kaggle", data_dir)
    assert sorted(p.name for p in result.target.iterdir()) == ["test", "train"]
    assert resolve_location(result.target) == result.target
    assert len(load_dataset(result.target).test) == 7


@pytest.mark.parametrize("name", ["../evil.png", "train/../../evil.png", "/tmp/evil.png"])
def test_a_zip_member_that_escapes_the_folder_is_refused(data_dir, tmp_path, name):
    source = zip_of(tmp_path / "evil.zip", {**valid_members(), name: png()})
    refused(source, data_dir, "leaves the archive")
    assert not (tmp_path / "evil.png").exists()


def test_a_tar_member_that_escapes_the_folder_is_refused(data_dir, tmp_path):
    refused(tar_of(tmp_path / "evil.tar.gz", {**valid_members(), "../evil.png": png()}), data_dir,
            "leaves the archive")
    assert not (tmp_path / "evil.png").exists()


def test_a_symlink_in_a_zip_is_refused(data_dir, tmp_path):
    source = zip_of(tmp_path / "link.zip", valid_members(), symlinks={"train/angry/link.png": "/etc/passwd"})
    refused(source, data_dir, "links, devices")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_links_devices_and_pipes_in_a_tar_are_refused(data_dir, tmp_path, kind):
    special = tarfile.TarInfo("train/angry/special.png")
    special.type, special.linkname = kind, "/etc/passwd"
    refused(tar_of(tmp_path / "special.tar.gz", valid_members(), [special]), data_dir, "links, devices")


def test_a_zip_bomb_is_stopped_at_the_unpacked_size_cap(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(di, "MAX_UNPACKED_BYTES", 1 << 20)
    source = zip_of(tmp_path / "bomb.zip", {**valid_members(), "train/angry/bomb.png": bytes(4 << 20)})
    assert source.stat().st_size < 64 << 10  # 4 MB of zeros compress to a few KB
    refused(source, data_dir, "archive bomb")


def test_a_tar_gz_bomb_is_stopped_while_unpacking(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(di, "MAX_UNPACKED_BYTES", 1 << 20)
    members = {**valid_members(), **{f"train/angry/zeros{i}.png": bytes(300 << 10) for i in range(8)}}
    refused(tar_of(tmp_path / "bomb.tar.gz", members), data_dir, "archive bomb")


def test_too_many_members_are_refused(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(di, "MAX_MEMBERS", 10)
    refused(tar_of(tmp_path / "many.tar.gz", valid_members()), data_dir, "more than 10 members")
    refused(zip_of(tmp_path / "many.zip", valid_members()), data_dir, "more than 10 members")


def test_an_archive_without_train_and_test_is_refused(data_dir, tmp_path):
    refused(zip_of(tmp_path / "photos.zip", {"holiday/a.png": png()}), data_dir, "no train/ folder")
    members = {k: v for k, v in valid_members().items() if k.startswith("train/")}
    refused(zip_of(tmp_path / "train-only.zip", members), data_dir, "no test/ folder")


def test_an_unknown_class_folder_is_refused(data_dir, tmp_path):
    source = zip_of(tmp_path / "classes.zip", {**valid_members(), "train/contempt/a.png": png()})
    refused(source, data_dir, "contempt is not an emotion folder")


def test_an_image_that_does_not_decode_is_refused(data_dir, tmp_path):
    members = valid_members()
    members["train/happy/Training_3.png"] = b"not a png at all"
    refused(zip_of(tmp_path / "broken.zip", members), data_dir, "not an image that can be decoded")


def test_a_damaged_or_foreign_file_is_refused(data_dir, tmp_path):
    archive = tar_of(tmp_path / "cut.tar.gz", valid_members())
    cut = tmp_path / "cut-short.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    refused(cut, data_dir, "not a complete tar")
    foreign = tmp_path / "random.bin"
    foreign.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    refused(foreign, data_dir, "neither a zip or tar archive nor a fer2013.csv|cannot be read|has no")


@pytest.mark.parametrize("gzipped", [False, True])
def test_fer2013_csv_is_converted_to_image_folders_with_labels_by_row(data_dir, tmp_path, gzipped):
    csv = write_fer_csv(tmp_path / "fer2013.csv", {"Training": 3, "PublicTest": 1, "PrivateTest": 2})
    if gzipped:
        csv = tmp_path / "fer2013.csv.gz"
        csv.write_bytes(gzip.compress((tmp_path / "fer2013.csv").read_bytes()))
    result = import_dataset(csv, "from-csv", data_dir)
    assert result.kind == "csv" and result.images == 42
    assert result.counts == {"train": {name: 3 for name in CLASSES}, "test": {name: 3 for name in CLASSES}}
    converted, original = load_dataset(result.target), load_dataset(tmp_path / "fer2013.csv")
    for split in ("train", "val", "test"):
        assert sorted(converted.split(split).labels) == sorted(original.split(split).labels)
        assert [label_of(i) for i in converted.split(split).images] == list(converted.split(split).labels)
    # Lossless: the pixels are the CSV's exactly.
    assert sorted(map(bytes, converted.train.images)) == sorted(map(bytes, original.train.images))


@pytest.mark.parametrize(("archive", "member"), [("fer2013.tar.gz", "fer2013/fer2013.csv"),
                                                ("challenge.zip", "icml_face_data.csv")])
def test_the_challenge_download_with_its_csv_inside_an_archive_is_converted(data_dir, tmp_path, archive,
                                                                            member):
    """Kaggle's challenge ships fer2013.tar.gz (fer2013/fer2013.csv, README, .bib); its newer zip has
    icml_face_data.csv, whose header has spaces after the commas."""
    text = write_fer_csv(tmp_path / "src.csv").read_text()
    if member == "icml_face_data.csv":
        text = text.replace("emotion,pixels,Usage", "emotion, pixels, Usage", 1)
    members = {member: text.encode(), "fer2013/README": b"read me", "fer2013/fer2013.bib": b"@misc{}"}
    source = (zip_of if archive.endswith(".zip") else tar_of)(tmp_path / archive, members)
    result = import_dataset(source, "challenge", data_dir)
    assert result.kind == "csv" and result.images == 35
    assert len(load_dataset(result.target).val) == 7
    assert sorted(p.name for p in (data_dir / di.IMPORTS).iterdir()) == []


def test_a_csv_member_may_be_large_but_an_image_member_may_not(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(di, "MAX_MEMBER_BYTES", 4 << 10)
    big_csv = write_fer_csv(tmp_path / "fer2013.csv").read_bytes()
    assert len(big_csv) > 4 << 10
    archived = tar_of(tmp_path / "a.tar.gz", {"fer2013.csv": big_csv})
    assert import_dataset(archived, "ok", tmp_path / "other-data").images == 35
    members = {**valid_members(), "train/angry/big.png": bytes(8 << 10)}
    refused(tar_of(tmp_path / "b.tar.gz", members), data_dir, "larger than")


def csv_text(rows: list[str], header: str = "emotion,pixels,Usage") -> str:
    return "\n".join([header, *rows]) + "\n"


PIXELS = " ".join(["128"] * 2304)


@pytest.mark.parametrize(("text", "match"), [
    (csv_text([f"0,{PIXELS},Training"], header="label,image,split"), "no emotion, pixels, Usage column"),
    (csv_text([f"0,{PIXELS},Training"], header="emotion,Usage"), "no pixels column"),
    (csv_text([f"0,{PIXELS},Training", "1,1 2 3,PublicTest"]), "row 2 has 3 pixel values"),
    (csv_text([f"7,{PIXELS},Training"]), "row 1 has emotion '7'"),
    (csv_text([f"0,{PIXELS},Training", f"0,{PIXELS},Validation"]), "row 2 has Usage 'Validation'"),
    (csv_text([f"0,{' '.join(['300'] * 2304)},Training"]), "outside 0..255"),
    (csv_text([f"0,{' '.join(['4294967296'] * 2304)},Training"]), "outside 0..255"),  # no wrap to 0
    (csv_text([f"0,{' '.join(['x'] * 2304)},Training"]), "not a whole number"),
    (csv_text([f"0,{PIXELS},Training"]), "PublicTest or PrivateTest rows"),
    (csv_text([]), "no rows"),
])
def test_a_malformed_csv_is_refused_with_the_row_and_reason(data_dir, tmp_path, text, match):
    path = tmp_path / "fer2013.csv"
    path.write_text(text)
    refused(path, data_dir, match)


def test_a_gzip_bomb_csv_is_stopped_at_the_cap(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(di, "MAX_UNPACKED_BYTES", 1 << 20)
    rows = [f"0,{PIXELS},Training"] * 600  # 5.5 MB of text, a few KB gzipped
    path = tmp_path / "fer2013.csv.gz"
    path.write_bytes(gzip.compress(csv_text(rows).encode()))
    refused(path, data_dir, "gzip bomb")


@pytest.mark.parametrize("name", ["", "../up", ".hidden", "a/b", "x" * 65, "fer.tar.gz"])
def test_a_bad_dataset_name_is_refused(data_dir, tmp_path, folder, name):
    with pytest.raises(ImportProblem, match="dataset name"):
        import_dataset(write_archive(folder, tmp_path / "a.tar.gz"), name, data_dir)


@pytest.mark.parametrize("name", ["train", "test", "TRAIN"])
def test_an_import_named_like_a_split_folder_is_refused(data_dir, tmp_path, folder, name):
    """data/train would make data/ itself look like a dataset and break every run on the default."""
    with pytest.raises(ImportProblem, match="cannot be a dataset's name"):
        import_dataset(write_archive(folder, tmp_path / "a.tar.gz"), name, data_dir)
    assert not (data_dir / name).exists()


def test_an_existing_dataset_is_never_overwritten(data_dir, tmp_path, folder):
    (data_dir / "fer2013").mkdir()
    (data_dir / "fer2013" / "mine.txt").write_text("keep")
    with pytest.raises(ImportProblem, match="exists already"):
        import_dataset(write_archive(folder, tmp_path / "a.tar.gz"), "fer2013", data_dir)
    assert (data_dir / "fer2013" / "mine.txt").read_text() == "keep"


def test_default_names_come_from_the_file_name():
    assert di.default_name("fer2013_images.tar.gz") == "fer2013_images"
    assert di.default_name("fer2013.csv.gz") == "fer2013"
    assert di.default_name("My Archive (1).zip") == "My_Archive_1"
    assert di.default_name("...zip") == "fer2013"


def test_a_background_import_reports_progress_and_its_result(data_dir, tmp_path, folder):
    archive = write_archive(folder, tmp_path / "a.tar.gz")
    with open(archive, "rb") as upload:
        job = di.start_import(upload, "a.tar.gz", "background", data_dir)
    status = wait_until(lambda: (s := di.read_status(job)).get("state") in ("done", "failed") and s,
                        timeout=60, what="the import to finish", log=job / "log.txt")
    assert status["state"] == "done", status
    assert status["images"] == 35 and status["target"] == str(data_dir / "background")
    assert not (job / "upload").exists()  # the uploaded copy is removed once imported
    assert [s["state"] for _, s in di.list_imports(data_dir)] == ["done"]
    di.dismiss_import(job)
    assert di.list_imports(data_dir) == []


def test_a_background_import_that_is_refused_says_why(data_dir, tmp_path):
    bad = zip_of(tmp_path / "evil.zip", {**valid_members(), "../evil.png": png()})
    with open(bad, "rb") as upload:
        job = di.start_import(upload, "evil.zip", "evil", data_dir)
    status = wait_until(lambda: (s := di.read_status(job)).get("state") in ("done", "failed") and s,
                        timeout=60, what="the import to finish", log=job / "log.txt")
    assert status["state"] == "failed" and "leaves the archive" in status["error"]
    assert not (data_dir / "evil").exists()


def test_a_second_import_into_a_name_being_imported_is_refused(data_dir, tmp_path, folder):
    """A double click on Import must not start two imports into the same folder."""
    running = data_dir / di.IMPORTS / "20260101-000000-abcdef"
    running.mkdir(parents=True)
    (running / di.STATUS_FILE).write_text(json.dumps(
        {"state": "running", "name": "fer2013", "pid": os.getpid(), "started": time.time()}))
    with open(write_archive(folder, tmp_path / "a.tar.gz"), "rb") as upload, \
            pytest.raises(ImportProblem, match="running already"):
        di.start_import(upload, "a.tar.gz", "fer2013", data_dir)
    assert [job for job, _ in di.list_imports(data_dir)] == [running]


def test_the_command_line_imports_and_exits_2_with_a_sentence_on_bad_input(data_dir, tmp_path, folder):
    good = run_cli(["fer.dataset_import", write_archive(folder, tmp_path / "a.tar.gz"), "--name", "cli",
                    "--data-dir", data_dir], timeout=60)
    assert good.returncode == 0, good.stderr
    assert "imported 35 images" in good.stdout
    bad = tmp_path / "fer2013.csv"
    bad.write_text("a,b\n1,2\n")
    result = run_cli(["fer.dataset_import", bad, "--name", "bad", "--data-dir", data_dir], timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no emotion, pixels, Usage column" in result.stderr


def test_the_upload_limit_in_the_shipped_config_matches_the_import_limit():
    import tomllib

    from fer import PROJECT_ROOT

    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == di.MAX_UPLOAD_MB
    assert di.MAX_UPLOAD_MB * 1e6 > 301e6  # room for the original fer2013.csv


def test_the_worker_module_never_imports_tensorflow():
    probe = ("import json, sys, fer.dataset_import\n"
             "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', "
             "'jax', 'streamlit')]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         cwd=Path(di.__file__).parent.parent, check=True).stdout
    assert json.loads(out) == []


# ---- bombs the caps must count before memory or CPU is spent ------------------------------------

def long_name_tar(path: Path, claimed: int, kind: bytes = tarfile.GNUTYPE_LONGNAME) -> Path:
    """A small tar.gz whose first header (a GNU long name, or a PAX extension) claims ``claimed``
    bytes of data that tarfile would read into memory whole."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = kind, claimed
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    path.write_bytes(gzip.compress(header + b"a" * 512 * 64 + b"\0" * 1024))
    return path


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE], ids=["gnu-long-name", "pax"])
def test_a_tar_header_claiming_gigabytes_is_refused_before_it_is_read(data_dir, tmp_path, kind):
    archive = long_name_tar(tmp_path / "bomb.tar.gz", 3 << 30, kind)
    assert archive.stat().st_size < 1 << 20
    refused(archive, data_dir, "tar header claims 3,221,225,472 bytes")


def test_skipped_hidden_members_count_against_the_unpacked_cap(data_dir, tmp_path, folder, monkeypatch):
    """A hidden member is not extracted, but reaching the next member inflates it: it counts."""
    monkeypatch.setattr(di, "MAX_UNPACKED_BYTES", 1 << 20)
    archive = tmp_path / "hidden.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="fer2013")
        for index in range(3):
            info = tarfile.TarInfo(f"fer2013/.cache-{index}")
            info.size = 1 << 19
            tar.addfile(info, io.BytesIO(b"\0" * info.size))
    refused(archive, data_dir, "possible archive bomb")


def test_a_csv_with_one_enormous_line_is_refused_without_reading_it_whole(data_dir, tmp_path):
    path = tmp_path / "fer2013.csv.gz"
    path.write_bytes(gzip.compress((csv_text([]) + "0," + "1 " * 200_000 + ",Training\n").encode()))
    refused(path, data_dir, "line longer than 65,536 characters")


def test_a_zip_declaring_too_many_entries_is_refused_before_its_directory_is_parsed(data_dir, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr(di, "MAX_MEMBERS", 10)
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for index in range(20):
            zf.writestr(f"train/happy/{index}.png", b"x")

    def never(*args, **kwargs):
        raise AssertionError("zipfile parsed the central directory")

    monkeypatch.setattr(di.zipfile, "ZipFile", never)
    refused(archive, data_dir, "more than 10 members")


@pytest.mark.parametrize("case", ["byte-order-mark", "trailing-blank-lines"])
def test_a_csv_as_spreadsheets_save_it_imports(data_dir, tmp_path, case):
    rows = [f"{index % 7},{PIXELS},{usage}" for index, usage in
            enumerate(["Training"] * 7 + ["PublicTest"] * 7 + ["PrivateTest"] * 7)]
    text = csv_text(rows)
    path = tmp_path / "fer2013.csv"
    if case == "byte-order-mark":
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    else:
        path.write_text(text + "\n\n")
    import_dataset(path, "fer", data_dir)
    assert sum(1 for _ in (data_dir / "fer").rglob("*.png")) == 21


def test_a_tar_with_names_that_are_not_utf8_is_refused_with_a_message(data_dir, tmp_path, folder):
    """Such names imported, and a run trained on them failed at its final evaluation."""
    archive = tmp_path / "latin1.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        tar.add(folder, arcname="fer2013")
        tar.add(next((folder / "train" / "happy").iterdir()), arcname="fer2013/train/happy/caf\u00e9.png")
    refused(archive, data_dir, "not valid UTF-8")


def test_a_zip_whose_utf8_flag_lies_is_refused_with_a_message_not_a_traceback(data_dir, tmp_path):
    archive = tmp_path / "flagged.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/happy/caf\u00e9.png", b"x")  # a UTF-8 name: the flag says so
    name = "caf\u00e9".encode()
    archive.write_bytes(archive.read_bytes().replace(name, b"caf\xff\xfe"))  # no longer UTF-8
    refused(archive, data_dir, "not valid UTF-8")
    result = run_cli(["fer.dataset_import", archive, "--name", "flagged"], timeout=120,
                     FER_DATA_ROOTS=str(tmp_path))
    assert result.returncode == 2 and "not valid UTF-8" in result.stderr and "Traceback" not in result.stderr


def test_every_images_size_is_checked_from_its_header_not_only_the_spot_checked_ones(data_dir, tmp_path,
                                                                                      folder, monkeypatch):
    """Real faces where the spot check looks, a 13000-pixel-wide PNG everywhere else: refused."""
    import shutil

    from PIL import Image

    monkeypatch.setattr(di, "SPOT_CHECKS_PER_CLASS", 1)
    source = shutil.copytree(folder, tmp_path / "planted")
    for index in range(6):
        Image.new("1", (13000, 8)).save(source / "train" / "happy" / f"zz-planted-{index}.png")
    refused(write_archive(source, tmp_path / "planted.tar.gz"), data_dir, "13000x8 pixels")


def test_reading_a_dataset_skips_an_oversized_image_from_its_header(tmp_path):
    from PIL import Image

    from fer.data import load_dataset

    root = write_image_folder(tmp_path / "fer2013", train=2, test=1)
    Image.new("1", (13000, 8)).save(root / "train" / "happy" / "huge.png")
    dataset = load_dataset(root)
    assert len(dataset.train) == 14
    assert any("skipped 1 unreadable image" in warning and "huge.png" in warning
               for warning in dataset.warnings)
