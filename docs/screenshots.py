"""Retake the README's page screenshots (docs/screenshots/*.png) in headless Chromium.

    python docs/screenshots.py [--run RUN_ID] [--photo PATH] [--pages train,runs,evaluate,predict,sweeps]

Starts ``streamlit run streamlit_app.py`` on a free port with this project's ``experiments/``,
opens each page as a user would (the Runs page on ``--run``, Evaluate on the shipped model, the
Predict page with ``--photo`` uploaded: scikit-image's astronaut by default, the Sweeps page on a
demo sweep of fake runs in a temporary experiments folder) and saves a full-page PNG of each;
``--pages`` retakes some of them only.
Needs Debian's ``chromium`` (``CHROMIUM`` overrides the path) and Playwright's Python package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import StreamlitServer, chromium, wait_idle  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
PAGES = ("train", "runs", "evaluate", "predict", "sweeps")
VIEWPORT = {"width": 1400, "height": 1600}


def settle(page) -> None:
    """Streamlit's script has finished, and its charts have had time to draw."""
    page.wait_for_timeout(500)
    wait_idle(page, 120_000)
    page.wait_for_timeout(2000)


def sweeps_shot(browser) -> Path:
    """The Sweeps page on a demo sweep: six trials as fake runs (bench.fake_runs.fake_sweep, one of
    them pruned) in a temporary experiments folder, so the charts have data and nothing trains."""
    from bench.fake_runs import fake_sweep, plausible_accuracy

    folder = Path(tempfile.mkdtemp(prefix="fer-screenshots-sweep-"))
    fake_sweep(folder / "experiments", "lr-dropout", trials=6,
               value=lambda params: plausible_accuracy(params) if plausible_accuracy(params) > 0.53 else None)
    server = StreamlitServer({"FER_EXPERIMENTS": str(folder / "experiments")}, folder / "server.log")
    try:
        page = browser.new_page(viewport={**VIEWPORT, "height": 1920})  # its charts are below the table
        page.set_default_timeout(120_000)
        page.goto(server.url + "/sweeps?study=lr-dropout")
        page.locator(".js-plotly-plot").nth(1).wait_for()
        settle(page)
        page.screenshot(path=str(OUT / "sweeps.png"), full_page=True)
    finally:
        server.stop()
    return OUT / "sweeps.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default-mini-xception", help="run shown on the Runs page")
    parser.add_argument("--evaluate", default="default",
                        help="run shown on Evaluate (default: the shipped model)")
    parser.add_argument("--photo", default="", help="photo uploaded on Predict (default: the astronaut)")
    parser.add_argument("--pages", default=",".join(PAGES), help="the screenshots to take (default: all)")
    args = parser.parse_args(argv)
    pages = [name.strip() for name in args.pages.split(",") if name.strip()]
    if unknown := sorted(set(pages) - set(PAGES)):
        parser.error(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(PAGES)}")
    if not (os.environ.get("CHROMIUM") or shutil.which("chromium")):
        print("error: Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    photo = Path(args.photo) if args.photo else None
    if photo is None:
        import skimage

        photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    server = StreamlitServer({}, Path(tempfile.mkdtemp(prefix="fer-screenshots-")) / "server.log")
    url = server.url
    try:
        playwright, browser = chromium()
        try:
            # Streamlit scrolls inside the page, so a full-page shot is one viewport: make it tall.
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(120_000)
            OUT.mkdir(parents=True, exist_ok=True)
            # (name, address, what shows that the page is drawn, photo to upload)
            shots = [("train", "/train", "button:has-text('Launch training')", None),
                     ("runs", f"/runs?run={args.run}", ".js-plotly-plot", None),
                     ("evaluate", f"/evaluate?run={args.evaluate}", ".js-plotly-plot", None),
                     ("predict", "/predict", "[data-testid='stFileUploaderDropzone']", photo)]
            for name, path, drawn, upload in [shot for shot in shots if shot[0] in pages]:
                page.goto(url + path)
                page.locator(drawn).first.wait_for()
                settle(page)
                if upload is not None:
                    page.locator("input[type=file]").first.set_input_files(str(upload))
                    page.get_by_text("Face 1").first.wait_for()
                    settle(page)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(OUT / f"{name}.png")
            if "sweeps" in pages:
                print(sweeps_shot(browser))
        finally:
            browser.close()
            playwright.stop()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
