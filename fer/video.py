"""Emotions over a video: frames sampled at a steady rate, faces found and followed from frame to
frame (face 1, face 2, ... by the overlap of their boxes), each face's seven probabilities per
sampled frame.

    python -m fer.video clip.mp4 [--fps 5] [--model RUN] [--tta flip] [--output emotions.csv]

OpenCV's ``VideoCapture`` reads the file (its wheel includes FFmpeg: mp4, avi, mov, webm and
more); nothing is downloaded. A file that is not a video, has no frames, is larger or longer than
the caps, or has a huge resolution is refused with a sentence (``VideoError``, exit code 2); a file
cut short is read up to where it ends, with a warning. The frames are read in order and the ones
at or after each sampling time kept, which works for files whose frame count or seeking is unreliable
(webm, a truncated mp4).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer import CLASSES

VIDEO_TYPES = ("mp4", "avi", "mov", "webm", "mkv", "m4v")
MAX_VIDEO_BYTES = 500 << 20
MAX_DURATION_S = 20 * 60.0
MAX_PIXELS = 3840 * 2160  # 4K; a larger frame is refused before any is decoded
DEFAULT_FPS = 5.0
MIN_FPS, MAX_FPS = 0.1, 30.0
# A face in a sampled frame continues a track when its box overlaps the track's last box at least
# this much (intersection over union), and a track not seen for this long is closed.
MATCH_IOU = 0.3
TRACK_GAP_S = 2.0
COLUMNS = ["time_s", "frame", "face", "x", "y", "width", "height", *[f"p_{name}" for name in CLASSES],
           "top_label"]


class VideoError(ValueError):
    """A video that is not read; the message says why in a sentence."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # frames per second the file declares
    frames: int  # the frame count it declares (0 when it does not say)

    @property
    def duration_s(self) -> float | None:
        return self.frames / self.fps if self.frames > 0 and self.fps > 0 else None


@dataclass
class VideoResult:
    info: VideoInfo
    sample_fps: float
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per face per sampled frame
    sampled: int = 0  # sampled frames
    read_s: float = 0.0  # the video time reached
    seconds: float = 0.0  # wall time of the analysis
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def faces(self) -> int:
        return len({row["face"] for row in self.rows})


def _open(path: Path):
    import cv2

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path.name} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(f"{path.name} is empty")
    if size > MAX_VIDEO_BYTES:
        raise VideoError(f"{path.name} is {size / 1e6:,.0f} MB; videos of up to {MAX_VIDEO_BYTES >> 20} MB "
                         "are read")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path.name} is not a video that can be read (mp4, avi, mov or webm)")
    return capture


