"""Grad-CAM on the Predict and Evaluate pages: a toggle, the class to explain, and heatmaps computed
on demand and cached (fer.explain does the work).

Not a page of its own: the pages call ``explanation_choice``, ``face_heatmaps`` and
``gallery_pictures``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from fer import CLASSES
from fer.run_folder import RunFolder
from fer.ui import upscale

PREDICTED = "predicted class"
TRUE = "true class"
HELP = ("Grad-CAM colours the parts of the face that made the model lean towards a class: red "
        "where they push most towards it, blue where they do not. It uses the model's last "
        "convolutional layer, so the map is coarse (3x3 to 12x12 cells stretched over the face), and "
        "it explains one view of the face (no test-time augmentation).")


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def load_predictor(path: str, mtime: float):
    """The loaded model, kept across reruns and sessions; mtime makes a retrained file reload."""
    from fer.predict import Predictor

    return Predictor.load(path)


@st.cache_resource(max_entries=3, show_spinner=False)
def load_explainer(path: str, mtime: float):
    from fer.explain import GradCam

    return GradCam(load_predictor(path, mtime).model)


@st.cache_data(max_entries=64, show_spinner="Computing Grad-CAM heatmaps…")
def heatmaps(path: str, mtime: float, faces: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """(n, 48, 48) maps in [0, 1] of ``faces`` for ``classes`` (cached by the faces' pixels)."""
    maps, _ = load_explainer(path, mtime).heatmaps(faces, list(classes))
    return maps


def explanation_choice(key: str, true_class: bool = False) -> str | None:
    """The toggle and, when it is on, what to explain: ``PREDICTED``, ``TRUE`` or a class name;
    None while the toggle is off."""
    switch, choice = st.columns([1, 2], vertical_alignment="bottom")
    if not switch.toggle("Grad-CAM heatmaps", key=f"{key}.on", help=HELP):
        return None
    options = [PREDICTED, *([TRUE] if true_class else []), *CLASSES]
    return choice.selectbox("Explain", options, key=f"{key}.class",
                            help="Which class the heatmap explains: each face's predicted class, "
                                 "or one class for every face.")


def explained_classes(choice: str, predicted: np.ndarray, true: np.ndarray | None = None) -> tuple[int, ...]:
    """The class index each face's heatmap explains."""
    if choice == PREDICTED:
        return tuple(int(c) for c in predicted)
    if choice == TRUE and true is not None:
        return tuple(int(c) for c in true)
    return (CLASSES.index(choice),) * len(predicted)


def face_heatmaps(model_file: Path, faces: np.ndarray, classes: tuple[int, ...]) -> np.ndarray | None:
    """The heatmaps of ``faces`` under the model in ``model_file``; None (after a message) when the
    model cannot be explained."""
    from fer.explain import ExplainError
    from fer.predict import ModelError

    try:
        return heatmaps(str(model_file), model_file.stat().st_mtime, np.asarray(faces, dtype=np.uint8),
                        classes)
    except (ExplainError, ModelError, OSError) as exc:
        st.warning(f"No Grad-CAM heatmaps for this model: {exc}")
        return None


def gallery_pictures(key: str, folder: Path, data: dict, shown: np.ndarray,
                     size: int = 96) -> list[np.ndarray]:
    """The Evaluate gallery's pictures of the faces ``shown`` (indices into ``data``, the
    misclassified faces): the faces, or with the Grad-CAM toggle on, their heatmaps over them."""
    from fer.explain import overlay

    faces = np.asarray(data["images"])[shown].reshape(len(shown), 48, 48)
    choice = explanation_choice(key, true_class=True)
    plain = [upscale(face, size) for face in faces]
    if choice is None:
        return plain
    model_file = RunFolder(folder).model_file
    if not model_file.is_file():
        st.caption("Grad-CAM needs this model's model.keras, which is not here.")
        return plain
    classes = explained_classes(choice, np.asarray(data["predicted"])[shown], np.asarray(data["true"])[shown])
    maps = face_heatmaps(model_file, faces, classes)
    if maps is None:
        return plain
    st.caption(f"Heatmaps for the {choice if choice in (PREDICTED, TRUE) else 'class ' + choice} "
               "of each face (red: what speaks most for it).")
    return [overlay(face, heatmap, size) for face, heatmap in zip(faces, maps, strict=True)]
