"""Retake the README's page screenshots (docs/screenshots/*.png) in headless Chromium.

    python docs/screenshots.py [--run RUN_ID] [--photo PATH] [--pages train,runs,...,dataset]

Starts ``streamlit run streamlit_app.py`` on a free port with this project's ``experiments/``,
opens each page as a user would (the Runs page on ``--run``, or on a copy of the shipped model's run
when ``experiments/`` has no such run, Evaluate on the shipped model, the
Predict page with ``--photo`` uploaded: scikit-image's astronaut by default, the Sweeps page on a
demo sweep of fake runs in a temporary experiments folder, the Dataset page on ``FER_DATA``, the
Compare page on twelve fake runs in another temporary folder) and saves a full-page PNG of each;
also the Runs card's Export section opened (``export``), Evaluate compared with a second evaluated
model (``evaluate-compare``, from the comparison down) and Predict with Grad-CAM heatmaps on
(``predict-gradcam``). ``--pages`` retakes some of them only.
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
PAGES = ("train", "runs", "evaluate", "predict", "sweeps", "dataset", "compare", "export", "evaluate-compare",
         "predict-gradcam")
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


def compare_shot(browser) -> Path:
    """The Compare page on twelve fake finished runs (bench.fake_runs) whose learning rate, dropout,
    batch size and optimizer differ, each with the accuracy a sweep of mini-Xception might find,
    some of them tagged, in a temporary experiments folder."""
    import random

    from bench.fake_runs import fake_run, plausible_accuracy
    from fer.config import TrainConfig
    from fer.run_folder import RunFolder

    folder = Path(tempfile.mkdtemp(prefix="fer-screenshots-compare-"))
    draw = random.Random(3)
    for number in range(12):
        params = {"learning_rate": round(10 ** draw.uniform(-4, -2), 5),
                  "dropout": draw.choice([0.0, 0.25, 0.5]), "batch_size": draw.choice([32, 64, 128])}
        optimizer = "sgd" if number % 4 == 3 else "adam"
        run_dir = fake_run(folder / "experiments", f"run-{number:02d}", epochs_done=5, created=1000 + number)
        run = RunFolder(run_dir)
        run.write_config(TrainConfig.for_architecture("mini_xception", epochs=5, optimizer=optimizer,
                                                      **params))
        run.write_status(best_val_accuracy=plausible_accuracy(params) - 0.05 * (optimizer == "sgd"))
        run.write_notes(["lr-study", "baseline"] if number == 0 else ["lr-study"] if number % 2 else [],
                        "mini-Xception, 5 epochs" if number == 0 else "")
    server = StreamlitServer({"FER_EXPERIMENTS": str(folder / "experiments")}, folder / "server.log")
    try:
        page = browser.new_page(viewport={**VIEWPORT, "height": 1900})  # down to the notes' Save button
        page.set_default_timeout(120_000)
        page.goto(server.url + "/compare?run=run-00")
        page.locator(".js-plotly-plot").first.wait_for()
        settle(page)
        page.screenshot(path=str(OUT / "compare.png"), full_page=True)
    finally:
        server.stop()
    return OUT / "compare.png"


def dataset_shot(browser, url: str) -> Path:
    """The Dataset page on the dataset the server finds (FER_DATA): the chart and the faces grid."""
    page = browser.new_page(viewport={**VIEWPORT, "height": 2400})  # seven rows of faces
    page.set_default_timeout(120_000)
    page.goto(url + "/dataset")
    page.locator(".js-plotly-plot").first.wait_for()
    page.locator("[data-testid='stImage']").first.wait_for()
    settle(page)
    page.screenshot(path=str(OUT / "dataset.png"), full_page=True)
    page.close()
    return OUT / "dataset.png"


def runs_server(wanted: str) -> tuple[StreamlitServer | None, str]:
    """(a server of its own or None for the main one, the run to show) for the Runs and Export shots:
    ``wanted`` when it is a run of experiments/, else a copy of the shipped model's run folder (the
    default preset's 75-epoch run, its history and evaluation) as ``wanted`` in a temporary folder."""
    import fer
    from fer.runs import list_runs

    if any(run.run_id == wanted for run in list_runs()):
        return None, wanted
    folder = Path(tempfile.mkdtemp(prefix="fer-screenshots-runs-"))
    shutil.copytree(fer.DEFAULT_MODEL_DIR, folder / "experiments" / wanted)
    return StreamlitServer({"FER_EXPERIMENTS": str(folder / "experiments")}, folder / "server.log"), wanted


