"""fer.data reads all three dataset forms, maps classes by folder name and explains bad data."""

from __future__ import annotations

import os
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image
from synthetic import face, label_of, write_archive, write_faces, write_fer_csv, write_image_folder

import fer.data
from fer import CLASSES, IMAGE_SIZE
from fer.data import DataError, load_dataset, resolve_location, summarize_dataset, unpack_archive


def assert_labels_match_pixels(split: fer.data.Split) -> None:
    """Every image's encoded brightness label equals the label the loader gave it."""
    assert split.images.shape == (len(split), IMAGE_SIZE, IMAGE_SIZE)
    assert split.images.dtype == np.uint8
    assert [label_of(image) for image in split.images] == split.labels.tolist()


# ---- image folders ----------------------------------------------------------------------------

def test_kaggle_prefixes_make_publictest_val_and_privatetest_test(tmp_path):
    """With PublicTest_/PrivateTest_ files, val is PublicTest and test is PrivateTest, as in the papers."""
    root = write_image_folder(tmp_path / "fer", train=3, test=2, kaggle=True)
    data = load_dataset(root)
    assert (len(data.train), len(data.val), len(data.test)) == (21, 14, 14)
    assert all(os.path.basename(n).startswith("Training_") for n in data.train.names)
    assert all(os.path.basename(n).startswith("PublicTest_") for n in data.val.names)
    assert all(os.path.basename(n).startswith("PrivateTest_") for n in data.test.names)
    assert "PublicTest" in data.val_description and "PrivateTest" in data.test_description
    for split in (data.train, data.val, data.test):
        assert_labels_match_pixels(split)
    assert data.warnings == []


def test_without_prefixes_val_is_a_seeded_stratified_fraction_of_train(tmp_path):
    """Without Kaggle prefixes, val is a reproducible per-class fraction of train and test is test/."""
    root = write_image_folder(tmp_path / "fer", train=10, test=2, kaggle=False)
    data = load_dataset(root, validation_split=0.2, seed=1)
    assert data.val.class_counts() == dict.fromkeys(CLASSES, 2)
    assert data.train.class_counts() == dict.fromkeys(CLASSES, 8)
    assert len(data.test) == 14 and all(n.startswith("test") for n in data.test.names)
    assert not set(data.val.names) & set(data.train.names)
    assert "20% of train" in data.val_description and data.test_description == "test/"
    again = load_dataset(root, validation_split=0.2, seed=1)
    assert again.val.names == data.val.names
    other_seed = load_dataset(root, validation_split=0.2, seed=2)
    assert other_seed.val.names != data.val.names
    for split in (data.train, data.val, data.test):
        assert_labels_match_pixels(split)


def test_class_folders_map_by_name_not_alphabetical_position(tmp_path):
    """Images in `neutral/` get label 6 (canonical), not 4 (its alphabetical position)."""
    root = write_image_folder(tmp_path / "fer", train=2, test=1)
    data = load_dataset(root)
    neutral = [label for name, label in zip(data.train.names, data.train.labels, strict=True)
               if "/neutral/" in f"/{name}"]
    assert neutral and set(neutral) == {CLASSES.index("neutral")} == {6}
    sad = [label for name, label in zip(data.train.names, data.train.labels, strict=True)
           if "/sad/" in f"/{name}"]
    assert set(sad) == {4}
    assert_labels_match_pixels(data.train)


def test_class_folder_names_are_case_insensitive_and_may_be_missing(tmp_path):
    """`Neutral/` counts as neutral; a split without some classes loads with a warning naming them."""
    root = tmp_path / "fer"
    for split, prefixes in (("train", ["Training_"]), ("test", ["PublicTest_", "PrivateTest_"])):
        for prefix in prefixes:
            write_faces(root / split / "Neutral", 6, 2, prefix)
            write_faces(root / split / "happy", 3, 2, prefix)
    data = load_dataset(root)
    assert data.train.class_counts() == {**dict.fromkeys(CLASSES, 0), "neutral": 2, "happy": 2}
    assert_labels_match_pixels(data.train)
    assert any("no folder for: angry, disgust, fear, sad, surprise" in w for w in data.warnings)


