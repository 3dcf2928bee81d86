"""Test-time augmentation: the views of each face a model sees, whose predictions are averaged."""

from __future__ import annotations

import numpy as np

from fer import IMAGE_SIZE

# Test-time augmentation modes: name -> what the model sees for each face.
TTA_MODES: dict[str, str] = {
    "none": "the face as it is",
    "flip": "the face and its mirror image (2 views)",
    "ten_crop": "ten crops: 4 corners and the centre, and their mirror images (10 views)",
}
# Side of the ten-crop crops before they are resized back to 48x48, for models that were not
# trained on random crops; a model trained with ``crop`` uses that side. Chosen on PublicTest with
# bench/ten_crop_size.py for the shipped model: 40 -> 60.8%, 42 -> 62.0%, 44 -> 62.7%, 46 -> 62.8%.
TEN_CROP_SIZE = 46


def tta_mode(tta: str | None) -> str:
    """``tta`` checked against ``TTA_MODES`` (None means "none")."""
    if tta is None:
        return "none"
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_MODES)}")
    return tta


def ten_crops(faces: np.ndarray, size: int = TEN_CROP_SIZE) -> list[np.ndarray]:
    """Five crops of side ``size`` (corners and centre) resized back to 48x48, then their mirrors."""
    import cv2

    if not 8 <= size <= IMAGE_SIZE:
        raise ValueError(f"ten-crop size must be between 8 and {IMAGE_SIZE}, got {size}")
    last, middle = IMAGE_SIZE - size, (IMAGE_SIZE - size) // 2
    corners = [(0, 0), (0, last), (last, 0), (last, last), (middle, middle)]
    crops = []
    for y, x in corners:
        part = faces[:, y:y + size, x:x + size]
        crops.append(np.stack([cv2.resize(face, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
                               for face in part]) if size != IMAGE_SIZE else part)
    return crops + [crop[:, :, ::-1] for crop in crops]


def tta_views(faces: np.ndarray, mode: str, crop_size: int = TEN_CROP_SIZE) -> list[np.ndarray]:
    """The views of ``faces`` (n, 48, 48) that the model sees for a TTA mode."""
    mode = tta_mode(mode)
    if mode == "flip":
        return [faces, faces[:, :, ::-1]]
    if mode == "ten_crop":
        return ten_crops(faces, crop_size)
    return [faces]


