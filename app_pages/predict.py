"""Predict: find the faces in photos and show each face's expression probabilities, optionally
beside a second model's, with Grad-CAM heatmaps, and download every prediction as CSV; follow the
faces of a video over time (the Video tab, app_pages/video_view.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app_pages.access import actions_allowed, sign_in_notice
from app_pages.explain_view import (
    explained_classes,
    explanation_choice,
    face_heatmaps,
    load_predictor,
)
from app_pages.video_view import video_section
from fer import CLASSES
from fer.faces import DEFAULT_DETECTOR, DETECTORS
from fer.run_folder import RunFolder
from fer.ui import (
    TTA_TITLES,
    draw_boxes,
    escape_markdown,
    prediction_rows,
    predictions_csv,
    probability_figure,
    upscale,
)

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif"]
COMPARE = "predict.compare"
DETECTOR = "predict.detector"
NO_SECOND_MODEL = ""


@dataclass
class Model:
    """A chosen model: its .keras file, its name on the page and the loaded predictor."""

    path: Path
    label: str
    predictor: Any


def model_file(path: Path) -> Path:
    return RunFolder(path).model_file if path.is_dir() else path


def load(path: Path, label: str) -> Model | None:
    """The model in ``path``, or None after an error message."""
    from fer.predict import ModelError

    path = model_file(path)
    try:
        return Model(path, label, load_predictor(str(path), path.stat().st_mtime))
    except (ModelError, OSError) as exc:
        st.error(f"Could not load the model {label}: {exc}")
        return None


def uploads(video_model: str, tta: str, detector: str) -> list[tuple[str, str, bytes]]:
    """(id, name, bytes) of every uploaded or camera image; none (and no widgets) unless allowed.
    The Video tab analyses a video with ``video_model`` in the background."""
    if not actions_allowed():
        sign_in_notice("upload photos or videos or use the camera")
        return []
    upload_tab, camera_tab, video_tab = st.tabs(["Upload photos", "Camera", "Video"])
    with video_tab:
        video_section(video_model, tta, detector)
    with upload_tab:
        files = st.file_uploader("Photos with faces", type=IMAGE_TYPES, accept_multiple_files=True,
                                 key="predict.files") or []
    with camera_tab:
        photo = None
        if st.toggle("Turn on the camera", key="predict.camera_on"):
            photo = st.camera_input("Take a photo", key="predict.camera")
    images = [(file.file_id, file.name, file.getvalue()) for file in files]
    if photo is not None:
        images.append((photo.file_id, "camera photo", photo.getvalue()))
    return images


def chart_title(label: str, probabilities: np.ndarray, model: Model, comparing: bool) -> str:
    top = int(probabilities.argmax())
    title = f"{label}: {CLASSES[top]} ({probabilities[top]:.0%})"
    # The run's name (the label's part before its details) fits above a chart half as wide.
    return f"{title}<br><sup>{model.label.split(' (')[0]}</sup>" if comparing else title


def show_image(models: list[Model], file_id: str, name: str, data: bytes, tta: str,
               explain: str | None) -> list[dict]:
    """The photo with its faces, each face's probabilities under every model (and heatmaps when
    ``explain`` says what to explain); returns the CSV rows of its predictions."""
    from fer.faces import DetectorError, ImageError, read_image
    from fer.predict import ModelError

    st.markdown(f"#### {escape_markdown(name)}")
    digest = hashlib.sha1(data).hexdigest()
    whole_key = f"predict.whole.{digest}"
    try:
        image = read_image(data)
        results = models[0].predictor.predict_image(
            image, whole_image_if_no_face=st.session_state.get(whole_key, False), tta=tta,
            detector=st.session_state.get(DETECTOR, DEFAULT_DETECTOR))
        faces = np.stack([result.face for result in results]) if results else np.zeros((0, 48, 48))
        # The faces are found once; the second model classifies the same crops.
        probabilities = [np.stack([result.probabilities for result in results]) if results
                         else np.zeros((0, len(CLASSES))),
                         *(model.predictor.predict_faces(faces, tta=tta) for model in models[1:])]
    except (ImageError, ModelError, DetectorError) as exc:
        st.error(f"{escape_markdown(name)}: {escape_markdown(exc)}")
        return []
    comparing = len(models) > 1
    picture, column = st.columns([1, 4] if comparing else [2, 3])
    picture.image(draw_boxes(image, results), width="stretch")
    explained = [explanation(model, faces, probs, explain)
                 for model, probs in zip(models, probabilities, strict=True)]
    with column:
        if not results or results[0].whole_image:
            st.warning(f"No face found in {escape_markdown(name)}.")
            st.checkbox("Classify the whole image", key=whole_key,
                        help="For pictures that are already a cropped face: use the centre square.")
        for index, result in enumerate(results):
            show_face(models, index, result, probabilities, explained, file_id, tta)
    return [row for model, probs in zip(models, probabilities, strict=True)
            for row in prediction_rows(name, results, probs, model.label, tta)]


def explanation(model: Model, faces: np.ndarray, probabilities: np.ndarray, explain: str | None
                ) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """(heatmaps, explained classes) of the faces under ``model``; None when not asked for."""
    if not explain or len(faces) == 0:
        return None
    classes = explained_classes(explain, probabilities.argmax(axis=1))
    maps = face_heatmaps(model.path, faces, classes)
    return None if maps is None else (maps, classes)


def show_face(models: list[Model], index: int, result, probabilities: list[np.ndarray],
              explained: list[tuple[np.ndarray, tuple[int, ...]] | None], file_id: str, tta: str) -> None:
    """One face in one row: its crop, then per model its heatmap (when asked for, drawn at the crop's
    size) and its probability chart."""
    from fer.explain import overlay

    number = index + 1
    label = "whole image" if result.whole_image else f"face {number}"
    comparing = len(models) > 1
    with_maps = any(explained)
    # Per model a heatmap column as wide as the crop's (when heatmaps are on) and a chart column.
    per_model = [1] * with_maps + [2 if comparing else 3]
    columns = st.columns([1, *per_model * len(models)], vertical_alignment="top" if with_maps else "center")
    columns[0].image(upscale(result.face, 144), width="stretch",
                     caption=f"{label}: the 48x48 input the model saw")
    step = len(per_model)
    for slot, (model, probs, heat) in enumerate(zip(models, probabilities, explained, strict=True)):
        row = probs[index]
        chart = columns[1 + slot * step + step - 1]
        if with_maps:
            picture = columns[1 + slot * step]
            if heat is not None:
                maps, classes = heat
                picture.image(overlay(result.face, maps[index]), width="stretch",
                              caption=f"Grad-CAM: what speaks for {CLASSES[classes[index]]}")
        chart.plotly_chart(probability_figure(row, title=chart_title(label, row, model, comparing)),
                           key=f"predict.chart.{model.path}.{file_id}.{number}.{tta}")
    if comparing:
        tops = [CLASSES[int(probs[index].argmax())] for probs in probabilities]
        columns[0].caption(f"Both models: **{tops[0]}**" if tops[0] == tops[1]
                           else f"The models disagree: **{tops[0]}** / **{tops[1]}**")


def second_model(options: dict[str, str], first: str) -> str:
    """The "Compare with" choice: another model's path, or NO_SECOND_MODEL."""
    others = [NO_SECOND_MODEL, *(path for path in options if path != first)]
    if st.session_state.get(COMPARE) not in others:
        st.session_state.pop(COMPARE, None)
    return st.selectbox("Compare with", others, key=COMPARE,
                        format_func=lambda path: options.get(path, "no second model"),
                        help="A second model classifies the same faces; its chart shows beside the "
                             "first model's, e.g. to compare a new run with the shipped model.")