def test_jpeg_and_odd_sizes_are_read_as_48x48_grayscale(tmp_path):
    """RGB and larger images are converted to 48x48 L, like the FER2013 JPEGs."""
    root = write_image_folder(tmp_path / "fer", train=1, test=1, suffix=".jpg")
    big = np.repeat(np.kron(face(3, 99), np.ones((2, 2), dtype=np.uint8))[..., None], 3, axis=2)
    Image.fromarray(big, mode="RGB").save(root / "train" / "happy" / "Training_big.png")
    data = load_dataset(root)
    assert len(data.train) == 8
    assert_labels_match_pixels(data.train)


def test_max_train_samples_takes_a_stratified_subset_of_train_only(tmp_path):
    """A quick trial on N images keeps every class and leaves val/test whole."""
    root = write_image_folder(tmp_path / "fer", train=10, test=2)
    data = load_dataset(root, max_train_samples=21)
    assert len(data.train) == 21
    assert data.train.class_counts() == dict.fromkeys(CLASSES, 3)
    assert (len(data.val), len(data.test)) == (14, 14)
    assert len(load_dataset(root, max_train_samples=1000).train) == 70


def test_max_train_samples_gives_exactly_that_many_images(tmp_path):
    """Per-class rounding must not hand out one image more (or fewer) than asked for."""
    counts = {"angry": 5, "disgust": 1, "fear": 5, "happy": 9, "sad": 5, "surprise": 4, "neutral": 5}
    root = write_image_folder(tmp_path / "fer", train=counts, test=1)
    for asked in range(1, sum(counts.values())):
        train = load_dataset(root, max_train_samples=asked, seed=3).train
        assert len(train) == asked, asked
        assert_labels_match_pixels(train)
        for name, share in train.class_counts().items():  # each class keeps its share, +-1
            assert abs(share - counts[name] * asked / sum(counts.values())) < 1, (asked, name)
    again = load_dataset(root, max_train_samples=13, seed=3).train
    assert again.names == load_dataset(root, max_train_samples=13, seed=3).train.names  # reproducible


def test_split_lookup_rejects_unknown_names(tmp_path):
    """Dataset.split('public') is a DataError that lists the valid names."""
    data = load_dataset(write_image_folder(tmp_path / "fer", train=1, test=1))
    assert data.split("val") is data.val
    with pytest.raises(DataError, match="train, val, test"):
        data.split("public")


# ---- fer2013.csv ------------------------------------------------------------------------------

def test_csv_splits_by_usage_and_keeps_labels_and_pixels(tmp_path):
    """fer2013.csv rows go to train/val/test by Usage with their emotion index and exact pixels."""
    path = write_fer_csv(tmp_path / "fer2013.csv",
                         {"Training": 3, "PublicTest": 2, "PrivateTest": 1})
    data = load_dataset(path)
    assert (len(data.train), len(data.val), len(data.test)) == (21, 14, 7)
    for split in (data.train, data.val, data.test):
        assert_labels_match_pixels(split)
    np.testing.assert_array_equal(data.train.images[0], face(0, 0))
    assert data.train.names[0] == "row 0"


def test_a_folder_holding_fer2013_csv_resolves_to_the_csv(tmp_path):
    """Pointing at the folder that contains fer2013.csv is enough."""
    path = write_fer_csv(tmp_path / "data" / "fer2013.csv")
    assert resolve_location(tmp_path / "data") == path
    assert len(load_dataset(tmp_path / "data").train) == 21


def test_csv_with_wrong_columns_names_the_file_and_the_needed_columns(tmp_path):
    """A CSV that is not fer2013.csv fails with the columns it needs, never the ones it has."""
    path = tmp_path / "fer2013.csv"
    path.write_text("label,image\n0,1 2 3\n")
    with pytest.raises(DataError, match="emotion, pixels and Usage") as info:
        load_dataset(path)
    assert str(path) in str(info.value) and "label" not in str(info.value)


