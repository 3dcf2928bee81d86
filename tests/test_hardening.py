"""Hardening: each test is named for a way an attacker or an unlucky user broke the app, and fails
on a version without the fix (forged pids, special files, wrong types, links, newline ids)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from app_driver import no_exception, open_page, texts
from fake_runs import fake_run, hold_run_lock, release
from helpers import run_cli

from fer.files import FileProblem, read_bytes, read_json, read_tail
from fer.run_folder import RunError, RunFolder
from fer.runs import experiments_dir, list_runs, load_run, run_path
from fer.workers import delete, effective_state, lock_holder, stop


@pytest.fixture
def root() -> Path:
    path = experiments_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def bystander():
    """An unrelated program: nothing the app does may signal it."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def status_of(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def forge_status(run: Path, **values) -> None:
    (run / "status.json").write_text(json.dumps({**status_of(run), **values}))


# ---- 1. stop signals only the process that holds the run's lock --------------------------------

def test_stop_never_signals_a_pid_read_from_status_json(root, bystander):
    """status.json says queued with a pid and a queued time far in the future: the run is damaged
    (not queued forever), offers no Stop, and stop() leaves the pid alone."""
    run = fake_run(root, "forged", state="stopped", evaluation=False)
    forge_status(run, state="queued", pid=bystander.pid, queued=1e12)
    summary = load_run(run)
    assert summary.state == "damaged"
    assert "status.json: queued lies in the future" in summary.problems
    assert stop(run) is False
    app = open_page("runs", {"run": "forged"})
    no_exception(app)
    assert "Stop" not in [button.label for button in app.button]
    time.sleep(0.3)
    assert bystander.poll() is None


def test_stop_of_a_started_worker_without_the_lock_only_leaves_a_request(root, bystander):
    """Queued with a live pid and a current time: the pid cannot be verified, so it gets a stop
    request (read by a real worker when it takes the lock), never a signal."""
    run = fake_run(root, "starting", state="stopped", evaluation=False)
    forge_status(run, state="queued", pid=bystander.pid, queued=time.time())
    assert effective_state(run) == "queued"
    assert stop(run) is True
    assert RunFolder(run).stop_requested() is not None
    time.sleep(0.3)
    assert bystander.poll() is None


def test_stop_signals_the_lock_holder_not_the_pid_in_status(root, bystander):
    """A worker holds the lock; status.json was edited to name another pid: the worker is
    stopped and the other process is not."""
    run = fake_run(root, "edited", state="running", evaluation=False)
    worker = hold_run_lock(run)
    try:
        forge_status(run, pid=bystander.pid)
        assert lock_holder(run) == worker.pid
        assert stop(run) is True
        assert worker.wait(timeout=5) is not None
        assert bystander.poll() is None
    finally:
        release(worker)


def test_stop_never_signals_the_calling_process(root):
    """A dashboard process that holds a run's lock itself is not a worker: stop() refuses."""
    from fer.workers import acquire_lock

    run = fake_run(root, "self", state="running", evaluation=False)
    lock = acquire_lock(run)
    try:
        RunFolder(run).write_status(pid=os.getpid())
        assert stop(run) is False
    finally:
        os.close(lock)


# ---- 2. special files never block a reader or exhaust memory -----------------------------------

@pytest.mark.timeout(60)
def test_named_pipe_as_status_json_does_not_hang_any_page(root):
    fake_run(root, "good")
    run = fake_run(root, "piped")
    (run / "status.json").unlink()
    os.mkfifo(run / "status.json")
    for page in ("train", "runs", "evaluate", "predict"):
        app = open_page(page)
        no_exception(app)
    summary = load_run(run)
    assert summary.state == "damaged" and summary.problems == ["status.json is not a regular file"]
    assert {r.run_id: r.state for r in list_runs()}["good"] == "finished"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["status.json", "train.log", "history.csv", "progress.json",
                                  "config.json"])
def test_link_to_dev_zero_is_not_read(root, name):
    run = fake_run(root, "zero", state="running", evaluation=False)
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to("/dev/zero")
    summary = load_run(run)
    folder = RunFolder(run)
    read = {"train.log": folder.read_log_tail, "history.csv": lambda: folder.read_history().to_dict(),
            "progress.json": folder.read_progress}
    if name in read:
        assert not read[name]()
    app = open_page("runs", {"run": "zero"})
    no_exception(app)
    if name in ("status.json", "config.json"):
        assert summary.state == "damaged" and f"{name} is not a regular file" in summary.problems


def test_capped_readers(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"x": "a" * 2_000_000}))
    with pytest.raises(FileProblem, match="larger than"):
        read_bytes(big, 1 << 20)
    assert read_json(big) is None
    log = tmp_path / "train.log"
    with open(log, "wb") as handle:
        handle.truncate(10 << 30)  # a sparse 10 GB log: only its end is read
        handle.seek(0, os.SEEK_END)
        handle.write(b"last line\n")
    assert read_tail(log, 100).endswith(b"last line\n")


