"""fer-lab: facial expression recognition experiments on FER2013."""

from pathlib import Path

# The canonical FER2013 label order (index = label in the original fer2013.csv).
# Folder datasets list classes alphabetically, so always map by name, never by position.
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASSES)

# FER2013 faces are 48x48 grayscale.
IMAGE_SIZE = 48
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default_model"
