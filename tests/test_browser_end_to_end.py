"""The real thing: `streamlit run streamlit_app.py` driven in headless Chromium.

Launch a 2-epoch run from the Train page, watch its curve on Runs, upload a face on Predict.
Skips where Chromium is not installed (`.ci/run` installs Debian's `chromium`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import wait_until
from synthetic import write_image_folder

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture
def server(tmp_path):
    """A Streamlit server (the benchmarks' helper) on a free loopback port with a tiny dataset and
    empty experiments."""
    from bench.common import StreamlitServer

    data = write_image_folder(tmp_path / "fer2013", train=6, test=2)
    experiments = tmp_path / "experiments"
    server = StreamlitServer({"FER_DATA": str(data), "FER_EXPERIMENTS": str(experiments),
                              "FER_CACHE": str(tmp_path / "cache")}, tmp_path / "server.log")
    try:
        yield server.url, experiments
    finally:
        server.stop()
        from fer.runs import list_runs
        from fer.workers import stop

        for run in list_runs(experiments):
            stop(run.path, wait=10)


@pytest.fixture
def page():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from bench.common import chromium

    playwright, browser = chromium()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
    finally:
        browser.close()
        playwright.stop()


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")


def test_train_watch_and_predict_in_a_real_browser(server, page):
    """A user launches a 2-epoch run, sees its curves on Runs, and gets probabilities for a photo."""
    url, experiments = server
    page.goto(f"{url}/train")
    page.get_by_text("Train a model").wait_for()
    set_number(page, "Epochs", 2)
    set_number(page, "Batch size", 8)
    page.wait_for_timeout(1000)  # let the rerun after the last change finish
    page.get_by_role("button", name="Launch training").click()
    page.get_by_text("Launched run").wait_for()

    runs = wait_until(lambda: [path for path in experiments.iterdir() if (path / "config.json").is_file()]
                      if experiments.exists() else [], 30, "a run folder")
    assert len(runs) == 1
    run_dir = runs[0]
    wait_until(lambda: '"finished"' in (run_dir / "status.json").read_text(), 240,
               "the run to finish", 0.5, run_dir / "train.log")

    page.goto(f"{url}/runs?run={run_dir.name}")
    page.get_by_text(run_dir.name).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.get_by_text("finished").count() > 0

    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    page.goto(f"{url}/predict")
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.get_by_text("Face 1").first.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot").first.wait_for()
    page.wait_for_timeout(500)
    text = page.inner_text("body")
    assert "Traceback" not in text


def test_dataset_view_in_a_real_browser(server, page):
    """The Dataset page on FER_DATA: the distribution chart, a face grid, another split's faces."""
    url, _ = server
    page.goto(f"{url}/dataset")
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_text("Training_").first.wait_for()
    page.locator("button:has-text('Test (PrivateTest)')").first.click()
    page.get_by_text("PrivateTest_").first.wait_for()
    page.wait_for_timeout(500)
    text = page.inner_text("body")
    assert "Traceback" not in text and "Training_" not in text
    assert "angry · 2 in this split" in text

