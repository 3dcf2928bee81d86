"""How long the Dataset page's import of FER2013 takes: the image-folder tar.gz unpacked and checked
(next to plain ``tar xzf`` of the same file), and a 35,887-row fer2013.csv converted to PNG folders.

    python -m bench.dataset_import                 # FER_DATA must be the FER2013 image tar.gz
    python -m bench.dataset_import --archive PATH
    python -m bench.dataset_import --quick         # a tiny synthetic dataset

The fer2013.csv is built from the archive's images (the same 35,887 faces, labels and Usage), since
the original file is rarely at hand; its size is close to the original's 301 MB. The time the page's
script spends itself (saving the upload and starting the import process) is measured separately:
the rest runs in a background process.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import log, temp_dir, write_result
from fer import CLASSES
from fer.data import load_dataset
from fer.dataset_import import import_dataset, list_imports, start_import

USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def write_csv(dataset, path: Path) -> int:
    """fer2013.csv (``emotion,pixels,Usage``) with every face of ``dataset``; returns its rows."""
    rows = 0
    with open(path, "w") as out:
        out.write("emotion,pixels,Usage\n")
        for split, usage in USAGE.items():
            part = dataset.split(split)
            for image, label in zip(part.images, part.labels, strict=True):
                out.write(f"{int(label)},{' '.join(map(str, image.ravel().tolist()))},{usage}\n")
                rows += 1
    return rows


def timed(what: str, function, *args):
    log(what)
    start = time.perf_counter()
    value = function(*args)
    seconds = time.perf_counter() - start
    log(f"{what}: {seconds:.1f} s")
    return value, round(seconds, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dataset_import",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=os.environ.get("FER_DATA") or None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    work = temp_dir("dataset-import-")
    try:
        if args.quick or args.archive is None:
            if not args.quick:
                print("error: give --archive (the FER2013 image tar.gz) or set FER_DATA", file=sys.stderr)
                return 2
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from synthetic import write_archive, write_image_folder

            archive = write_archive(write_image_folder(work / "src", train=20, test=5), work / "tiny.tar.gz")
        else:
            archive = args.archive
        data_dir = work / "data"
        data_dir.mkdir()
        baseline = work / "tar-baseline"
        baseline.mkdir()
        _, tar_seconds = timed("tar xzf (baseline)", subprocess.run,
                               ["tar", "xzf", str(archive), "-C", str(baseline)])
        shutil.rmtree(baseline)
        result, archive_seconds = timed("import the archive", import_dataset, archive, "from_archive",
                                        data_dir)

        dataset = load_dataset(result.target)
        csv = work / "fer2013.csv"
        rows, _ = timed("write fer2013.csv (not part of the import)", write_csv, dataset, csv)
        converted, csv_seconds = timed("import fer2013.csv", import_dataset, csv, "from_csv", data_dir)
        same = all(sorted(map(bytes, load_dataset(converted.target).split(s).images))
                   == sorted(map(bytes, dataset.split(s).images)) for s in USAGE)

        payload = io.BytesIO(archive.read_bytes())
        job, page_seconds = timed("page side: save the upload, start the import", start_import, payload,
                                  archive.name, "from_page", data_dir)
        while list_imports(data_dir)[0][1].get("state") not in ("done", "failed"):
            time.sleep(0.2)

        write_result("dataset_import", {
            "quick": args.quick, "archive": archive.name,
            "archive_mb": round(archive.stat().st_size / 1e6, 1),
            "images": result.images, "classes": list(CLASSES),
            "tar_xzf_s": tar_seconds, "import_archive_s": archive_seconds,
            "csv_rows": rows, "csv_mb": round(csv.stat().st_size / 1e6, 1), "import_csv_s": csv_seconds,
            "csv_pixels_identical_after_conversion": same,
            "page_script_s": page_seconds,
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
