"""The real thing: `streamlit run streamlit_app.py` driven in headless Chromium.

Launch a 2-epoch run from the Train page, watch its curve on Runs, upload a face on Predict.
Skips where Chromium is not installed (`.ci/run` installs Debian's `chromium`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import wait_until
from synthetic import write_image_folder

from fer import PROJECT_ROOT

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def server(tmp_path):
    """A Streamlit server on a free loopback port with a tiny dataset and empty experiments."""
    data = write_image_folder(tmp_path / "fer2013", train=6, test=2)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {**os.environ, "FER_DATA": str(data), "FER_EXPERIMENTS": str(tmp_path / "experiments"),
           "FER_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port),
             "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: healthy(url) or process.poll() is not None, 60, "the server to start", 0.2, log)
        assert process.poll() is None, log.read_text()
        yield url, tmp_path / "experiments"
    finally:
        process.terminate()
        process.wait(10)
        from fer.runs import list_runs
        from fer.workers import stop

        for run in list_runs(tmp_path / "experiments"):
            stop(run.path, wait=10)


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


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

    runs = wait_until(lambda: list(experiments.iterdir()) if experiments.exists() else [], 30, "a run folder")
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
