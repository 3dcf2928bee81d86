"""Emotions over a video (fer.video, ``python -m fer.video``): frames sampled at a steady rate,
faces followed by the overlap of their boxes, and a sentence, never a traceback, for a file that is
cut short, has no frames, is too big a picture or is not a video. The videos are written here with
``cv2.VideoWriter`` from a real public-domain face (scikit-image's astronaut)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

from fer import CLASSES
from fer.video import COLUMNS, Tracker, VideoError, analyse, frame_at, iou, probe

W, H, FPS = 640, 360, 25


def astronaut_face() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:260, 120:340]


def write_video(path: Path, seconds: float, place, fourcc: str = "mp4v", size=(W, H)) -> Path:
    """``place(i, t)`` -> a list of (x, y, mirrored) for the faces in frame ``i`` (time ``t``)."""
    import cv2

    face = astronaut_face()
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, size)
    for i in range(int(seconds * FPS)):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        for x, y, mirrored in place(i, i / FPS):
            picture = face[:, ::-1] if mirrored else face
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(size[0], x + face.shape[1]), min(size[1], y + face.shape[0])
            if x1 > x0 and y1 > y0:
                frame[y0:y1, x0:x1] = picture[y0 - y:y1 - y, x0 - x:x1 - x]
        out.write(frame)
    out.release()
    return path


@pytest.fixture(scope="module")
def predictor():
    from fer.predict import Predictor

    return Predictor.load()  # the default model


def test_iou_and_a_tracker_that_keeps_numbers_while_boxes_overlap():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0.0
    tracker = Tracker()
    assert tracker.assign([(300, 0, 100, 100), (0, 0, 100, 100)], 0.0) == [2, 1]  # left to right
    assert tracker.assign([(310, 0, 100, 100), (10, 0, 100, 100)], 0.2) == [2, 1]  # followed
    assert tracker.assign([(600, 0, 100, 100)], 0.4) == [3]  # no overlap: a new face
    assert tracker.assign([(15, 0, 100, 100)], 3.0) == [4]  # face 1 unseen for over 2 s: closed


def test_a_moving_face_and_its_mirror_image_are_two_faces_followed_over_time(tmp_path, predictor):
    """One face moves right, a mirrored copy moves left on the other half; both keep their number."""
    video = write_video(tmp_path / "two.mp4", 3.0, lambda i, t: [(10 + 2 * i, 60, False),
                                                                    (400 - 2 * i, 60, True)])
    result = analyse(video, predictor, fps=5)
    frame = pd.DataFrame(result.rows, columns=COLUMNS)
    assert result.sampled == 15 and result.faces == 2 and not result.warnings
    assert sorted(frame["face"].unique()) == [1, 2]
    for number, moves in ((1, 1), (2, -1)):
        xs = frame[frame["face"] == number]["x"].to_numpy()
        assert len(xs) == 15 and (np.sign(np.diff(xs)) == moves).mean() > 0.8, xs
    probabilities = frame[[f"p_{name}" for name in CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert set(frame["top_label"]) <= set(CLASSES)
    assert frame["time_s"].is_monotonic_increasing and frame["time_s"].max() < 3.0


def test_a_face_that_leaves_the_frame_and_comes_back_later_is_a_new_face(tmp_path, predictor):
    def place(i, t):
        return [(100, 60, False)] if t < 1.0 or t >= 3.6 else []

    result = analyse(write_video(tmp_path / "away.mp4", 4.6, place), predictor, fps=5)
    assert sorted({row["face"] for row in result.rows}) == [1, 2]
    assert max(row["time_s"] for row in result.rows if row["face"] == 1) < 1.0


def test_the_frame_viewer_reads_the_frame_at_a_time(tmp_path):
    video = write_video(tmp_path / "one.mp4", 2.0, lambda i, t: [(10 + 4 * i, 60, False)])
    image = frame_at(video, 1.0)
    assert image.size == (W, H) and image.mode == "RGB"


@pytest.mark.parametrize("case", ["not-a-video", "empty", "zero-frames", "huge-resolution", "too-fast"])
def test_a_file_that_cannot_be_analysed_gets_a_sentence(tmp_path, predictor, monkeypatch, case):
    path = tmp_path / "clip.mp4"
    if case == "not-a-video":
        path.write_text("these are not the frames you are looking for\n" * 100)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "zero-frames":
        write_video(path, 0.0, lambda i, t: [])
    else:
        write_video(path, 1.0, lambda i, t: [(10, 60, False)])
    if case == "huge-resolution":
        monkeypatch.setattr("fer.video.MAX_PIXELS", 320 * 240)  # the same check as for a 8K video
    fps = 60.0 if case == "too-fast" else 5.0
    with pytest.raises(VideoError) as error:
        analyse(path, predictor, fps=fps)
    expected = {"not-a-video": "not a video", "empty": "empty", "zero-frames": "",
                "huge-resolution": "640x360 pixels", "too-fast": "sampling rate"}[case]
    assert expected in str(error.value)


def test_a_video_cut_short_is_read_up_to_its_end_with_a_warning_or_refused(tmp_path, predictor):
    video = write_video(tmp_path / "whole.avi", 4.0, lambda i, t: [(10 + 2 * i, 60, False)], fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    try:
        result = analyse(cut, predictor, fps=5)
    except VideoError as exc:
        assert str(exc)  # a sentence, not a traceback
        return
    assert 0 < result.read_s < 4.0 and result.rows
    assert any("cut short" in warning for warning in result.warnings) or probe(cut).duration_s < 4.0


def test_the_cli_writes_a_csv_and_refuses_bad_input_with_exit_code_2(tmp_path):
    video = write_video(tmp_path / "one.webm", 2.0, lambda i, t: [(10 + 2 * i, 60, False)], fourcc="VP80")
    out = tmp_path / "emotions.csv"
    done = run_cli(["fer.video", video, "--fps", "2", "--output", out], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(out)
    assert list(frame.columns) == COLUMNS and len(frame) == 4 and set(frame["face"]) == {1}
    assert "frames/s" in done.stderr
    bad = tmp_path / "notes.mov"
    bad.write_text("hello")
    refused = run_cli(["fer.video", bad], timeout=300)
    assert refused.returncode == 2 and "not a video" in refused.stderr and "Traceback" not in refused.stderr