st.title("Predict expressions")
try:
    from fer.default_model import current_default
    from fer.runs import available_models
except ImportError as exc:
    st.error(f"Prediction is not available: {exc}")
    st.stop()

models = available_models()
if notice := current_default().notice:
    st.warning(escape_markdown(notice), icon=":material/swap_horiz:")
if not models:
    st.info("No model yet: train a run (or ship a default model) first.")
    st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:")
    st.stop()

labels = {str(path): label for label, path in models}
choice, options = st.columns([3, 2], vertical_alignment="bottom")
model_path = choice.selectbox("Model", list(labels), format_func=labels.get, key="predict.model")
tta = options.selectbox("Test-time augmentation", list(TTA_TITLES), format_func=TTA_TITLES.get,
                        key="predict.tta",
                        help="Predict several views of each face and average them; slower but usually "
                             "a little more accurate. Mirror: the face and its mirror image. Ten-crop: "
                             "four corner crops and a centre crop, and their mirror images.")
compare_column, detector_column = st.columns([3, 2], vertical_alignment="bottom")
with compare_column:
    compared_path = second_model(labels, model_path)
detector_column.selectbox("Detector", list(DETECTORS), format_func=DETECTORS.get, key=DETECTOR,
                          help="How faces are found. BlazeFace (the default) also finds close-ups and "
                               "tilted faces and levels the eyes in each crop; the Haar cascade is "
                               "OpenCV's classic detector (used when BlazeFace cannot load).")
chosen = [load(Path(model_path), labels[model_path])]
if compared_path:
    chosen.append(load(Path(compared_path), labels[compared_path]))
if any(model is None for model in chosen):
    st.stop()
explain = explanation_choice("predict.gradcam")

images = uploads(model_path, tta, st.session_state.get(DETECTOR, DEFAULT_DETECTOR))
if not images and actions_allowed():
    st.caption("Upload one or more photos, or take one with the camera.")
rows: list[dict] = []
for file_id, name, data in images:
    with st.container(border=True):
        rows += show_image(chosen, file_id, name, data, tta, explain)
if rows:
    st.download_button("Download the predictions (CSV)", predictions_csv(rows), file_name="predictions.csv",
                       mime="text/csv", key="predict.csv", on_click="ignore", icon=":material/download:",
                       help="One row per face and model: the file, the face's number and box (x, y, "
                            "width, height in pixels), each class's probability, the top label, the "
                            "model, the test-time augmentation and the face detector.")