# ---- 3. wrong types: the run is damaged, every other run works ---------------------------------

WRONG_VALUES = [
    ("status.json", {"created": "yesterday"}, "created is 'yesterday', not a number"),
    ("status.json", {"queued": "soon", "state": "queued"}, "queued is 'soon', not a number or null"),
    ("status.json", {"state": ["running"]}, "state is ['running'], not one of"),
    ("status.json", {"best_val_accuracy": "high"}, "best_val_accuracy is 'high', not a number or null"),
    ("status.json", {"started": "x"}, "started is 'x', not a number or null"),
    ("status.json", {"pid": 2**70}, "pid is"),
    ("status.json", {"epochs_done": -3}, "epochs_done is -3, below 0"),
    ("config.json", {"architecture": ["x"]}, "config.json: architecture=['x'] is not a valid str"),
]


@pytest.mark.parametrize(("name", "values", "problem"), WRONG_VALUES,
                         ids=[f"{name}:{next(iter(values))}" for name, values, _ in WRONG_VALUES])
def test_wrong_types_in_run_files_show_the_run_as_damaged(root, name, values, problem):
    fake_run(root, "healthy", created=time.time() - 60)
    run = fake_run(root, "broken")
    path = run / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    summary = load_run(run)
    assert summary.state == "damaged"
    assert any(problem in text for text in summary.problems), summary.problems
    for page in ("train", "runs", "evaluate", "predict"):
        app = open_page(page, {"run": ["broken", "healthy"]} if page == "runs" else None)
        no_exception(app)
    app = open_page("runs", {"run": ["broken", "healthy"]})
    table = app.dataframe[0].value.set_index("run")
    assert table.loc["broken", "state"] == "damaged" and table.loc["healthy", "state"] == "finished"
    shown = [text.replace("\\", "") for text in texts(app.error)]  # markdown escapes removed
    assert any("damaged" in text and problem in text for text in shown), shown


def test_progress_json_that_is_a_list_is_ignored(root):
    run = fake_run(root, "listy", state="running", evaluation=False)
    worker = hold_run_lock(run)
    try:
        (run / "progress.json").write_text("[1, 2, 3]")
        app = open_page("runs", {"run": "listy"})
        no_exception(app)
        assert load_run(run).state == "running"
    finally:
        release(worker)


def test_metrics_json_without_accuracy_is_a_damaged_evaluation(root):
    run = fake_run(root, "half-evaluated")
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    del metrics["splits"]["test"]["accuracy"]
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    app = open_page("evaluate", {"run": "half-evaluated"})
    no_exception(app)
    shown = [text.replace("\\", "") for text in texts(app.error)]
    assert any("damaged" in text and "splits.test has no 'accuracy'" in text for text in shown), shown


# ---- 4. a run folder that is a link ------------------------------------------------------------

def test_run_folder_that_is_a_link_is_listed_shown_and_deleted_as_a_link(root, tmp_path):
    """A run moved to a bigger disk and linked back: Runs shows it (selected by default), Evaluate
    lists it; deleting it removes the link and keeps the folder it points to."""
    elsewhere = tmp_path / "bigger-disk"
    elsewhere.mkdir()
    target = fake_run(elsewhere, "moved")
    (root / "moved").symlink_to(target, target_is_directory=True)
    assert run_path("moved") == root / "moved"
    app = open_page("runs")
    no_exception(app)
    assert app.dataframe[0].value["run"].tolist() == ["moved"]
    assert app.multiselect(key="runs.selected").value == ["moved"]
    app = open_page("evaluate", {"run": "moved"})
    no_exception(app)
    assert app.selectbox(key="evaluate.source").value == "moved"
    assert delete(root / "moved") == target.resolve()
    assert not (root / "moved").exists() and (target / "config.json").is_file()


def test_dangling_link_is_not_a_run(root, tmp_path):
    (root / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (root / "loop").symlink_to(root / "loop")
    assert list_runs() == []
    no_exception(open_page("runs"))


# ---- 7. run ids are matched whole ---------------------------------------------------------------

@pytest.mark.parametrize("bad", ["evil\n", "evil\r", "a/b", "..", "a..b", ".hidden", "", "x" * 101])
def test_run_ids_are_matched_whole(bad):
    with pytest.raises(RunError, match="invalid run id"):
        run_path(bad)


def test_cli_refuses_a_run_name_with_a_trailing_newline(root):
    result = run_cli(["fer.train", "--name", "evil\n", "--epochs", "1"], timeout=60)
    assert result.returncode == 2 and "invalid run id" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(root.iterdir()) == []
