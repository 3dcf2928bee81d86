"""The app shell: navigation over the four pages, the shared sidebar, and no TensorFlow where
it is not needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from app_driver import APP, no_exception, open_page, texts
from fake_runs import fake_run
from streamlit.testing.v1 import AppTest

from fer import PROJECT_ROOT
from fer.runs import experiments_dir


def test_sidebar_shows_experiments_folder_and_run_count():
    fake_run(experiments_dir(), "one")
    fake_run(experiments_dir(), "two", state="stopped")
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    no_exception(app)
    sidebar = " ".join(texts(app.sidebar.caption))
    assert str(experiments_dir()) in sidebar
    assert "2 runs, 0 training" in sidebar
    assert app.title[0].value == "Train a model"  # the default page


def test_every_page_opens_without_error():
    for page, title in (("train", "Train a model"), ("runs", "Runs"), ("evaluate", "Evaluate a model"),
                        ("predict", "Predict expressions")):
        app = open_page(page)
        no_exception(app)
        assert app.title[0].value == title


def test_train_runs_and_evaluate_pages_never_import_tensorflow(tmp_path):
    """Those pages must stay fast: only Predict may load Keras (checked in a fresh interpreter)."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(PROJECT_ROOT / "tests")!r}, {str(PROJECT_ROOT)!r}]
        from app_driver import open_page
        from fake_runs import fake_run
        from fer.runs import experiments_dir
        fake_run(experiments_dir(), "done")
        for page in ("train", "runs", "evaluate"):
            app = open_page(page)
            assert not app.exception, app.exception
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        assert not loaded, loaded[:5]
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={"FER_EXPERIMENTS": str(tmp_path / "experiments"),
                                 "FER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin",
                                 "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
