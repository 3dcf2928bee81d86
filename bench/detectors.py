"""Face detectors compared: BlazeFace (the default) against OpenCV's Haar cascade.

    python -m bench.detectors               # 200 faces per group, 120 timed runs
    python -m bench.detectors --quick       # 20 faces per group, 10 timed runs (smoke test)
    python -m bench.detectors --calibrate   # PublicTest: how BlazeFace boxes sit on FER2013 crops

A labelled set built offline (no downloads), every face with its true centre and size:

* **pasted**: FER2013 PrivateTest faces (``FER_DATA`` or ``--data``; without the data set, the 100
  LFW faces that scikit-image ships) enlarged 4x (192x192) and pasted at a random place on a
  480x360 textured background, as ``bench/reference_accuracy.py`` does;
* **close-up**: a face (192-384 pixels) filling 80-100% of the frame's side;
* **rotated 15/30/45**: pasted faces turned by +/-15, 30 and 45 degrees (half each way);
* **several sizes**: four faces (288, 160, 96 and 64 pixels) on one 1024x768 scene;
* **real photos**: scikit-image's astronaut.png at 256, 512 and 1024 pixels, turned +/-30 degrees,
  a close-up of her face, and a sheet of her face ten times;
* **no face**: 19 of scikit-image's pictures without a person (cat, coffee, rocket, coins, text...):
  only false boxes count.

A detection finds a face when its centre is within 40% of the face's side from the true centre and
its size is 0.4-2x the face's side; every other detection is a false box. Accuracy: the shipped
model (or ``--model``) classifies each found face's 48x48 crop as the Predict page does (a missed
face counts as wrong); the "true box" row crops the pasted square itself (the best any detector
can do). Speed: ``Predictor.predict_image(bytes, detector=...)`` on the astronaut upscaled to
1024x1024 (1.05 MP JPEG, quality 90), both detectors alternating in one process, so that both see
the same load on a shared CPU.

Prints JSON (also written to bench/results/detectors.json); the markdown tables go to stderr and
into the JSON (``tables``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, encode, face_photo, log, percentiles, write_result  # noqa: E402

ROTATIONS = (15, 30, 45)
SEVERAL_SIZES = (288, 160, 96, 64)
# The astronaut's face in skimage's astronaut.png (512x512): centre and side, by hand.
ASTRONAUT_FACE = (226.0, 118.0, 100.0)
NO_FACE_PICTURES = ("chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "coins.png",
                    "horse.png", "motorcycle_left.png", "page.png", "text.png", "brick.png", "grass.png",
                    "gravel.png", "moon.png", "retina.jpg", "ihc.png", "clock_motion.png", "color.png",
                    "logo.png", "chessboard_RGB.png")
MATCH_DISTANCE, MATCH_SIZES = 0.4, (0.4, 2.0)


# ---- the labelled set -----------------------------------------------------------------------------

def texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random gray background (as bench/reference_accuracy.py's photos)."""
    import cv2

    noise = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8))).astype(np.uint8)
    return cv2.resize(cv2.GaussianBlur(noise, (5, 5), 0), (width, height), interpolation=cv2.INTER_CUBIC)


def enlarge(face: np.ndarray, side: int) -> np.ndarray:
    import cv2

    return cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


def pasted(face: np.ndarray, rng: np.random.Generator, side: int = 192) -> tuple[np.ndarray, tuple]:
    canvas = texture(rng, 480, 360)
    y, x = int(rng.integers(0, 360 - side)), int(rng.integers(0, 480 - side))
    canvas[y:y + side, x:x + side] = enlarge(face, side)
    return rgb(canvas), (x + side / 2, y + side / 2, float(side))


