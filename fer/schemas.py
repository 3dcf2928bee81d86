"""What each JSON file of a run may hold, as JSON Schemas, and the one check that applies them.

A run folder can be damaged (a crash, a disk error, a hand edit) or written by someone hostile;
every value the pages and workers use from status.json, progress.json and an evaluation's
metrics.json is checked here first. A value that fails is dropped (the rest of the file stays
usable) and named in a problem message. Messages never quote more than a few characters of a value.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from fer.files import load_json

# A time stamp (seconds since 1970) may be this far in the future: clocks of machines sharing an
# experiments folder differ a little; a date far ahead is damage (it would keep a run queued).
CLOCK_SKEW_S = 300
# The largest process id any system hands out (Linux: 2**22; macOS: 99998).
MAX_PID = 2**31 - 1
RUN_STATES = ("created", "queued", "running", "finished", "failed", "stopped", "interrupted")

_TIME = {"type": "number", "minimum": 0}
_OPTIONAL_TIME = {"type": ["number", "null"], "minimum": 0}
_TEXT = {"type": ["string", "null"], "maxLength": 20_000}
_COUNT = {"type": ["integer", "null"], "minimum": 0}
_SHARE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}

STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "state": {"enum": list(RUN_STATES)},
        "pid": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_PID},
        "created": _TIME, "queued": _OPTIONAL_TIME, "started": _OPTIONAL_TIME, "ended": _OPTIONAL_TIME,
        "stop_requested": _OPTIONAL_TIME,
        "training_s": {"type": ["number", "null"], "minimum": 0},
        "error": _TEXT, "note": _TEXT, "phase": _TEXT, "device": _TEXT, "backend": _TEXT,
        "data_source": _TEXT, "val_description": _TEXT, "test_description": _TEXT,
        "epochs_done": {"type": "integer", "minimum": 0},
        "best_epoch": {"type": ["integer", "null"], "minimum": 1},
        "best_val_accuracy": _SHARE, "val_accuracy": _SHARE, "test_accuracy": _SHARE,
        "train_size": _COUNT, "val_size": _COUNT, "test_size": _COUNT,
    },
}
STATUS_TIMES = ("created", "queued", "started", "ended", "stop_requested")

PROGRESS_SCHEMA = {
    "type": "object",
    "properties": {
        "epoch": _COUNT, "epochs": _COUNT, "batch": _COUNT, "batches": _COUNT, "step": _COUNT,
        "phase": _TEXT, "updated": _TIME,
    },
}

# A background evaluation (fer.evaluate): its job.json in the evaluation's folder.
EVAL_JOB_STATES = ("queued", "running", "finished", "failed", "stopped")
EVAL_JOB_SCHEMA = {
    "type": "object",
    "properties": {
        "state": {"enum": list(EVAL_JOB_STATES)},
        "pid": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_PID},
        "queued": _OPTIONAL_TIME, "started": _OPTIONAL_TIME, "predicting": _OPTIONAL_TIME,
        "updated": _OPTIONAL_TIME, "ended": _OPTIONAL_TIME,
        "batch": _COUNT, "batches": _COUNT, "phase": _TEXT, "error": _TEXT,
    },
}
EVAL_JOB_TIMES = ("queued", "started", "predicting", "updated", "ended")

# A model export (fer.export): job.json in the export folder; "results" has one entry per format
# exported so far (kept across exports of other formats).
EXPORT_JOB_STATES = ("queued", "running", "finished", "failed", "stopped")
EXPORT_FORMAT_NAMES = ("keras", "savedmodel", "tflite", "onnx")
_SECONDS = {"type": ["number", "null"], "minimum": 0}
_EXPORT_RESULT = {
    "type": "object",
    "properties": {
        "bytes": _COUNT, "max_abs_diff": {"type": ["number", "null"], "minimum": 0},
        "agreement": _SHARE, "faces": _COUNT, "faces_source": _TEXT, "runtime": _TEXT,
        "export_s": _SECONDS, "verify_s": _SECONDS, "verified": {"type": "boolean"}, "error": _TEXT,
        "model_stamp": _TEXT, "ended": _OPTIONAL_TIME,
    },
}
EXPORT_JOB_SCHEMA = {
    "type": "object",
    "properties": {
        "state": {"enum": list(EXPORT_JOB_STATES)},
        "pid": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_PID},
        "queued": _OPTIONAL_TIME, "started": _OPTIONAL_TIME, "updated": _OPTIONAL_TIME,
        "ended": _OPTIONAL_TIME, "stop_requested": _OPTIONAL_TIME, "phase": _TEXT, "error": _TEXT,
        "step": _COUNT, "steps": _COUNT,
        "formats": {"type": "array", "maxItems": 4, "items": {"enum": list(EXPORT_FORMAT_NAMES)}},
        "results": {"type": "object", "propertyNames": {"enum": list(EXPORT_FORMAT_NAMES)},
                    "additionalProperties": _EXPORT_RESULT},
    },
}
EXPORT_JOB_TIMES = ("queued", "started", "updated", "ended", "stop_requested")

SWEEP_SCHEMA = {
    "type": "object",
    "required": ["study", "trial"],
    "properties": {"study": {"type": "string", "maxLength": 200},
                   "trial": {"type": "integer", "minimum": 0}, "storage": _TEXT},
}

# A user's tags and notes on a run (notes.json): a few short tags and about a page of text. The
# file may hold that text JSON-escaped (up to 12 bytes a character), and nothing larger is read.
MAX_TAGS = 20
TAG_MAX_CHARS = 40
NOTES_MAX_CHARS = 10_000
NOTES_MAX_BYTES = 256 << 10
NOTES_SCHEMA = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "maxItems": MAX_TAGS, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX_CHARS,
                           "pattern": "^[^\\x00-\\x1f\\x7f]+$"}},
        "notes": {"type": "string", "maxLength": NOTES_MAX_CHARS},
        "updated": _TIME,
    },
}

_CLASS_REPORT = {
    "type": "object",
    "properties": {"precision": _SHARE, "recall": _SHARE, "f1-score": _SHARE,
                   "support": {"type": "number", "minimum": 0}},
}
_SPLIT = {
    "type": "object",
    "required": ["accuracy", "n", "confusion_matrix", "report"],
    "properties": {
        "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 0},
        "confusion_matrix": {"type": "array", "maxItems": 64,
                             "items": {"type": "array", "maxItems": 64,
                                       "items": {"type": "integer", "minimum": 0}}},
        # scikit-learn's classification_report: a dict per class and average, and "accuracy".
        "report": {"type": "object",
                   "additionalProperties": {"anyOf": [_CLASS_REPORT, {"type": "number"}]}},
    },
}
METRICS_SCHEMA = {
    "type": "object",
    "required": ["splits"],
    "properties": {
        "splits": {"type": "object", "minProperties": 1, "additionalProperties": False,
                   "properties": {"val": _SPLIT, "test": _SPLIT}},
        "classes": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 64},
        "val_description": _TEXT, "test_description": _TEXT, "tta": _TEXT,
    },
}

_VALIDATORS: dict[int, Draft202012Validator] = {}


def _validator(schema: dict) -> Draft202012Validator:
    key = id(schema)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = Draft202012Validator(schema)
    return _VALIDATORS[key]


def short(value: Any, limit: int = 24) -> str:
    """A value for a message, cut to a few characters (a file's content is never echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _message(file_name: str, error) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "the file"
    kind = error.validator
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{file_name}: {where} is {short(error.instance)}, not a {expected}"
    if kind == "enum":
        choices = ", ".join(error.validator_value)
        return f"{file_name}: {where} is {short(error.instance)}, not one of {choices}"
    if kind == "required":
        return f"{file_name}: {where} has no {error.message.split(' ')[0]}"
    if kind in ("minimum", "maximum"):
        side = "below" if kind == "minimum" else "above"
        return f"{file_name}: {where} is {short(error.instance)}, {side} {error.validator_value}"
    return f"{file_name}: {where} is not valid ({kind})"


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_non_finite(item) for item in value)
    return False


