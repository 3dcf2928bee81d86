"""Load: 200 prediction requests from 4 parallel sessions against one process.

Two views of the load: the Predict page's prediction path (decode, detect, classify, draw, chart)
run by 4 threads at once on the one cached model, 200 requests (what a server's per-session script
threads do), and 4 AppTest sessions of the Predict page (own session state each) sharing one
process, 40 uploads (AppTest runs one script at a time per process, so those take turns). Prints
the numbers; asserts that every request is answered without an error and that memory stays flat
once the sessions are warm.
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from app_driver import figures, open_page, texts
from fake_runs import fake_run
from PIL import Image

from fer.faces import detect_faces
from fer.runs import experiments_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SESSIONS = 4
REQUESTS = 200
PAGE_REQUESTS = 40  # AppTest runs one script at a time, at ~0.5-1 s each on two busy cores
WARM_UP = 10  # requests per session before the memory baseline
MAX_GROWTH_MB = 100  # after warm-up; a leak of the uploads (~20 kB each) or results would exceed it


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def face_photos(count: int) -> list[bytes]:
    """``count`` different small photos of one face: a cropped astronaut, each with its own number
    written into a corner block (so no two uploads are the same file)."""
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    photo = Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB")
    x, y, w, h = detect_faces(np.asarray(photo.convert("L")))[0]
    cx, cy, side = x + w // 2, y + h // 2, int(w * 2.5)  # a passport-photo framing
    crop = np.array(photo.crop((cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2)))
    photos = []
    for number in range(count):
        crop[:4, :4] = number % 256
        crop[:4, 4:8] = number // 256
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, "PNG")
        photos.append(buffer.getvalue())
    return photos


@pytest.fixture
def model_run(tmp_path, monkeypatch) -> Path:
    from fer.config import TrainConfig
    from fer.models import build_model

    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")

    monkeypatch.setattr("fer.DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    run = fake_run(experiments_dir(), "tiny-model", model=False, evaluation=False)
    build_model(TrainConfig(architecture="mini_xception")).save(run / "model.keras")
    return run


def run_sessions(work, requests: int, warm_up: int,
                 sessions: int = SESSIONS) -> tuple[float, float, float, list[float], list[str]]:
    """Run ``work(session, request)`` for ``requests`` requests over ``sessions`` threads.

    Returns (RSS before, RSS after ``warm_up`` requests per session, RSS at the end, latencies,
    problems).
    """
    per_session = requests // sessions
    warm = threading.Barrier(sessions + 1)
    latencies: list[float] = []
    problems: list[str] = []

    def session(number: int) -> None:
        for i in range(per_session):
            if i == warm_up:
                warm.wait(timeout=300)
            started = time.perf_counter()
            try:
                problem = work(number, number * per_session + i)
            except Exception as exc:  # noqa: BLE001 - any failure is a finding to report
                problem = f"{type(exc).__name__}: {exc}"
            latencies.append(time.perf_counter() - started)
            if problem:
                problems.append(f"session {number} request {i}: {problem}")

    rss_start = rss_mb()
    threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
    for thread in threads:
        thread.start()
    warm.wait(timeout=300)
    rss_warm = rss_mb()
    for thread in threads:
        thread.join()
    return rss_start, rss_warm, rss_mb(), sorted(latencies), problems


def report(what: str, elapsed: float, warm_up: int,
           numbers: tuple[float, float, float, list[float], list[str]]) -> None:
    rss_start, rss_warm, rss_end, latencies, _ = numbers
    count = len(latencies)
    print(f"\n{what}: {count} requests from {SESSIONS} sessions in {elapsed:.1f} s "
          f"({count / elapsed:.1f}/s); latency median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {latencies[int(0.95 * count) - 1] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
          f"RSS {rss_start:.0f} MB at start, {rss_warm:.0f} MB after {SESSIONS * warm_up} requests, "
          f"{rss_end:.0f} MB at the end ({rss_end - rss_warm:+.0f} MB)")


def test_200_predictions_in_4_parallel_threads_share_one_model_safely(model_run):
    """What a Streamlit server does with 4 browser tabs: each session's script thread runs the
    page's prediction path at the same time, on the one cached Predictor. Every request gets the
    same answer as when run alone, and memory stays flat."""
    from fer.faces import read_image
    from fer.predict import Predictor
    from fer.ui import draw_boxes, probability_figure

    predictor = Predictor.load(model_run / "model.keras")
    photos = face_photos(REQUESTS)
    expected = [predictor.predict_image(photo)[0].probabilities for photo in photos[:8]]

    def predict(session: int, request: int) -> str | None:
        image = read_image(photos[request])
        results = predictor.predict_image(image)
        draw_boxes(image, results)
        if len(results) != 1:
            return f"{len(results)} faces"
        probability_figure(results[0].probabilities, title="face")
        if request < 8 and not np.allclose(results[0].probabilities, expected[request], atol=1e-5):
            return "a different answer than alone"
        return None

    began = time.perf_counter()
    numbers = run_sessions(predict, REQUESTS, WARM_UP)
    report("prediction path, 4 parallel threads", time.perf_counter() - began, WARM_UP, numbers)
    rss_start, rss_warm, rss_end, latencies, problems = numbers
    assert not problems, problems[:5]
    assert len(latencies) == REQUESTS
    assert rss_end - rss_warm < MAX_GROWTH_MB


def test_uploads_from_4_sessions_of_the_predict_page_are_each_answered_for_their_own_file(model_run):
    """Four AppTest sessions (own session state each) take turns on one process: AppTest can run one
    script at a time per process, so their runs are serialised; the model cache is shared. Each
    session sees the answer for its own upload, never another session's."""
    photos = face_photos(PAGE_REQUESTS)
    apps = [open_page("predict") for _ in range(SESSIONS)]
    one_at_a_time = threading.Lock()

    def upload(session: int, request: int) -> str | None:
        app = apps[session]
        with one_at_a_time:
            app.file_uploader(key="predict.files").set_value(
                [(f"face-{session}-{request}.png", photos[request], "image/png")]).run()
            if app.exception or app.error:
                return str([e.value for e in (*app.exception, *app.error)])
            charts = figures(app)
            if len(charts) != 1:
                return f"{len(charts)} charts"
            if f"face-{session}-{request}.png" not in " ".join(texts(app.markdown)):
                return "the answer is for another upload"
        return None

    began = time.perf_counter()
    numbers = run_sessions(upload, PAGE_REQUESTS, warm_up=2)
    report("Predict page, 4 AppTest sessions", time.perf_counter() - began, 2, numbers)
    rss_start, rss_warm, rss_end, latencies, problems = numbers
    assert not problems, problems[:5]
    assert len(latencies) == PAGE_REQUESTS
    assert rss_end - rss_warm < MAX_GROWTH_MB