def test_csv_with_wrong_pixel_count_names_the_row(tmp_path):
    """A truncated pixels string is reported with its row and the expected 2304 values."""
    path = write_fer_csv(tmp_path / "fer2013.csv")
    lines = path.read_text().splitlines()
    lines[3] = "2," + " ".join(["7"] * 100) + ",Training"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"row 2 has 100 pixel values, expected 2304") as info:
        load_dataset(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("row", "message"), [
    ("9,{pixels},Training", "emotion values must be 0..6"),
    ("1,{pixels},Validation", "unknown Usage value"),
    ("x,{pixels},Training", "non-numeric emotion"),
    ("1,x {pixels_but_one},Training", r"row \d+ has non-numeric pixel values"),
    ("1,1.5 {pixels_but_one},Training", r"row \d+ has non-numeric pixel values"),
    ("1,-1 {pixels_but_one},Training", r"pixel values must be in 0..255 \(row \d+ is not\)"),
    ("1,256 {pixels_but_one},Training", r"pixel values must be in 0..255"),
    ("1,,Training", r"row \d+ has 0 pixel values"),
])
def test_csv_with_bad_values_is_a_data_error(tmp_path, row, message):
    """Out-of-range emotions, unknown Usage and non-numbers are DataErrors, not crashes."""
    path = write_fer_csv(tmp_path / "fer2013.csv")
    pixels = " ".join(["0"] * IMAGE_SIZE * IMAGE_SIZE)
    with path.open("a") as handle:
        handle.write(row.format(pixels=pixels, pixels_but_one=pixels[2:]) + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_csv_pixels_are_read_exactly(tmp_path):
    """Row by row in C: every value lands where it was, whatever whitespace separates them."""
    path = write_fer_csv(tmp_path / "fer2013.csv")
    values = np.arange(IMAGE_SIZE * IMAGE_SIZE) % 256
    with path.open("a") as handle:
        handle.write("3,\"" + "  ".join(map(str, values)) + " \",PrivateTest\n")
    test = load_dataset(path).test
    assert test.images.dtype == np.uint8
    assert np.array_equal(test.images[-1], values.reshape(IMAGE_SIZE, IMAGE_SIZE)) and test.labels[-1] == 3


def test_csv_without_a_split_is_a_data_error(tmp_path):
    """A CSV with no PrivateTest rows says which Usage is missing."""
    path = write_fer_csv(tmp_path / "fer2013.csv", {"Training": 2, "PublicTest": 1})
    with pytest.raises(DataError, match="no rows with Usage=PrivateTest"):
        load_dataset(path)


# ---- .tar.gz archives -------------------------------------------------------------------------

def test_archive_is_unpacked_once_into_the_cache_and_reused(tmp_path, monkeypatch):
    """The first load unpacks into FER_CACHE; the second reuses that folder without unpacking."""
    archive = write_archive(write_image_folder(tmp_path / "src", train=2, test=1),
                            tmp_path / "fer2013_images.tar.gz")
    first = load_dataset(archive)
    unpacked = list((tmp_path / "cache" / "datasets").iterdir())
    assert len(unpacked) == 1 and first.source == unpacked[0]
    assert len(first.train) == 14
    assert_labels_match_pixels(first.train)

    def no_unpacking(*args, **kwargs):
        raise AssertionError("the archive was unpacked a second time")

    monkeypatch.setattr(tarfile, "open", no_unpacking)
    second = load_dataset(archive)
    assert second.source == first.source and second.train.names == first.train.names


def test_archive_with_a_top_level_folder_is_found(tmp_path):
    """An archive holding fer2013/train and fer2013/test (one level down) loads as well."""
    archive = write_archive(write_image_folder(tmp_path / "src", train=1, test=1),
                            tmp_path / "data.tgz", top="fer2013")
    data = load_dataset(archive)
    assert data.source.name == "fer2013" and len(data.test) == 7


def test_a_changed_archive_is_unpacked_again(tmp_path):
    """The cache key includes size and mtime, so a replaced archive is not served stale."""
    src = write_image_folder(tmp_path / "src", train=1, test=1)
    archive = write_archive(src, tmp_path / "fer.tar.gz")
    first = unpack_archive(archive)
    write_faces(src / "train" / "happy", 3, 2, "Training_", start=50)
    write_archive(src, archive)
    os.utime(archive, ns=(1, 10**18))
    second = unpack_archive(archive)
    assert second != first
    assert len(load_dataset(archive).train) == 9


def test_a_corrupt_archive_is_a_data_error_and_leaves_no_cache(tmp_path):
    """A truncated download fails with the archive's path and leaves no half-unpacked folder."""
    archive = write_archive(write_image_folder(tmp_path / "src", train=1, test=1), tmp_path / "fer.tar.gz")
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match="could not unpack") as info:
        load_dataset(archive)
    assert str(archive) in str(info.value)
    cache = tmp_path / "cache" / "datasets"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_an_archive_escaping_the_cache_is_refused(tmp_path):
    """A malicious archive member like ../../evil.txt is not written outside the cache."""
    archive = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("owned")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="../../evil.txt")
    with pytest.raises(DataError, match="could not unpack"):
        load_dataset(archive)
    assert not list(tmp_path.rglob("evil.txt"))