def probe(path: Path) -> VideoInfo:
    """The video's size, frame rate and frame count, checked against the caps; a VideoError for a
    file that is not a readable video, has no frames, or is too large, long or big a picture."""
    import cv2

    capture = _open(path)
    try:
        info = VideoInfo(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                         float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
                         int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        if info.width <= 0 or info.height <= 0:
            raise VideoError(f"{Path(path).name} has no picture (no video stream)")
        if info.width * info.height > MAX_PIXELS:
            raise VideoError(f"{Path(path).name} is {info.width}x{info.height} pixels; videos up to 4K "
                             "(3840x2160) are read")
        if info.duration_s is not None and info.duration_s > MAX_DURATION_S:
            raise VideoError(f"{Path(path).name} lasts {info.duration_s / 60:.0f} minutes; videos of up to "
                             f"{MAX_DURATION_S / 60:.0f} minutes are read (cut it first)")
        ok, _ = capture.read()
        if not ok:
            raise VideoError(f"{Path(path).name} has no frame that can be decoded")
        return info
    finally:
        capture.release()


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    width = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = width * height
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class Tracker:
    """Face numbers that follow the faces: each box of a frame takes the number of the open track
    it overlaps most (at least ``MATCH_IOU``; each track once per frame), else a new number (new
    faces of one frame numbered from left to right)."""

    def __init__(self) -> None:
        self.tracks: dict[int, tuple[tuple[int, int, int, int], float]] = {}  # number -> (box, last seen)
        self.next = 1

    def assign(self, boxes: list[tuple[int, int, int, int]], when: float) -> list[int]:
        self.tracks = {n: t for n, t in self.tracks.items() if when - t[1] <= TRACK_GAP_S}
        pairs = sorted(((iou(box, track[0]), i, n) for i, box in enumerate(boxes)
                        for n, track in self.tracks.items()), reverse=True)
        numbers: dict[int, int] = {}
        taken: set[int] = set()
        for overlap, i, n in pairs:
            if overlap < MATCH_IOU:
                break
            if i not in numbers and n not in taken:
                numbers[i], _ = n, taken.add(n)
        for i in sorted((i for i in range(len(boxes)) if i not in numbers), key=lambda i: boxes[i][:2]):
            numbers[i] = self.next  # new faces are numbered from left to right
            self.next += 1
        for i, box in enumerate(boxes):
            self.tracks[numbers[i]] = (box, when)
        return [numbers[i] for i in range(len(boxes))]


def analyse(path: Path, predictor, fps: float = DEFAULT_FPS, tta: str = "none", detector: str | None = None,
            progress: Callable[[float, float], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> VideoResult:
    """Sample ``fps`` frames a second of the video at ``path``, find and follow its faces and give
    each one's probabilities (``predictor``: a ``fer.predict.Predictor``). ``progress(done, total)``
    is called with seconds of video; ``should_stop()`` ends the analysis early (what was read is
    kept, ``stopped`` set)."""
    import cv2
    from PIL import Image

    from fer.faces import DEFAULT_DETECTOR

    if not MIN_FPS <= float(fps) <= MAX_FPS:
        raise VideoError(f"the sampling rate must be from {MIN_FPS:g} to {MAX_FPS:g} frames a second")
    info = probe(path)
    result = VideoResult(info, float(fps))
    started = time.perf_counter()
    capture = _open(path)
    tracker = Tracker()
    step = 1.0 / float(fps)
    next_time, index = 0.0, -1
    file_fps = info.fps if info.fps > 0 else 25.0
    try:
        while True:
            if should_stop is not None and should_stop():
                result.stopped = True
                break
            ok, frame = capture.read()
            if not ok:
                break
            index += 1
            when = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if info.fps <= 0 else index / file_fps
            result.read_s = when
            if when + 1e-6 < next_time:
                continue
            next_time += step * max(1, int((when - next_time) // step) + 1)
            if when > MAX_DURATION_S:
                result.warnings.append(f"only the first {MAX_DURATION_S / 60:.0f} minutes were read")
                break
            image = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            faces = predictor.predict_image(image, tta=tta, detector=detector or DEFAULT_DETECTOR)
            numbers = tracker.assign([face.box for face in faces], when)
            for number, face in sorted(zip(numbers, faces, strict=True), key=lambda pair: pair[0]):
                x, y, w, h = (int(v) for v in face.box)
                row = {"time_s": round(when, 3), "frame": index, "face": number, "x": x, "y": y,
                       "width": w, "height": h}
                row.update({f"p_{name}": float(p)
                            for name, p in zip(CLASSES, face.probabilities, strict=True)})
                row["top_label"] = CLASSES[int(np.argmax(face.probabilities))]
                result.rows.append(row)
            result.sampled += 1
            if progress is not None:
                progress(when, info.duration_s or when)
    finally:
        capture.release()
    if result.sampled == 0 and not result.stopped:
        raise VideoError(f"{Path(path).name} has no frame that can be decoded")
    expected = info.duration_s
    if expected and not result.stopped and result.read_s + 2.0 / file_fps < expected - 0.5:
        result.warnings.append(f"the video ends after {result.read_s:.1f} s although it declares "
                               f"{expected:.1f} s: the file may be cut short")
    result.seconds = time.perf_counter() - started
    return result


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV: time, frame, face, box, seven probabilities, top label."""
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False, float_format="%.4f")


def frame_at(path: Path, seconds: float):
    """The RGB frame (a PIL image) shown at ``seconds`` into the video (the last before it)."""
    import cv2
    from PIL import Image

    capture = _open(path)
    try:
        capture.set(cv2.CAP_PROP_POS_MSEC, max(0.0, float(seconds)) * 1000.0)
        ok, frame = capture.read()
        if not ok:
            raise VideoError(f"no frame at {seconds:.1f} s")
        return Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()


# ---- analyses in the background (the Predict page) ------------------------------------------

JOB_FILE, RESULT_FILE, STOP_FILE, LOG_FILE = "job.json", "emotions.csv", "stop-requested", "log.txt"
JOB_ACTIVE = ("queued", "running")
JOB_START_GRACE_S = 120.0  # a started process may take this long to say it runs (imports a backend)


def jobs_dir() -> Path:
    from fer.data import cache_dir

    return cache_dir() / "videos"


def job_folder(job_id: str) -> Path:
    """The folder of job ``job_id`` (a ValueError for an id that could name anything else)."""
    import re

    if not isinstance(job_id, str) or not re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}", job_id):
        raise ValueError(f"invalid video job id {str(job_id)[:40]!r}")
    return jobs_dir() / job_id


def start_job(data: bytes, filename: str, model: str, fps: float, tta: str, detector: str) -> str:
    """Save an uploaded video in a new job folder and analyse it in a background process; the
    job's id. A VideoError for a file that is refused at once (too large, unknown type)."""
    import os
    import secrets
    import subprocess

    from fer import PROJECT_ROOT
    from fer.files import write_json_atomic

    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix not in VIDEO_TYPES:
        raise VideoError(f"{filename} is not a video file this page reads ({', '.join(VIDEO_TYPES)})")
    if len(data) > MAX_VIDEO_BYTES:
        raise VideoError(f"the video is {len(data) / 1e6:,.0f} MB; up to {MAX_VIDEO_BYTES >> 20} MB are read")
    if not MIN_FPS <= float(fps) <= MAX_FPS:
        raise VideoError(f"the sampling rate must be from {MIN_FPS:g} to {MAX_FPS:g} frames a second")
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    folder = job_folder(job_id)
    folder.mkdir(parents=True)
    try:
        (folder / f"video.{suffix}").write_bytes(data)
        write_json_atomic(folder / JOB_FILE, {"state": "queued", "file": Path(filename).name,
                                              "model": model, "fps": float(fps), "tta": tta,
                                              "detector": detector, "queued": time.time(),
                                              "done_s": 0.0, "total_s": None})
        with open(folder / LOG_FILE, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "fer.video", "--job", str(folder)],
                                       cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except OSError:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        raise
    import threading

    threading.Thread(target=process.wait, daemon=True).start()  # no zombie in a long-lived server
    _update(folder, pid=process.pid)
    return job_id


def _update(folder: Path, **values) -> None:
    from fer.files import write_json_atomic

    write_json_atomic(folder / JOB_FILE, {**read_job(folder, raw=True), **values})


def _alive(pid: Any) -> bool:
    import os

    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"fer.video" in handle.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def read_job(folder: Path, raw: bool = False) -> dict[str, Any]:
    """The job's state: queued, running, finished, failed, stopped, or interrupted (its process is
    gone without saying how it ended); {} for a folder without a readable job file."""
    from fer.files import FileProblem, load_json

    try:
        job = load_json(Path(folder) / JOB_FILE)
    except (OSError, FileProblem):
        return {}
    if not isinstance(job, dict):
        return {}
    if raw:
        return job
    if job.get("state") in JOB_ACTIVE and not _alive(job.get("pid")):
        queued = job.get("queued") if isinstance(job.get("queued"), int | float) else 0
        if job.get("pid") is not None or time.time() - queued > JOB_START_GRACE_S:
            job = {**job, "state": "interrupted",
                   "error": "the analysis ended unexpectedly (its process is gone)"}
    return job


def stop_job(folder: Path) -> bool:
    """Ask a running analysis to stop (it keeps what it read); False when it was not running."""
    import os
    import signal

    job = read_job(folder)
    if job.get("state") not in JOB_ACTIVE:
        return False
    (Path(folder) / STOP_FILE).touch()
    if _alive(job.get("pid")):
        with contextlib.suppress(OSError):
            os.kill(job["pid"], signal.SIGTERM)
    return True


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """The rows a job wrote (its CSV), [] when there are none."""
    import pandas as pd

    path = Path(folder) / RESULT_FILE
    if not path.is_file() or path.stat().st_size > 64 << 20:
        return []
    try:
        return pd.read_csv(path).to_dict("records")
    except (OSError, ValueError, pd.errors.ParserError):
        return []


def video_file(folder: Path) -> Path | None:
    found = [path for path in Path(folder).glob("video.*") if path.suffix.lstrip(".") in VIDEO_TYPES]
    return found[0] if found else None


def run_job(folder: Path) -> int:
    """The background process of a job: analyse its video, writing progress, the CSV and the end."""
    import signal
    import threading

    from fer.predict import ModelError, Predictor

    folder = Path(folder)
    job = read_job(folder, raw=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _update(folder, state="running", started=time.time())
    last = [0.0]

    def progress(done: float, total: float) -> None:
        if time.monotonic() - last[0] > 0.5:
            _update(folder, done_s=round(done, 2), total_s=round(total, 2))
            last[0] = time.monotonic()

    def should_stop() -> bool:
        return stop.is_set() or (folder / STOP_FILE).exists()

    try:
        video = video_file(folder)
        if video is None:
            raise VideoError("the uploaded video is missing")
        predictor = Predictor.load(job.get("model") or None)
        result = analyse(video, predictor, float(job.get("fps") or DEFAULT_FPS),
                         str(job.get("tta") or "none"), job.get("detector") or None, progress=progress,
                         should_stop=should_stop)
    except (VideoError, ModelError, ValueError, OSError) as exc:
        _update(folder, state="failed", ended=time.time(), error=str(exc))
        print(f"error: {exc}", flush=True)
        return 2
    (folder / RESULT_FILE).write_text(rows_csv(result.rows))
    _update(folder, state="stopped" if result.stopped else "finished", ended=time.time(),
            done_s=result.read_s, total_s=result.info.duration_s or result.read_s,
            sampled=result.sampled, faces=result.faces, warnings=result.warnings,
            seconds=round(result.seconds, 2), width=result.info.width, height=result.info.height)
    print(f"[fer] {result.sampled} frames, {result.faces} face(s), {result.seconds:.1f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer.video", description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", help=f"a video file ({', '.join(VIDEO_TYPES)})")
    parser.add_argument("--job", default="", help=argparse.SUPPRESS)  # the Predict page's background job
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS,
                        help=f"frames sampled per second of video ({MIN_FPS:g}-{MAX_FPS:g}, "
                             f"default {DEFAULT_FPS:g})")
    parser.add_argument("--model", default="",
                        help="a run folder, model.keras or ensemble (default: the default model)")
    parser.add_argument("--tta", default="none", help="test-time augmentation: none, flip or ten_crop")
    parser.add_argument("--detector", default="", help="face detector: blazeface (default) or haar")
    parser.add_argument("--output", default="", help="write the CSV here (default: print it)")
    args = parser.parse_args(argv)
    if args.job:
        return run_job(Path(args.job))
    if not args.video:
        parser.error("give a video file")

    from fer.predict import ModelError, Predictor
    from fer.tta import TTA_MODES

    if args.tta not in TTA_MODES:
        parser.error(f"--tta {args.tta!r} is unknown; use {', '.join(TTA_MODES)}")
    try:
        predictor = Predictor.load(args.model or None)
        result = analyse(Path(args.video), predictor, args.fps, args.tta, args.detector or None,
                         progress=lambda done, total: print(f"[fer] {done:.1f} / {total:.1f} s",
                                                            file=sys.stderr, flush=True))
    except (VideoError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    text = rows_csv(result.rows)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    rate = result.sampled / max(result.seconds, 1e-9)
    print(f"[fer] {result.sampled} frames sampled at {result.sample_fps:g}/s, {result.faces} face(s), "
          f"{len(result.rows)} rows in {result.seconds:.1f} s ({rate:.1f} frames/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
