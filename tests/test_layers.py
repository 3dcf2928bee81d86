"""The library never imports Streamlit or the pages: ``fer/`` is what the pages, the CLIs and the
workers share, and a worker or a CLI must not need (or start) a dashboard. Every import is read,
at module level and inside functions alike."""

from __future__ import annotations

import ast

import pytest

from fer import PROJECT_ROOT

LIBRARY = sorted((PROJECT_ROOT / "fer").rglob("*.py"))
FORBIDDEN = ("streamlit", "app_pages", "streamlit_app")


def imported(path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_the_library_modules_are_found():
    assert {"predict.py", "runs.py", "train.py", "ui.py"} <= {path.name for path in LIBRARY}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_library_module_imports_streamlit_or_the_pages(path):
    bad = [name for name in imported(path) if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports {bad}: move that code to app_pages/"


def test_the_scan_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("def f():\n    import streamlit as st\n    from app_pages.access import x\n")
    assert imported(source) == ["streamlit", "app_pages.access"]
