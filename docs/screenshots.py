"""Retake the README's page screenshots (docs/screenshots/*.png) in headless Chromium.

    python docs/screenshots.py [--run RUN_ID] [--photo PATH]

Starts ``streamlit run streamlit_app.py`` on a free port with this project's ``experiments/``,
opens each page as a user would (the Runs page on ``--run``, Evaluate on the shipped model, the Predict page with
``--photo`` uploaded: scikit-image's astronaut by default) and saves a full-page PNG of each.
Needs Debian's ``chromium`` (``CHROMIUM`` overrides the path) and Playwright's Python package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"error: the Streamlit server at {url} did not start within {timeout:.0f} s")


def settle(page, seconds: float = 2.0) -> None:
    """Wait until Streamlit's script has finished (no 'Running...' indicator), then a bit more."""
    page.wait_for_timeout(500)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=120_000)
    page.wait_for_timeout(seconds * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default-mini-xception", help="run shown on the Runs page")
    parser.add_argument("--evaluate", default="default", help="run shown on Evaluate (default: the shipped model)")
    parser.add_argument("--photo", default="", help="photo uploaded on Predict (default: the astronaut)")
    args = parser.parse_args(argv)
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    photo = Path(args.photo) if args.photo else None
    if photo is None:
        import skimage

        photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_server(url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            # Streamlit scrolls inside the page, so a full-page shot is one viewport: make it tall.
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(120_000)
            OUT.mkdir(parents=True, exist_ok=True)
            # (name, address, what shows that the page is drawn, photo to upload)
            shots = [("train", "/train", "button:has-text('Launch training')", None),
                     ("runs", f"/runs?run={args.run}", ".js-plotly-plot", None),
                     ("evaluate", f"/evaluate?run={args.evaluate}", ".js-plotly-plot", None),
                     ("predict", "/predict", "[data-testid='stFileUploaderDropzone']", photo)]
            for name, path, drawn, upload in shots:
                page.goto(url + path)
                page.locator(drawn).first.wait_for()
                settle(page)
                if upload is not None:
                    page.locator("input[type=file]").first.set_input_files(str(upload))
                    page.get_by_text("Face 1").first.wait_for()
                    settle(page)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(OUT / f"{name}.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
