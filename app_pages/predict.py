"""Predict: find the faces in photos and show each face's expression probabilities."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from fer import CLASSES
from fer.access import actions_allowed, sign_in_notice
from fer.run_folder import RunFolder
from fer.ui import TTA_TITLES, draw_boxes, probability_figure, upscale

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif"]


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def load_predictor(path: str, mtime: float):
    """The loaded model, kept across reruns and sessions; mtime makes a retrained file reload."""
    from fer.predict import Predictor

    return Predictor.load(path)


def model_file(path: Path) -> Path:
    return RunFolder(path).model_file if path.is_dir() else path


def uploads() -> list[tuple[str, str, bytes]]:
    """(id, name, bytes) of every uploaded or camera image; none (and no widgets) unless allowed."""
    if not actions_allowed():
        sign_in_notice("upload photos or use the camera")
        return []
    upload_tab, camera_tab = st.tabs(["Upload photos", "Camera"])
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


def show_image(predictor, model_key: str, file_id: str, name: str, data: bytes, tta: str) -> None:
    from fer.faces import DetectorError, ImageError, read_image
    from fer.predict import ModelError

    st.markdown(f"#### {name}")
    digest = hashlib.sha1(data).hexdigest()
    whole_key = f"predict.whole.{digest}"
    try:
        image = read_image(data)
        results = predictor.predict_image(
            image, whole_image_if_no_face=st.session_state.get(whole_key, False), tta=tta)
    except (ImageError, ModelError, DetectorError) as exc:
        st.error(f"{name}: {exc}")
        return
    picture, faces = st.columns([2, 3])
    picture.image(draw_boxes(image, results), width="stretch")
    with faces:
        if not results or results[0].whole_image:
            st.warning(f"No face found in {name}.")
            st.checkbox("Classify the whole image", key=whole_key,
                        help="For pictures that are already a cropped face: use the centre square.")
        for number, result in enumerate(results, start=1):
            crop, chart = st.columns([1, 3], vertical_alignment="center")
            top = int(result.probabilities.argmax())
            label = "whole image" if result.whole_image else f"face {number}"
            crop.image(upscale(result.face, 144), width=144,
                       caption=f"{label}: the 48x48 input the model saw")
            title = f"{label}: {CLASSES[top]} ({result.probabilities[top]:.0%})"
            chart.plotly_chart(probability_figure(result.probabilities, title=title),
                               key=f"predict.chart.{model_key}.{file_id}.{number}.{tta}")


st.title("Predict expressions")
try:
    from fer.predict import ModelError
    from fer.runs import available_models
except ImportError as exc:
    st.error(f"Prediction is not available: {exc}")
    st.stop()

models = available_models()
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
path = model_file(Path(model_path))
try:
    predictor = load_predictor(str(path), path.stat().st_mtime)
except (ModelError, OSError) as exc:
    st.error(f"Could not load the model: {exc}")
    st.stop()

images = uploads()
if not images and actions_allowed():
    st.caption("Upload one or more photos, or take one with the camera.")
for file_id, name, data in images:
    with st.container(border=True):
        show_image(predictor, str(path), file_id, name, data, tta)
