"""The real thing: `streamlit run streamlit_app.py` driven in headless Chromium.

One user journey on one server: launch a 2-epoch run from the Train page, watch its curves on Runs
(with the curve controls), tag and annotate it on Compare (whose parallel-coordinates chart draws it),
clone its settings into Train, look at the dataset, and upload a face on Predict with its Grad-CAM
heatmap. The Evaluate page's part of the journey (a confusion-matrix cell click filters the gallery)
is tests/test_browser_evaluate.py, on fake evaluated runs, so nothing evaluates here.
Skips where Chromium is not installed (`.ci/run` installs Debian's `chromium`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import wait_until
from synthetic import write_image_folder

from fer.run_folder import RunFolder

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


def body_text(page) -> str:
    """The page's text once the script has finished its rerun."""
    from bench.common import wait_idle

    wait_idle(page, 60_000)
    text = page.inner_text("body")
    assert "Traceback" not in text
    return text


def test_train_compare_clone_dataset_and_predict_in_a_real_browser(server, page):
    """A user launches a 2-epoch run, sees its curves on Runs, tags it on Compare, clones its
    settings into Train, browses the dataset and gets probabilities and a heatmap for a photo."""
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
    run_id = run_dir.name
    wait_until(lambda: '"finished"' in (run_dir / "status.json").read_text(), 240,
               "the run to finish", 0.5, run_dir / "train.log")

    # Runs: the card's curves, redrawn over training time on a log scale.
    page.goto(f"{url}/runs?run={run_id}")
    page.get_by_text(run_id).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.get_by_text("finished").count() > 0
    page.get_by_role("radio", name="Training time").click()
    page.get_by_text("Log scale").click()
    page.locator(".js-plotly-plot .xtitle").filter(has_text="training time (min)").first.wait_for()
    body_text(page)
    assert page.get_by_role("radio", name="Training time").is_checked()
    assert page.get_by_role("switch", name="Log scale").is_checked()

    # Compare: the run on the parallel-coordinates chart; a new tag and a note, saved and shown.
    page.goto(f"{url}/compare?run={run_id}")
    page.locator(".js-plotly-plot .parcoords").first.wait_for()
    tags = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Tags").last  # the editor's
    tags.locator("input").click()
    tags.locator("input").fill("journey")
    tags.locator("input").press("Enter")
    page.locator("textarea[aria-label='Notes']").fill("two epochs on the tiny set")
    page.get_by_role("button", name="Save tags and notes").click()
    page.get_by_text(f"Saved the tags and notes of run {run_id}").wait_for()
    notes = RunFolder(run_dir).read_notes()
    assert list(notes.tags) == ["journey"] and notes.text == "two epochs on the tiny set"

    # Its Runs card shows them, and clones its settings into the Train form.
    page.goto(f"{url}/runs?run={run_id}")
    page.get_by_text("two epochs on the tiny set").wait_for()
    assert "journey" in body_text(page)
    page.get_by_role("button", name="Clone settings into Train").first.click()
    page.get_by_text(f"Settings from run {run_id}").wait_for()
    # The form's widgets take the cloned values on the rerun that follows (later on a busy CPU).
    from playwright.sync_api import expect

    expect(page.get_by_label("Epochs", exact=True)).to_have_value("2", timeout=60_000)
    expect(page.get_by_label("Batch size", exact=True)).to_have_value("8", timeout=60_000)

    # Dataset: the distribution chart, the training split's faces, another split's.
    page.goto(f"{url}/dataset")
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_text("Training_").first.wait_for()
    assert "angry · 6 in this split" in body_text(page)
    page.locator("button:has-text('Test (PrivateTest)')").first.click()
    page.get_by_text("PrivateTest_").first.wait_for()
    page.wait_for_function("() => !document.body.innerText.includes('Training_')")  # stale faces gone
    assert "angry · 2 in this split" in body_text(page)

    # Predict: probabilities for the astronaut's face, then its Grad-CAM heatmap.
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the test photo")
    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    page.goto(f"{url}/predict")
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.get_by_text("Face 1").first.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot").first.wait_for()
    body_text(page)
    page.get_by_text("Grad-CAM heatmaps").click()
    page.get_by_text("Grad-CAM: what speaks for").first.wait_for(timeout=120_000)
    body_text(page)
    page.wait_for_function(  # the heatmap picture above that caption has loaded
        "() => [...document.querySelectorAll('[data-testid=\"stImage\"]')].some(figure =>"
        " figure.innerText.includes('Grad-CAM: what speaks for') &&"
        " [...figure.querySelectorAll('img')].some(img => img.complete && img.naturalWidth > 0))")