def checked(value: Any, schema: dict, file_name: str,
            times: tuple[str, ...] = ()) -> tuple[dict[str, Any] | None, list[str]]:
    """(the values that passed, problems). A file that is not an object gives (None, [problem]);
    otherwise every top-level key with a problem is dropped from the returned copy.

    ``times`` are keys holding time stamps, which may not lie in the future (beyond clock skew).
    """
    if not isinstance(value, dict):
        return None, [f"{file_name} holds {type(value).__name__}, not a JSON object"]
    problems: list[str] = []
    bad: set[str] = set()
    for error in _validator(schema).iter_errors(value):
        problems.append(_message(file_name, error))
        if error.absolute_path:
            bad.add(str(error.absolute_path[0]))
        elif error.validator == "required":
            bad.add("")  # the file lacks something it must have: nothing of it is usable
    for key, item in value.items():
        if key not in bad and _non_finite(item):
            problems.append(f"{file_name}: {key} is not a finite number")
            bad.add(key)
    now = time.time()
    for key in times:
        stamp = value.get(key)
        if key not in bad and isinstance(stamp, (int, float)) and stamp > now + CLOCK_SKEW_S:
            problems.append(f"{file_name}: {key} lies in the future")
            bad.add(key)
    if "" in bad:
        return None, problems
    return {key: item for key, item in value.items() if key not in bad}, problems


def load_checked(path: Path, schema: dict,
                 times: tuple[str, ...] = ()) -> tuple[dict[str, Any] | None, list[str]]:
    """``checked`` on a JSON file: (None, []) when it does not exist, (None, [why]) when it is not
    a readable regular file of JSON."""
    try:
        raw = load_json(path)
    except FileNotFoundError:
        return None, []
    except OSError as exc:
        return None, [str(exc)]
    return checked(raw, schema, Path(path).name, times)