def close_up(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    side = int(rng.integers(192, 385))
    frame = int(round(side / rng.uniform(0.8, 1.0)))
    canvas = texture(rng, frame, frame)
    y, x = int(rng.integers(0, frame - side + 1)), int(rng.integers(0, frame - side + 1))
    canvas[y:y + side, x:x + side] = enlarge(face, side)
    return rgb(canvas), (x + side / 2, y + side / 2, float(side))


def rotated(face: np.ndarray, rng: np.random.Generator, angle: float) -> tuple[np.ndarray, tuple]:
    """A pasted face turned by ``angle`` degrees about its centre (the scene turns with it)."""
    import cv2

    image, (cx, cy, side) = pasted(face, rng)
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    turned = cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    return turned, (cx, cy, side)


def several(faces: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[tuple]]:
    """Faces of SEVERAL_SIZES at random places (not overlapping) on a 1024x768 scene."""
    canvas = texture(rng, 1024, 768)
    placed: list[tuple] = []
    for face, side in zip(faces, SEVERAL_SIZES, strict=True):
        for _ in range(1000):
            x, y = int(rng.integers(0, 1024 - side)), int(rng.integers(0, 768 - side))
            if all(x + side + 8 < px or px + ps + 8 < x or y + side + 8 < py or py + ps + 8 < y
                   for px, py, ps in placed):
                break
        placed.append((x, y, side))
        canvas[y:y + side, x:x + side] = enlarge(face, side)
    return rgb(canvas), [(x + s / 2, y + s / 2, float(s)) for x, y, s in placed]


def skimage_picture(name: str) -> np.ndarray:
    import skimage
    from PIL import Image

    return np.asarray(Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB"))


def real_photos() -> list[tuple[str, np.ndarray, list[tuple]]]:
    """(name, RGB picture, true faces) from scikit-image's astronaut.png."""
    import cv2

    photo = skimage_picture("astronaut.png")
    cx, cy, side = ASTRONAUT_FACE
    out = []
    for size in (256, 512, 1024):
        k = size / 512
        picture = face_photo(size) if size != 512 else photo
        out.append((f"astronaut {size}", picture, [(cx * k, cy * k, side * k)]))
    for angle in (30, -30):
        matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        turned = cv2.warpAffine(photo, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT_101)
        out.append((f"astronaut turned {angle:+d}", turned, [(cx, cy, side)]))
    half = int(side * 0.55)
    out.append(("astronaut close-up", np.ascontiguousarray(
        photo[int(cy) - half:int(cy) + half, int(cx) - half:int(cx) + half]), [(half, half, side)]))
    half = int(side * 0.9)
    tile = photo[int(cy) - half:int(cy) + half, int(cx) - half:int(cx) + half]
    step = tile.shape[0]
    sheet = np.full((2 * step, 5 * step, 3), 255, np.uint8)
    faces = []
    for i in range(10):
        row, col = divmod(i, 5)
        sheet[row * step:(row + 1) * step, col * step:(col + 1) * step] = tile
        faces.append((col * step + half, row * step + half, side))
    out.append(("astronaut ten times", sheet, faces))
    return out


def fer_faces(args, count: int, split: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``count`` faces (48x48) and labels from FER2013's ``split`` (seeded random), or the LFW faces
    scikit-image ships (no labels) when the data set is not there."""
    from fer.data import DataError, load_dataset

    try:
        data = load_dataset(args.data or None).split(split)
    except DataError as exc:
        if args.data:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        import cv2
        import skimage

        lfw = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")[:100]
        faces = np.stack([cv2.resize((f * 255).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
                          for f in lfw])
        return faces[np.arange(count) % len(faces)], None, "LFW faces from scikit-image (no FER2013 found)"
    keep = np.random.default_rng(0).choice(len(data.labels), min(count, len(data.labels)), replace=False)
    name = "PrivateTest" if split == "test" else "PublicTest"
    return data.images[keep], data.labels[keep], f"FER2013 {name}"


def labelled_set(faces: np.ndarray, per_group: int) -> list[dict]:
    """Every test picture: {group, image, truth [(cx, cy, side)], face index per truth (or -1)}."""
    rng = np.random.default_rng(1)
    items = []
    n = len(faces)
    for i in range(per_group):
        image, truth = pasted(faces[i % n], rng)
        items.append({"group": "pasted", "image": image, "truth": [truth], "faces": [i % n]})
    for i in range(per_group):
        image, truth = close_up(faces[i % n], rng)
        items.append({"group": "close-up", "image": image, "truth": [truth], "faces": [i % n]})
    for angle in ROTATIONS:
        for i in range(per_group):
            image, truth = rotated(faces[i % n], rng, angle if i % 2 else -angle)
            items.append({"group": f"rotated {angle}", "image": image, "truth": [truth], "faces": [i % n],
                          "angle": angle if i % 2 else -angle})
    for i in range(max(1, per_group // len(SEVERAL_SIZES))):
        chosen = [(i * len(SEVERAL_SIZES) + k) % n for k in range(len(SEVERAL_SIZES))]
        image, truth = several([faces[k] for k in chosen], rng)
        items.append({"group": "several sizes", "image": image, "truth": truth, "faces": chosen})
    for name, image, truth in real_photos():
        items.append({"group": "real photos", "name": name, "image": image, "truth": truth,
                      "faces": [-1] * len(truth)})
    for name in NO_FACE_PICTURES:
        items.append({"group": "no face", "name": name, "image": skimage_picture(name), "truth": [],
                      "faces": []})
    return items


# ---- scoring --------------------------------------------------------------------------------------

def match(found: list, truth: list[tuple]) -> tuple[list[int], int]:
    """For each true face the index of the detection that finds it (-1: missed), and how many
    detections find no face; closest pairs first, one detection per face."""
    pairs = []
    for t, (cx, cy, side) in enumerate(truth):
        for d, face in enumerate(found):
            x, y, w, h = face.box
            size = (w * h) ** 0.5
            distance = np.hypot(x + w / 2 - cx, y + h / 2 - cy) / side
            if distance <= MATCH_DISTANCE and MATCH_SIZES[0] <= size / side <= MATCH_SIZES[1]:
                pairs.append((distance, t, d))
    assigned, used = [-1] * len(truth), set()
    for _, t, d in sorted(pairs):
        if assigned[t] < 0 and d not in used:
            assigned[t] = d
            used.add(d)
    return assigned, len(found) - len(used)


def detect_all(items: list[dict], detector: str) -> list[tuple[list, list[int], int]]:
    from fer.faces import find_faces

    out = []
    for item in items:
        found, used = find_faces(item["image"], detector)
        if used != detector:
            raise SystemExit(f"error: the {detector} detector could not load (fell back to {used})")
        assigned, false = match(found, item["truth"])
        out.append((found, assigned, false))
    return out


def group_names(items: list[dict]) -> list[str]:
    return list(dict.fromkeys(item["group"] for item in items))


def detection_table(items: list[dict], results: dict[str, list]) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for group in group_names(items):
        index = [i for i, item in enumerate(items) if item["group"] == group]
        row = {"pictures": len(index), "faces": sum(len(items[i]["truth"]) for i in index)}
        for name, result in results.items():
            found = sum(sum(a >= 0 for a in result[i][1]) for i in index)
            row[name] = {"found": found, "recall": round(found / row["faces"], 4) if row["faces"] else None,
                         "false_boxes": sum(result[i][2] for i in index)}
        table[group] = row
    return table


def crops(items: list[dict], result: list, align: bool, truth_box: bool = False):
    """(crops, face index, group) of every found FER face (or every true box with ``truth_box``)."""
    from fer.faces import face_crop, rotated_crop

    out = []
    for item, (found, assigned, _) in zip(items, result, strict=True):
        gray = np.asarray(item["image"][..., 0])
        for (cx, cy, side), face_index, detection in zip(item["truth"], item["faces"], assigned, strict=True):
            if face_index < 0:
                continue
            if truth_box:
                crop = rotated_crop(gray, (cx, cy), side, -item.get("angle", 0.0))
            elif detection < 0:
                continue
            else:
                crop = face_crop(gray, found[detection], align)
            out.append((crop, face_index, item["group"]))
    return out


def accuracy_table(items, results, predictor, faces, labels) -> dict[str, dict]:
    """Accuracy of ``predictor`` per group on each detector's crops (missed faces count as wrong)."""
    groups = [g for g in group_names(items) if g not in ("real photos", "no face")]
    totals = {g: sum(len([f for f in item["faces"] if f >= 0]) for item in items if item["group"] == g)
              for g in groups}
    variants = {"true box": crops(items, results["haar"], False, truth_box=True)}
    variants["haar"] = crops(items, results["haar"], False)
    variants["blazeface"] = crops(items, results["blazeface"], True)
    variants["blazeface, not aligned"] = crops(items, results["blazeface"], False)
    table: dict[str, dict] = {g: {} for g in groups}
    for name, rows in variants.items():
        if not rows:
            continue
        predicted = predictor.predict_faces(np.stack([r[0] for r in rows])).argmax(axis=1)
        for group in groups:
            right = [p == labels[f] for p, (_, f, g) in zip(predicted, rows, strict=True) if g == group]
            table[group][name] = {"accuracy": round(sum(right) / totals[group], 4),
                                  "accuracy_found": round(float(np.mean(right)), 4) if right else None}
    return table


def calibrate(items: list[dict], result: list) -> dict:
    """Where BlazeFace's box sits on the pasted square (upright pasted faces only): the medians of
    square side / box side and (square centre - box centre) / box side, vertically."""
    sides, shifts = [], []
    for item, (found, assigned, _) in zip(items, result, strict=True):
        if item["group"] != "pasted":
            continue
        (_, cy, side), detection = item["truth"][0], assigned[0]
        if detection >= 0:
            x, y, w, h = found[detection].box
            sides.append(side / max(w, h))
            shifts.append((cy - (y + h / 2)) / max(w, h))
    return {"faces": len(sides), "crop_side": round(float(np.median(sides)), 3),
            "crop_shift": round(float(np.median(shifts)), 3)}


# ---- speed ----------------------------------------------------------------------------------------

def speed(predictor, runs: int) -> dict:
    """p50/p95 of bytes -> probabilities (and of detection alone) for a 1 MP JPEG with one face,
    the detectors alternating run by run."""
    from fer.faces import DETECTORS, find_faces

    image = face_photo(1024)
    data = encode(image, "JPEG")
    out: dict = {}
    for detector in DETECTORS:
        for _ in range(3):  # warm: model trace, detector load
            predictor.predict_image(data, detector=detector)
    whole = {d: [] for d in DETECTORS}
    detect = {d: [] for d in DETECTORS}
    for _ in range(runs):
        for detector in DETECTORS:
            start = time.perf_counter()
            results = predictor.predict_image(data, detector=detector)
            whole[detector].append(time.perf_counter() - start)
            start = time.perf_counter()
            find_faces(image, detector)
            detect[detector].append(time.perf_counter() - start)
            out.setdefault(detector, {"faces": len(results)})
    for detector in DETECTORS:
        out[detector].update({"bytes_to_probabilities": percentiles(whole[detector]),
                              "detection_only": percentiles(detect[detector])})
    out["photo"] = f"skimage astronaut.png upscaled to 1024x1024, JPEG quality 90 ({len(data)} bytes)"
    return out


# ---- report ---------------------------------------------------------------------------------------

def markdown(detection: dict, accuracy: dict, timing: dict) -> str:
    lines = ["| group | pictures | faces | Haar recall | Haar false boxes | BlazeFace recall "
             "| BlazeFace false boxes |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for group, row in detection.items():
        cells = []
        for name in ("haar", "blazeface"):
            recall = row[name]["recall"]
            cells += ["-" if recall is None else f"{recall:.1%} ({row[name]['found']})",
                      str(row[name]["false_boxes"])]
        lines.append(f"| {group} | {row['pictures']} | {row['faces']} | " + " | ".join(cells) + " |")
    if accuracy:
        names = list(next(iter(accuracy.values())))
        lines += ["", "| accuracy (missed = wrong) | " + " | ".join(names) + " |",
                  "| --- |" + " ---: |" * len(names)]
        for group, row in accuracy.items():
            lines.append(f"| {group} | " + " | ".join(f"{row[n]['accuracy']:.1%}" for n in names) + " |")
    lines += ["", "| 1 MP JPEG, one face | Haar p50 / p95 | BlazeFace p50 / p95 |", "| --- | ---: | ---: |"]
    for key, label in (("bytes_to_probabilities", "bytes -> probabilities"), ("detection_only", "detection")):
        cells = [f"{timing[d][key]['p50_ms']:.1f} / {timing[d][key]['p95_ms']:.1f} ms"
                 for d in ("haar", "blazeface")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detectors", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 faces per group, 10 timed runs")
    parser.add_argument("--faces", type=int, default=200, help="faces per group (default 200)")
    parser.add_argument("--runs", type=int, default=120, help="timed runs per detector (default 120)")
    parser.add_argument("--model", default="", help="a run folder or .keras file (default: shipped)")
    parser.add_argument("--data", default="", help="FER2013 location (default: FER_DATA or data/)")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure BlazeFace's box against the pasted PublicTest squares and stop")
    parser.add_argument("--output", default="")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    per_group, runs = (20, 10) if args.quick else (args.faces, args.runs)
    if per_group < 4 or runs < 1:
        print("error: --faces must be at least 4 and --runs at least 1", file=sys.stderr)
        return 2
    started = time.perf_counter()
    faces, labels, source = fer_faces(args, per_group, "val" if args.calibrate else "test")
    items = labelled_set(faces, per_group)
    log(f"{len(items)} pictures, {sum(len(i['truth']) for i in items)} faces ({source})")
    if args.calibrate:
        result = calibrate(items, detect_all(items, "blazeface"))
        write_result("detectors-calibration", {"quick": args.quick, "faces_from": source, **result},
                     args.output or RESULTS / "detectors-calibration.json")
        return 0
    results = {}
    for detector in ("haar", "blazeface"):
        start = time.perf_counter()
        results[detector] = detect_all(items, detector)
        log(f"{detector}: {time.perf_counter() - start:.1f} s")
    detection = detection_table(items, results)

    from fer.predict import ModelError, Predictor

    try:
        predictor = Predictor.load(args.model or None)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    accuracy = accuracy_table(items, results, predictor, faces, labels) if labels is not None else {}
    timing = speed(predictor, runs)
    table = markdown(detection, accuracy, timing)
    log("\n" + table)
    blaze, haar = timing["blazeface"], timing["haar"]
    targets = {"blazeface_p50_<=15ms": blaze["bytes_to_probabilities"]["p50_ms"] <= 15,
               "blazeface_recall_>=_haar_every_group": all(
                   row["blazeface"]["recall"] >= row["haar"]["recall"]
                   for row in detection.values() if row["faces"])}
    write_result("detectors", {
        "quick": args.quick, "faces_from": source, "faces_per_group": per_group, "runs": runs,
        "model": str(predictor.path), "detection": detection, "accuracy": accuracy, "speed": timing,
        "haar_over_blazeface_p50": round(haar["bytes_to_probabilities"]["p50_ms"]
                                         / blaze["bytes_to_probabilities"]["p50_ms"], 2),
        "targets_met": targets, "tables": table, "seconds": round(time.perf_counter() - started, 1),
        "notes": ["the CPU may be shared with other work: both detectors alternate run by run in one process",
                  f"match: centre within {MATCH_DISTANCE} of the face side, size {MATCH_SIZES[0]}-"
                  f"{MATCH_SIZES[1]}x the side"]}, args.output or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
