"""Dashboard responsiveness with 500 runs (each with config, status and 100 epochs).

    python -m bench.dashboard             # 500 runs; AppTest + one headless Chromium session
    python -m bench.dashboard --quick     # 20 runs, AppTest only (smoke test)

Everything happens in a temporary experiments folder (``FER_EXPERIMENTS``); nothing is written
to ``experiments/``. Measures:
  * Runs page (and Compare page) script time in-process with Streamlit's AppTest: the first
    render in the process (imports included) and the median of reruns;
  * the same page in headless Chromium against ``streamlit run``: from navigation to the runs
    table, the curves and the settings table drawn and the script idle: first load, full reloads
    (the whole frontend again), a new browser session, and in-app navigation (sidebar link);
  * live curves: a "running" run (this process holds its worker lock) gets a new history.csv row;
    the time until the browser's loss chart shows it (the page polls every LIVE_REFRESH_S = 1 s);
  * Predict page: time to open it the first time in a server process (imports TensorFlow and loads
    the model) and again in new browser sessions (cached with st.cache_resource by path + mtime),
    then the time from uploading a 1 MP photo to the face's chart.
Targets: Runs and Compare pages <= 1.5 s; a new epoch on the live curves <= 2 s.
Chromium: Debian's /usr/bin/chromium driven by Playwright (``CHROMIUM`` overrides the path).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.common import (
    ROOT,
    StreamlitServer,
    chromium,
    encode,
    face_photo,
    log,
    prediction_model,
    temp_dir,
    wait_idle,
    write_result,
)
from fer.run_folder import RunFolder

ARCHITECTURES = ("mini_xception", "vgg_fer", "seed_cnn_a", "seed_cnn_b", "seed_cnn_c", "vgg16_transfer")


def make_runs(root: Path, count: int, epochs: int = 100) -> list[str]:
    """``count`` finished runs, as a worker leaves them: config.json, status.json, history.csv, log."""
    from bench.fake_runs import fake_run

    now = time.time()
    return [fake_run(root, f"20261101-{i:06d}-{ARCHITECTURES[i % len(ARCHITECTURES)]}",
                     epochs_done=epochs, epochs=epochs, architecture=ARCHITECTURES[i % len(ARCHITECTURES)],
                     model=False, created=now - 86400 + i, test_accuracy=0.55,
                     val_description="PublicTest (test/PublicTest_*)",
                     test_description="PrivateTest (test/PrivateTest_*)").name
            for i in range(count)]


def apptest_runs_page(reruns: int, page: str = "runs") -> dict:
    """Runs (or another) page's script time in AppTest: first render in this process, then reruns
    (what every click, or the Refresh button, costs). A new AppTest also scans every installed
    package for Streamlit components (~1 s here): harness cost, reported apart as ``new_session_s``."""
    from streamlit.testing.v1 import AppTest

    start = time.perf_counter()
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    app.run()
    new_session = time.perf_counter() - start
    start = time.perf_counter()
    app.switch_page(f"app_pages/{page}.py").run()
    first = time.perf_counter() - start
    assert not app.exception, [e.value for e in app.exception]
    assert app.get("plotly_chart"), f"the {page} page drew no chart"
    times = []
    for _ in range(reruns):
        start = time.perf_counter()
        app.run()
        times.append(time.perf_counter() - start)
        assert not app.exception, [e.value for e in app.exception]
    return {"first_render_s": round(first, 3), "rerun_median_s": round(statistics.median(times), 3),
            "rerun_max_s": round(max(times), 3), "reruns": len(times),
            "new_session_s": round(new_session, 3)}


def timed_goto(page, url: str, *selectors: str) -> float:
    start = time.perf_counter()
    page.goto(url)
    for selector in selectors:
        # The file input is hidden behind Streamlit's drop zone: wait for it to exist.
        state = "attached" if selector.startswith("input") else "visible"
        page.locator(selector).first.wait_for(state=state, timeout=120_000)
    wait_idle(page, 120_000)
    return time.perf_counter() - start


def live_curves(page, url: str, root: Path, epochs_shown: int, updates: int) -> dict:
    """A running run gets a new epoch; how long until its loss chart has that many points."""
    from bench.fake_runs import history_row, write_history
    from fer.config import TrainConfig
    from fer.files import write_json_atomic
    from fer.run_folder import RunFolder
    from fer.runs import create_run
    from fer.workers import acquire_lock

    run_dir = create_run(TrainConfig.for_architecture("mini_xception", epochs=100), root, "zz-live-run")
    history = RunFolder(run_dir).history_file
    write_history(run_dir, epochs_shown)
    lock = acquire_lock(run_dir)
    RunFolder(run_dir).write_status(state="running", pid=os.getpid(), started=time.time(), phase="training",
                 epochs_done=epochs_shown)
    write_json_atomic(RunFolder(run_dir).progress_file, {"epoch": epochs_shown + 1, "epochs": 100, "batch": 1,
                                                  "batches": 448, "phase": "training",
                                                  "updated": time.time()})
    # Plotly keeps the base64 arrays it was sent in .data; _fullData holds the decoded traces.
    points = ("() => { const p = document.querySelector('.js-plotly-plot');"
              " return p && p._fullData && p._fullData.length ? p._fullData[0].x.length : -1; }")
    try:
        timed_goto(page, f"{url}/runs?run={run_dir.name}", ".js-plotly-plot")
        page.wait_for_function(f"() => ({points})() === {epochs_shown}", timeout=60_000)
        latencies = []
        for k in range(updates):
            time.sleep(0.5 + 0.37 * k % 1.0)  # land at different points of the polling cycle
            with open(history, "a") as out:
                out.write(history_row(epochs_shown + k) + "\n")
            start = time.perf_counter()
            page.wait_for_function(f"() => ({points})() >= {epochs_shown + k + 1}", timeout=30_000,
                                   polling=20)
            latencies.append(time.perf_counter() - start)
    finally:
        os.close(lock)
    return {"updates": len(latencies), "latencies_s": [round(x, 3) for x in latencies],
            "median_s": round(statistics.median(latencies), 3), "max_s": round(max(latencies), 3)}


def browser_session(root: Path, model_path: Path, work: Path) -> dict:
    """One headless Chromium session against one server: Runs page, live curves, Predict page."""
    server = StreamlitServer({"FER_EXPERIMENTS": str(root), "FER_CACHE": str(work / "cache")},
                             work / "server.log")
    playwright, browser = chromium()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        runs_page = [".js-plotly-plot", "[data-testid=stDataFrame]", "[data-testid=stTable]"]
        first = timed_goto(page, f"{server.url}/runs", *runs_page)
        reloads = [timed_goto(page, f"{server.url}/runs", *runs_page) for _ in range(3)]
        navigations = []  # in-app: from the Train page, click "Runs" in the sidebar
        for _ in range(3):
            timed_goto(page, f"{server.url}/train", "[data-testid=stSidebarNav]")
            start = time.perf_counter()
            page.locator("[data-testid=stSidebarNav] a", has_text="Runs").first.click()
            for selector in runs_page:
                page.locator(selector).first.wait_for(state="visible", timeout=120_000)
            wait_idle(page, 120_000)
            navigations.append(time.perf_counter() - start)
        fresh = browser.new_page(viewport={"width": 1400, "height": 1000})
        new_session = timed_goto(fresh, f"{server.url}/runs", *runs_page)
        fresh.close()
        log(f"chromium runs page: first {first:.2f}s, reloads {reloads}, in-app {navigations}, "
            f"new session {new_session:.2f}s")
        memory_after_runs = server.memory()
        live = live_curves(page, server.url, root, epochs_shown=20, updates=10)
        log(f"live curves: {live}")

        predict_opens = []
        for _ in range(3):
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            predict_opens.append(timed_goto(tab, f"{server.url}/predict", "input[type=file]"))
            tab.close()
        photo = work / "astronaut-1024.jpg"
        photo.write_bytes(encode(face_photo(1024), "JPEG"))
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        timed_goto(tab, f"{server.url}/predict", "input[type=file]")
        start = time.perf_counter()
        tab.locator("input[type=file]").first.set_input_files(str(photo))
        tab.get_by_text("Face 1").first.wait_for(timeout=120_000)
        tab.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        wait_idle(tab, 120_000)
        upload_s = time.perf_counter() - start
        log(f"predict page opens {predict_opens}, upload to chart {upload_s:.2f}s")
        return {"runs_page_first_load_s": round(first, 3),
                "runs_page_reload_s": [round(x, 3) for x in reloads],
                "runs_page_new_session_s": round(new_session, 3),
                "runs_page_in_app_navigation_s": [round(x, 3) for x in navigations], "live_curves": live,
                "predict_page_open_s": [round(x, 3) for x in predict_opens],
                "predict_upload_to_chart_s": round(upload_s, 3),
                "server_memory_after_runs_page": memory_after_runs, "server_memory_at_end": server.memory()}
    finally:
        browser.close()
        playwright.stop()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 runs, AppTest only (smoke test)")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args(argv)
    count = 20 if args.quick else args.runs
    work = temp_dir("dashboard")
    root = work / "experiments"
    os.environ["FER_EXPERIMENTS"] = str(root)
    os.environ["FER_CACHE"] = str(work / "cache")
    try:
        start = time.perf_counter()
        ids = make_runs(root, count)
        log(f"wrote {count} runs in {time.perf_counter() - start:.1f}s under {root}")
        model_path, model_kind = prediction_model(True, work)  # any FER model: only load time matters
        shutil.copyfile(model_path, RunFolder(root / ids[0]).model_file)
        apptest = apptest_runs_page(2 if args.quick else 10)
        log(f"apptest runs page: {apptest}")
        compare = apptest_runs_page(2 if args.quick else 10, page="compare")
        log(f"apptest compare page: {compare}")
        browser = {"skipped": "--quick / --no-browser"} if args.quick or args.no_browser else \
            browser_session(root, model_path, work)
        targets = {"runs_page_apptest_rerun_<=1.5s": apptest["rerun_median_s"] <= 1.5,
                   "compare_page_apptest_rerun_<=1.5s": compare["rerun_median_s"] <= 1.5}
        if "runs_page_reload_s" in browser:
            targets["runs_page_chromium_reload_<=1.5s"] = statistics.median(
                browser["runs_page_reload_s"]) <= 1.5
            targets["runs_page_chromium_in_app_<=1.5s"] = statistics.median(
                browser["runs_page_in_app_navigation_s"]) <= 1.5
            targets["live_curves_max_<=2s"] = browser["live_curves"]["max_s"] <= 2
        write_result("dashboard", {
            "quick": args.quick, "runs": count, "epochs_per_run": 100, "model": model_kind,
            "apptest_runs_page": apptest, "apptest_compare_page": compare, "chromium": browser,
            "targets_met": targets})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