def runs_shot(browser, url: str, run_id: str) -> Path:
    """The Runs page on ``run_id``: the table, the curves with their controls, the run's card."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(120_000)
    page.goto(f"{url}/runs?run={run_id}")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page)
    page.screenshot(path=str(OUT / "runs.png"), full_page=True)
    page.close()
    return OUT / "runs.png"


def export_shot(browser, url: str, run_id: str) -> Path:
    """The Export section of a run card on the Runs page, opened (that section only)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(120_000)
    page.goto(f"{url}/runs?run={run_id}")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page)
    expander = page.locator("[data-testid='stExpander']").filter(has_text="Export (.keras").first
    expander.locator("summary").click()
    expander.get_by_text("Each export is loaded back").wait_for()
    settle(page)
    expander.screenshot(path=str(OUT / "export.png"))
    page.close()
    return OUT / "export.png"


def evaluate_compare_shot(browser, url: str, run_id: str) -> Path:
    """Evaluate on ``run_id`` compared with the first other evaluated model, from the comparison down."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(120_000)
    page.goto(f"{url}/evaluate?run={run_id}")
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page)
    box = page.locator("[data-testid='stSelectbox']").filter(has_text="Second model")
    box.scroll_into_view_if_needed()
    box.locator("input").click()
    page.get_by_role("option").first.click()
    page.get_by_text("Difference in percentage points").first.wait_for()
    settle(page)
    # Streamlit scrolls inside its main block: bring the comparison's heading to the top.
    page.get_by_text("Compare with another model").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1000)
    page.screenshot(path=str(OUT / "evaluate-compare.png"))
    page.close()
    return OUT / "evaluate-compare.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="default-mini-xception",
                        help="run shown on the Runs page and in the Export shot (when experiments/ has no "
                             "such run: a copy of the shipped model's run under this name)")
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
    if "dataset" in pages:
        from fer.data import find_datasets, resolve_location

        if not find_datasets():
            print("error: the Dataset page's screenshot needs FER2013: set FER_DATA", file=sys.stderr)
            return 2
        resolve_location(None)  # unpack an archive now, not while the browser waits
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
                     ("evaluate", f"/evaluate?run={args.evaluate}", ".js-plotly-plot", None),
                     ("predict", "/predict", "[data-testid='stFileUploaderDropzone']", photo),
                     ("predict-gradcam", "/predict", "[data-testid='stFileUploaderDropzone']", photo)]
            for name, path, drawn, upload in [shot for shot in shots if shot[0] in pages]:
                page.goto(url + path)
                page.locator(drawn).first.wait_for()
                settle(page)
                if name == "predict-gradcam":  # heatmaps beside each face
                    page.get_by_text("Grad-CAM heatmaps").click()
                    settle(page)
                if upload is not None:
                    page.locator("input[type=file]").first.set_input_files(str(upload))
                    page.get_by_text("Face 1").first.wait_for()
                    settle(page)
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(OUT / f"{name}.png")
            if "sweeps" in pages:
                print(sweeps_shot(browser))
            if "dataset" in pages:
                print(dataset_shot(browser, url))
            if "compare" in pages:
                print(compare_shot(browser))
            if "runs" in pages or "export" in pages:
                own, run_id = runs_server(args.run)
                try:
                    runs_url = own.url if own else url
                    if "runs" in pages:
                        print(runs_shot(browser, runs_url, run_id))
                    if "export" in pages:
                        print(export_shot(browser, runs_url, run_id))
                finally:
                    if own:
                        own.stop()
            if "evaluate-compare" in pages:
                print(evaluate_compare_shot(browser, url, args.evaluate))
        finally:
            browser.close()
            playwright.stop()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