# ---- errors and warnings ----------------------------------------------------------------------

def test_missing_location_names_the_path(tmp_path):
    """A typo in the data path says which path does not exist."""
    with pytest.raises(DataError, match="does not exist") as info:
        load_dataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_no_location_and_nothing_found_explains_where_to_put_data(monkeypatch):
    """With no dataset anywhere, the message says how to provide one."""
    monkeypatch.setattr(fer.data, "default_data_location", lambda: None)
    with pytest.raises(DataError, match="FER_DATA"):
        resolve_location("")


def test_default_location_honours_fer_data(tmp_path, monkeypatch):
    """FER_DATA wins over data/."""
    monkeypatch.setenv("FER_DATA", str(tmp_path / "mine"))
    assert fer.data.default_data_location() == tmp_path / "mine"


def test_unknown_class_folder_names_the_folder(tmp_path):
    """A folder like `happyy` is refused with its path and the allowed names."""
    root = write_image_folder(tmp_path / "fer", train=1, test=1)
    write_faces(root / "train" / "happyy", 3, 1, "Training_")
    with pytest.raises(DataError, match="unknown class folder") as info:
        load_dataset(root)
    assert str(root / "train" / "happyy") in str(info.value)
    assert ", ".join(CLASSES) in str(info.value)


def test_folder_without_train_names_the_folder_and_the_layout(tmp_path):
    """A folder with no train/ says what layout was expected."""
    (tmp_path / "fer" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="has no train/ folder") as info:
        load_dataset(tmp_path / "fer")
    assert str(tmp_path / "fer") in str(info.value)


def test_missing_test_folder_names_it(tmp_path):
    """train/ without test/ reports the missing test folder."""
    root = write_image_folder(tmp_path / "fer", train=1, test=1)
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match="missing folder") as info:
        load_dataset(root)
    assert str(root / "test") in str(info.value)


def test_split_folder_without_images_is_a_data_error(tmp_path):
    """Class folders that hold no images at all cannot make a split."""
    root = write_image_folder(tmp_path / "fer", train=1, test=1)
    shutil.rmtree(root / "test")
    (root / "test" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="contains no images"):
        load_dataset(root)


