"""The Predict page's Video tab: a video analysed in the background with progress and Stop, then
each face's probabilities over time, a frame viewer and the CSV; signed-out visitors get no upload.
The video is written here from a real face photo (tests/test_video.py's writer)."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from app_driver import figures, no_exception, open_page, texts
from helpers import wait_until
from test_access import SIGNED_OUT, open_as
from test_video import write_video

from fer.video import COLUMNS, jobs_dir, read_job

pytestmark = pytest.mark.slow


def the_job():
    jobs = sorted(jobs_dir().iterdir()) if jobs_dir().is_dir() else []
    return jobs[-1] if jobs else None


def analyse_on_the_page(app, video, fps: float):
    app.file_uploader(key="predict.video").set_value((video.name, video.read_bytes(), "video/mp4")).run()
    app.number_input(key="predict.video.fps").set_value(fps).run()
    next(b for b in app.button if b.label == "Analyse the video").click().run()
    no_exception(app)
    assert not app.error, texts(app.error)
    wait_until(the_job, 30, "the video job folder")
    return the_job()


def test_a_video_is_analysed_in_the_background_and_shown_over_time(tmp_path):
    video = write_video(tmp_path / "walk.mp4", 2.0, lambda i, t: [(10 + 4 * i, 60, False)])
    app = open_page("predict")
    folder = analyse_on_the_page(app, video, 4.0)
    wait_until(lambda: read_job(folder).get("state") not in ("queued", "running"), 240,
               "the analysis to end", poll=0.5, log=folder / "log.txt")
    assert read_job(folder)["state"] == "finished", (folder / "log.txt").read_text()[-3000:]
    app.run()
    no_exception(app)
    (timeline,) = [f for f in figures(app) if "over time" in f.layout.title.text]
    assert timeline.layout.title.text.startswith("Face 1") and len(timeline.data) == 7
    assert any("8 frames sampled at 4 a second, 1 face(s)" in text for text in texts(app.caption))
    assert app.get("image") and app.select_slider(key=f"predict.video.time.{folder.name}").value == 0.0
    app.select_slider(key=f"predict.video.time.{folder.name}").set_value(1.0).run()
    no_exception(app)
    csv = pd.read_csv(folder / "emotions.csv")
    assert list(csv.columns) == COLUMNS and len(csv) == 8


def test_stop_ends_a_long_analysis_and_keeps_what_it_read(tmp_path):
    video = write_video(tmp_path / "long.mp4", 30.0, lambda i, t: [(10 + (i % 200), 60, False)])
    app = open_page("predict")
    folder = analyse_on_the_page(app, video, 10.0)
    wait_until(lambda: (read_job(folder).get("done_s") or 0) > 0, 240, "the analysis to start",
               poll=0.5, log=folder / "log.txt")
    app.run()
    next(b for b in app.button if b.label == "Stop").click().run()
    wait_until(lambda: read_job(folder).get("state") == "stopped", 60, "the analysis to stop", poll=0.2,
               log=folder / "log.txt")
    job = read_job(folder)
    assert 0 < job["done_s"] < 30.0
    app.run()
    no_exception(app)
    assert any("was stopped" in text for text in texts(app.info))


def test_a_file_that_is_not_a_video_is_a_message(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    app = open_page("predict")
    folder = analyse_on_the_page(app, bad, 5.0)
    wait_until(lambda: read_job(folder).get("state") not in ("queued", "running"), 240, "the job to end",
               poll=0.5, log=folder / "log.txt")
    time.sleep(0.1)
    app.run()
    no_exception(app)
    assert any("failed" in text and "not a video" in text for text in texts(app.error))


def test_signed_out_visitors_get_no_video_upload():
    app = open_as("predict", auth=True, user=SIGNED_OUT)
    no_exception(app)
    assert not [u for u in app.get("file_uploader") if getattr(u, "key", None) == "predict.video"]
