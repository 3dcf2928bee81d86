"""The Evaluate page in headless Chromium: a click on a confusion-matrix cell filters the gallery
(plotly heatmaps take no clicks in Streamlit; the page's invisible cell points must), and the
comparison with a second model. The Evaluate step of the browser user journey
(tests/test_browser_end_to_end.py), on fake evaluated runs so that nothing trains or evaluates
here. Skips where Chromium or playwright is missing."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from fake_runs import fake_run, fake_split

from fer.evaluate import write_evaluation

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


def test_clicking_a_cell_filters_the_gallery_and_a_second_model_compares(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from bench.common import StreamlitServer, chromium, wait_idle

    experiments = tmp_path / "experiments"
    fake_run(experiments, "evaluated", created=2000)
    other = fake_run(experiments, "other", created=1000)
    val, val_probs = fake_split(30, seed=5)
    test, test_probs = fake_split(30, seed=6)
    write_evaluation(other / "eval", {"val": val, "test": test}, {"val": val_probs, "test": test_probs})
    server = StreamlitServer({"FER_EXPERIMENTS": str(experiments), "FER_CACHE": str(tmp_path / "cache")},
                             tmp_path / "server.log")
    playwright, browser = chromium()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(server.url + "/evaluate?run=evaluated")
        page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=120_000)
        wait_idle(page, 120_000)
        # The plot area holds 7 x 7 cells: click the centre of (true happy, predicted angry).
        area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
        page.mouse.click(area["x"] + area["width"] / 14, area["y"] + area["height"] * 3.5 / 7)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stImageCaption\"]')]"
                               ".every(c => c.innerText.startsWith('happy → angry'))", timeout=60_000)
        wait_idle(page, 60_000)
        captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
        assert captions and all(caption.startswith("happy → angry") for caption in captions)
        true_filter = page.locator('[data-testid="stMultiSelect"]').filter(has_text="True class")
        predicted_filter = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Predicted class")
        assert "happy" in true_filter.inner_text() and "angry" in predicted_filter.inner_text()

        box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Second model")
        box.scroll_into_view_if_needed()
        box.locator("input").click()
        page.get_by_role("option", name="other (finished)").click()
        page.get_by_text("Difference in percentage points").first.wait_for(timeout=60_000)
        time.sleep(0.5)
        assert page.get_by_text("F1 change per class (points)").count() == 1
        # Each title names the two models on its second line.
        assert page.get_by_text("evaluated minus other").count() == 2
    finally:
        browser.close()
        playwright.stop()
        server.stop()
