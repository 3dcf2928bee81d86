"""The Runs page: the table, selection (also from ?run=), live status, actions and downloads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from app_driver import array, figures, no_exception, open_page, page_links, texts
from fake_runs import fake_run, hold_run_lock, release

from fer.run_folder import RunFolder
from fer.runs import experiments_dir


@pytest.fixture
def root() -> Path:
    return experiments_dir()


def test_no_runs_yet_points_to_the_train_page():
    app = open_page("runs")
    no_exception(app)
    assert "No runs yet" in app.info[0].value
    assert [label for label, _ in page_links(app)] == ["Train a model"]


def test_table_lists_every_run_newest_first_with_its_state(root):
    fake_run(root, "old-finished", created=1000)
    fake_run(root, "mid-failed", state="failed", error="out of memory", created=2000)
    fake_run(root, "new-stopped", state="stopped", evaluation=False, created=3000)
    app = open_page("runs")
    no_exception(app)
    table = app.dataframe[0].value
    assert list(table["run"]) == ["new-stopped", "mid-failed", "old-finished"]
    assert list(table["state"]) == ["stopped", "failed", "finished"]
    # Without ?run= the newest run is shown.
    assert app.multiselect(key="runs.selected").value == ["new-stopped"]


def set_config(run_dir: Path, **changes) -> None:
    """Edit config.json as an older or another machine's fer-lab wrote it (None removes a key)."""
    config = json.loads((run_dir / "config.json").read_text())
    config.update(changes)
    (run_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


def test_table_and_details_show_backend_and_device_and_old_runs_trained_on_tensorflow(root):
    """backend comes from config.json (absent in old runs: tensorflow), device from status.json."""
    old = fake_run(root, "old", created=1000)
    set_config(old, backend=None, devices=None, deterministic=None)
    new = fake_run(root, "new", created=2000)
    set_config(new, backend="jax", devices=2)
    RunFolder(new).write_status(backend="jax", device="2 x NVIDIA H100 80GB HBM3")
    app = open_page("runs", {"run": ["new", "old"]})
    no_exception(app)
    table = app.dataframe[0].value.set_index("run")
    assert table.loc["new", ["backend", "device"]].tolist() == ["jax", "2 x NVIDIA H100 80GB HBM3"]
    assert table.loc["old", "backend"] == "tensorflow"
    assert pd.isna(table.loc["old", "device"])  # shown as the table's "–" placeholder
    captions = texts(app.caption)
    assert any("jax on 2 x NVIDIA H100 80GB HBM3" in text for text in captions)
    assert any(" · tensorflow · " in text for text in captions)
    comparison = app.table[0].value
    assert comparison.loc["backend"].tolist() == ["jax", "tensorflow"]
    assert comparison.loc["device"].tolist() == ["2 x NVIDIA H100 80GB HBM3", "–"]


def test_query_param_selects_runs_and_bad_ids_are_reported(root):
    fake_run(root, "a", created=1000)
    fake_run(root, "b", created=2000)
    app = open_page("runs", {"run": ["a", "../../etc", "ghost"]})
    no_exception(app)
    assert app.multiselect(key="runs.selected").value == ["a"]
    warnings = " ".join(texts(app.warning))
    assert "invalid run id" in warnings and "`ghost`" in warnings


def test_several_runs_overlay_train_and_dashed_val_curves_and_compare(root):
    fake_run(root, "first", epochs_done=3, created=1000)
    fake_run(root, "second", epochs_done=5, created=2000, architecture="seed_cnn_a")
    app = open_page("runs", {"run": ["first", "second"]})
    no_exception(app)
    loss, accuracy = figures(app)[:2]
    for figure, metric in ((loss, "loss"), (accuracy, "accuracy")):
        traces = figure.data
        assert [t.name for t in traces] == ["first train", "first val", "second train", "second val"]
        assert [t.line.dash for t in traces] == ["solid", "dash"] * 2
        assert traces[0].line.color == traces[1].line.color != traces[2].line.color
        assert figure.layout.yaxis.title.text == metric
    assert list(array(loss.data[2].x)) == [1, 2, 3, 4, 5]  # epochs counted from 1
    comparison = app.table[0].value
    assert list(comparison.columns) == ["first", "second"]
    assert comparison.loc["architecture"].tolist() == ["mini_xception", "seed_cnn_a"]


def test_failed_run_shows_its_error(root):
    fake_run(root, "broken", state="failed", error="dataset not found: /nowhere does not exist")
    app = open_page("runs")
    assert "does not exist" in app.error[0].value
    assert "Resume" in [b.label for b in app.button]


def test_finished_run_offers_downloads_evaluation_and_no_resume(root):
    fake_run(root, "done")
    app = open_page("runs")
    assert sorted(d.label for d in app.get("download_button")) == ["history.csv", "model.keras"]
    assert ("Evaluate", "evaluate") in [(label, Path(page).stem) for label, page in page_links(app)]
    assert "Resume" not in [b.label for b in app.button]
    assert "Stop" not in [b.label for b in app.button]


def test_download_refuses_a_model_link_pointing_outside_the_run(root, tmp_path):
    run_dir = fake_run(root, "sneaky", model=False)
    secret = tmp_path / "secret.keras"
    secret.write_bytes(b"not yours")
    (run_dir / "model.keras").symlink_to(secret)
    app = open_page("runs")
    assert [d.label for d in app.get("download_button")] == ["history.csv"]


def test_delete_needs_confirmation(root):
    run_dir = fake_run(root, "unwanted", state="stopped")
    app = open_page("runs", {"run": "unwanted"})
    delete = next(b for b in app.button if b.label == "Delete permanently")
    assert delete.disabled
    app.checkbox(key="confirm.unwanted").check().run()
    next(b for b in app.button if b.label == "Delete permanently").click().run()
    no_exception(app)
    assert not run_dir.exists()
    assert any("Deleted run unwanted" in text for text in texts(app.success))
    assert app.query_params.get("run") in (None, [], "")


@pytest.fixture
def live_run(root):
    """A 'running' run whose worker is a sleeping process in its own session holding no GPU."""
    run_dir = fake_run(root, "live", state="running", evaluation=False, epochs_done=3)
    worker = hold_run_lock(run_dir)
    yield run_dir, worker
    release(worker)


def test_active_run_shows_epoch_progress_and_stop(live_run):
    app = open_page("runs")
    no_exception(app)
    progress = app.get("progress")[0]
    assert progress.value == 50  # percent
    assert "Epoch 4/5" in progress.proto.text
    labels = [b.label for b in app.button]
    assert "Stop" in labels and "Resume" not in labels
    assert not [p for p in app.get("popover") if "Delete" in str(p)]


def test_stop_button_signals_the_worker(live_run):
    run_dir, worker = live_run
    app = open_page("runs")
    next(b for b in app.button if b.label == "Stop").click().run()
    no_exception(app)
    assert worker.wait(timeout=10) is not None
    assert any("stop" in text for text in texts(app.info))


def test_run_error_from_an_action_is_shown_not_raised(root):
    """Delete of a run that started training meanwhile: the RunError is a message."""
    run_dir = fake_run(root, "racing", state="stopped")
    app = open_page("runs")
    app.checkbox(key="confirm.racing").check().run()
    RunFolder(run_dir).write_status(state="running")
    worker = hold_run_lock(run_dir)
    try:
        next(b for b in app.button if b.label == "Delete permanently").click().run()
        no_exception(app)
        assert "still training" in app.error[0].value
        assert run_dir.exists()
    finally:
        release(worker)


def test_log_tail_is_shown(root):
    fake_run(root, "chatty")
    app = open_page("runs")
    assert any("[fer] finished" in text for text in texts(app.code))



def test_best_epoch_is_a_whole_number_and_no_empty_charts_before_the_first_epoch(root):
    """A table mixing runs with and without a best epoch shows 3, not 3.000000; a run with no
    completed epoch shows a waiting message instead of charts with meaningless axes."""
    fake_run(root, "trained", epochs_done=3, evaluation=False)
    fake_run(root, "fresh", state="stopped", epochs_done=0, evaluation=False)
    app = open_page("runs", {"run": "fresh"})
    no_exception(app)
    table = app.dataframe[0].value.set_index("run")
    assert str(table["best epoch"].dtype) == "Int64"
    assert table.loc["trained", "best epoch"] == 3
    assert figures(app) == []
    assert any("Waiting for the first epoch" in text for text in texts(app.info))


class PageRecorder:
    """Records, while the Runs page runs in AppTest, the polling interval of its live fragment and
    which elements were drawn inside that fragment."""

    def __init__(self, monkeypatch) -> None:
        import streamlit as st

        self.polls: list[float | None] = []
        self.drawn: dict[str, list[bool]] = {}
        self.inside = 0
        real_fragment = st.fragment

        def fragment(func=None, *, run_every=None):
            if func.__name__ == "live_page":  # not the fragments of other parts of a card
                self.polls.append(run_every)

            def traced(*args, **kwargs):
                self.inside += 1
                try:
                    return func(*args, **kwargs)
                finally:
                    self.inside -= 1

            traced.__qualname__ = traced.__name__ = func.__name__
            return real_fragment(traced, run_every=run_every)

        monkeypatch.setattr(st, "fragment", fragment)
        for name in ("dataframe", "table", "progress", "multiselect"):
            monkeypatch.setattr(st, name, self._recording(name, getattr(st, name)))

    def _recording(self, name: str, real):
        def element(*args, **kwargs):
            self.drawn.setdefault(name, []).append(self.inside > 0)
            return real(*args, **kwargs)
        return element


def test_everything_that_changes_is_live_and_polling_starts_when_a_run_becomes_active(root, monkeypatch):
    """The table, the selection, progress and the comparison are drawn inside the fragment that
    re-reads the run folders; with no run training it still polls (slowly), so a run started
    elsewhere shows, and once one trains it polls every second."""
    run_dir = fake_run(root, "later-live", state="stopped", evaluation=False, epochs_done=2, epochs=4)
    recorder = PageRecorder(monkeypatch)
    app = open_page("runs")
    no_exception(app)
    assert recorder.polls[-1] is not None and recorder.polls[-1] > 1.0
    assert app.dataframe[0].value.set_index("run").loc["later-live", "state"] == "stopped"
    RunFolder(run_dir).write_status(state="running", epochs_done=3)
    worker = hold_run_lock(run_dir)
    try:
        app.run()
        no_exception(app)
        assert recorder.polls[-1] == 1.0
        row = app.dataframe[0].value.set_index("run").loc["later-live"]
        assert (row["state"], row["epochs"]) == ("running", "3/4")
        assert set(recorder.drawn) == {"dataframe", "table", "progress", "multiselect"}
        assert all(all(inside) for inside in recorder.drawn.values()), recorder.drawn
    finally:
        release(worker)


def test_a_resumed_run_waiting_in_the_queue_says_so_and_counts_all_its_training_time(root, monkeypatch):
    """After Stop then Resume: progress.json still holds the last worker's 'stopped', the status
    says queued. The progress line says queued, and the duration is the time of both workers."""
    import time

    # The run stays in the queue: no dispatcher may start a worker on this fake run while the page
    # is read (the sidebar starts one for waiting runs).
    monkeypatch.setattr("fer.queue.ensure_dispatcher", lambda root: None)
    run_dir = fake_run(root, "resumed", state="stopped", evaluation=False, epochs_done=2, epochs=4)
    now = time.time()
    RunFolder(run_dir).write_status(state="queued", pid=None, queued=now, started=now - 300,
                                    ended=now - 30, training_s=270 + 288)  # 4.5 + 4.8 minutes
    RunFolder(run_dir).end_progress("stopped")
    app = open_page("runs", {"run": "resumed"})
    no_exception(app)
    progress = app.get("progress")[0].proto.text
    assert "queued" in progress and "stopped" not in progress
    assert app.dataframe[0].value.set_index("run").loc["resumed", "duration (min)"] == 9.3


def test_a_resumed_run_that_trains_counts_its_earlier_workers_too(root):
    import time

    run_dir = fake_run(root, "second-worker", state="running", evaluation=False, epochs_done=2)
    worker = hold_run_lock(run_dir)
    try:
        RunFolder(run_dir).write_status(started=time.time() - 270, ended=None, training_s=288)
        app = open_page("runs")
        no_exception(app)
        # 288 s before, 270 s of this worker so far (and the seconds this test took): 9.3 minutes.
        duration = app.dataframe[0].value.set_index("run").loc["second-worker", "duration (min)"]
        assert duration == pytest.approx(9.3, abs=0.15)
    finally:
        release(worker)
