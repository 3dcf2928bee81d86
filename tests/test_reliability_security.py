"""What the app's code may never do with files: unpickle, or load a model outside Keras' safe mode.

A source scan of the app (fer/, app_pages/, streamlit_app.py), so a new loader that slips in
fails here; tests/test_predict.py checks that a Lambda-layer .keras file is refused at run time.
"""

from __future__ import annotations

import re

import pytest

from fer import PROJECT_ROOT

APP_SOURCES = sorted([*(PROJECT_ROOT / "fer").rglob("*.py"), *(PROJECT_ROOT / "app_pages").rglob("*.py"),
                      PROJECT_ROOT / "streamlit_app.py"])
UNSAFE = {
    r"\bimport\s+(c?pickle|dill|joblib|shelve|marshal)\b": "a pickle-style deserialiser",
    r"\bfrom\s+(c?pickle|dill|joblib|shelve|marshal)\b": "a pickle-style deserialiser",
    r"allow_pickle\s*=\s*True": "numpy with pickles allowed",
    r"\btorch\.load\(": "torch.load (pickle)",
    r"\bpd\.read_pickle\(|\.read_pickle\(": "pandas.read_pickle",
    r"\byaml\.load\(": "yaml.load without a safe loader",
    r"\beval\(|\bexec\(": "eval/exec",
}


def calls(source: str, name: str) -> list[str]:
    """The text of every ``name(...)`` call in ``source`` (balanced parentheses)."""
    found = []
    for match in re.finditer(re.escape(name) + r"\(", source):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0:
                break
        found.append(source[match.start():end + 1])
    return found


def test_the_app_sources_are_found():
    names = {path.name for path in APP_SOURCES}
    assert {"predict.py", "runs.py", "train.py", "streamlit_app.py"} <= names


@pytest.mark.parametrize("path", APP_SOURCES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_pickle_or_code_execution_from_files(path):
    source = path.read_text()
    for pattern, what in UNSAFE.items():
        assert not re.search(pattern, source), f"{path.name} uses {what}"


@pytest.mark.parametrize("path", APP_SOURCES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_model_load_uses_safe_mode_and_every_npz_load_refuses_pickles(path):
    source = path.read_text()
    for call in calls(source, "load_model"):
        assert "safe_mode=True" in call, f"{path.name}: {call}"
    for call in calls(source, "np.load"):
        assert "allow_pickle=False" in call, f"{path.name}: {call}"
    assert "safe_mode=False" not in source and "enable_unsafe_deserialization" not in source


def test_the_scan_would_catch_an_unsafe_loader():
    """The checks above are not vacuous: they flag the patterns they look for."""
    bad = "import pickle\nmodel = keras.saving.load_model(p, compile=False)\nnp.load(f)\n"
    assert any(re.search(pattern, bad) for pattern in UNSAFE)
    assert calls(bad, "load_model") == ["load_model(p, compile=False)"]
    assert calls(bad, "np.load") == ["np.load(f)"]