def test_a_plain_file_that_is_no_dataset_is_refused(tmp_path):
    """A .zip (or any other file) is neither folder, archive nor CSV."""
    (tmp_path / "fer.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="neither a folder"):
        load_dataset(tmp_path / "fer.zip")


def test_non_image_files_are_skipped_with_a_warning(tmp_path):
    """A stray README or .DS_Store-like file is skipped and mentioned, not fatal."""
    root = write_image_folder(tmp_path / "fer", train=2, test=1)
    (root / "train" / "fear" / "notes.txt").write_text("hello")
    data = load_dataset(root)
    assert len(data.train) == 14
    assert any("skipped 1 non-image file(s)" in w and "notes.txt" in w for w in data.warnings)


def test_empty_class_folder_is_a_warning(tmp_path):
    """An empty `disgust/` loads the rest and warns about that folder."""
    root = write_image_folder(tmp_path / "fer", train=2, test=1)
    for path in (root / "train" / "disgust").iterdir():
        path.unlink()
    data = load_dataset(root)
    assert data.train.class_counts()["disgust"] == 0
    assert any(str(root / "train" / "disgust") in w and "no images" in w for w in data.warnings)


def test_unreadable_image_is_skipped_with_a_warning(tmp_path):
    """A corrupt .jpg is skipped (not loaded as a black face) and named in a warning."""
    root = write_image_folder(tmp_path / "fer", train=2, test=1)
    (root / "train" / "angry" / "Training_broken.jpg").write_bytes(b"not a jpeg")
    data = load_dataset(root)
    assert len(data.train) == 14
    assert_labels_match_pixels(data.train)
    assert any("unreadable" in w and "Training_broken.jpg" in w for w in data.warnings)


# ---- summaries --------------------------------------------------------------------------------

def test_summary_counts_kaggle_folder_without_decoding(tmp_path):
    """summarize_dataset counts files per split and class (PublicTest = val, PrivateTest = test)."""
    root = write_image_folder(tmp_path / "fer", train={"angry": 3, "neutral": 5}, test={"neutral": 2})
    summary = summarize_dataset(root)
    zero = dict.fromkeys(CLASSES, 0)
    assert summary.counts == {"train": {**zero, "angry": 3, "neutral": 5},
                              "val": {**zero, "neutral": 2}, "test": {**zero, "neutral": 2}}
    assert summary.source == root
    assert any("no folder for" in w for w in summary.warnings)


def test_summary_of_plain_folder_matches_what_load_dataset_returns(tmp_path):
    """The UI's quick counts agree with the real stratified split."""
    root = write_image_folder(tmp_path / "fer", train=10, test=3, kaggle=False)
    summary = summarize_dataset(root, validation_split=0.2)
    data = load_dataset(root, validation_split=0.2)
    assert summary.counts == {name: data.split(name).class_counts() for name in ("train", "val", "test")}


def test_summary_counts_csv_rows(tmp_path):
    """summarize_dataset works for fer2013.csv too."""
    path = write_fer_csv(tmp_path / "fer2013.csv", {"Training": 3, "PublicTest": 2, "PrivateTest": 1})
    summary = summarize_dataset(path)
    assert summary.counts["train"] == dict.fromkeys(CLASSES, 3)
    assert summary.counts["val"] == dict.fromkeys(CLASSES, 2)
    assert summary.counts["test"] == dict.fromkeys(CLASSES, 1)


# Published FER2013 counts (the README's Data section), in fer.CLASSES order.
REAL_COUNTS = {
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "val": [467, 56, 496, 895, 653, 415, 607],
    "test": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_fer2013_counts_match_the_published_distribution(real_data):
    """On the real data, every split and class (mapped by name) has the published count."""
    summary = summarize_dataset(real_data)
    assert {split: list(counts.values()) for split, counts in summary.counts.items()} == REAL_COUNTS
    assert summary.warnings == []


def test_a_file_whose_name_is_not_utf8_is_skipped_with_a_warning(tmp_path):
    """Such a name (bytes Python keeps as surrogates) broke the Dataset page and a run's final
    evaluation (UnicodeEncodeError); it is left out, and the warning shows it readably."""
    from fer.data import load_dataset, summarize_dataset

    root = write_image_folder(tmp_path / "fer2013", train=2, test=1)
    happy = root / "train" / "happy"
    source = next(happy.iterdir())
    shutil.copyfile(source, os.path.join(os.fsencode(happy), b"caf\xe9.png"))
    dataset = load_dataset(root)
    assert len(dataset.train) == 14 and all(name.encode() for name in dataset.train.names)
    (warning,) = [w for w in dataset.warnings if "not valid UTF-8" in w]
    assert "caf\ufffd.png" in warning and warning.encode()
    assert any("not valid UTF-8" in w for w in summarize_dataset(root).warnings)
