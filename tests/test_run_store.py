"""fer.runs: run folders, safe run ids, states from the lock, robust history reading, guarded actions."""

from __future__ import annotations

import json
import os
import time

import pytest

from fer.config import TrainConfig
from fer.run_folder import RunError, RunFolder
from fer.runs import create_run, experiments_dir, is_run_id, list_runs, load_run, run_path
from fer.ui import run_row
from fer.workers import acquire_lock, delete, effective_state, is_alive, launch, resume, stop

HEADER = "epoch,accuracy,learning_rate,loss,seconds,val_accuracy,val_loss"


@pytest.fixture
def run(tmp_path):
    return create_run(TrainConfig(epochs=3), tmp_path / "runs", run_id="r1")


@pytest.fixture
def held_lock(run):
    """The run looks alive to everyone else, as if a worker were training it."""
    fd = acquire_lock(run)
    assert fd is not None
    yield fd
    os.close(fd)


def test_experiments_dir_follows_fer_experiments(tmp_path):
    """Tests and deployments can move the run store with FER_EXPERIMENTS."""
    assert experiments_dir() == tmp_path / "experiments"


def test_create_run_writes_config_and_created_status(tmp_path, tiny_data):
    """A new run folder holds config.json and a 'created' status before any worker starts."""
    config = TrainConfig.for_architecture("seed_cnn_a", epochs=4, data=str(tiny_data))
    path = create_run(config)
    assert path.parent == tmp_path / "experiments"
    assert "seed_cnn_a" in path.name
    assert TrainConfig.load(path / "config.json") == config
    assert RunFolder(path).read_status()["state"] == "created" and effective_state(path) == "created"


def test_generated_run_ids_never_collide(tmp_path):
    """Two runs created in the same second get different folders."""
    paths = {create_run(TrainConfig(), tmp_path) for _ in range(5)}
    assert len(paths) == 5


def test_named_run_refuses_an_existing_name(run, tmp_path):
    """--name of an existing run is an error, never an overwrite."""
    with pytest.raises(RunError, match="already exists"):
        create_run(TrainConfig(), tmp_path / "runs", run_id="r1")


@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "/etc", "/tmp/x", "a\0b", "x" * 101, "",
                                 "-rf", ".hidden", "a..b", "name with space", "é"])
def test_run_path_refuses_ids_that_could_escape(tmp_path, bad):
    """Run ids from URLs or forms cannot reach outside the experiments folder."""
    with pytest.raises(RunError, match="invalid run id"):
        run_path(bad, tmp_path)


def test_run_path_refuses_non_strings(tmp_path):
    """A None or number id is an error, not a crash."""
    for bad in (None, 3, b"abc"):
        with pytest.raises(RunError):
            run_path(bad, tmp_path)  # type: ignore[arg-type]


def test_run_path_accepts_normal_ids(tmp_path):
    """Generated ids and hand-picked names with dots, dashes and underscores are fine."""
    assert run_path("20240101-120000-mini_xception-abc123", tmp_path) == \
        (tmp_path / "20240101-120000-mini_xception-abc123").resolve()
    assert run_path("v1.2_test-run", tmp_path).name == "v1.2_test-run"
    assert run_path("x" * 100, tmp_path).name == "x" * 100


# ---- history ----------------------------------------------------------------------------------

def test_read_history_ignores_a_partial_last_line_and_garbage(run):
    """A half-written last row (worker mid-write) and garbage lines do not break the curves."""
    (run / "history.csv").write_text("\n".join([
        HEADER,
        "0,0.2,0.001,1.9,3.1,0.25,1.8",
        "oops this is not a row",
        "1,0.3,0.001,1.7,2.9,0.3,nan-ish",
        "1,0.3,0.001,1.7,2.9,0.31,1.6",
        "",
        "2,0.4,0.0",
    ]))
    history = RunFolder(run).read_history()
    assert history["epoch"].tolist() == [1, 2]
    assert history["val_accuracy"].tolist() == [0.25, 0.31]


def test_read_history_keeps_the_last_row_of_a_repeated_epoch(run):
    """A re-run epoch (after a kill) replaces the older row and epochs stay sorted."""
    (run / "history.csv").write_text("\n".join([
        HEADER, "1,0.3,0.001,1.7,2.9,0.3,1.6", "0,0.2,0.001,1.9,3.1,0.25,1.8",
        "1,0.5,0.001,1.5,2.9,0.4,1.4"]))
    history = RunFolder(run).read_history()
    assert history["epoch"].tolist() == [1, 2]
    assert history["val_accuracy"].tolist() == [0.25, 0.4]


@pytest.mark.parametrize("text", [None, "", HEADER, HEADER + "\n1,2,3"])
def test_read_history_without_rows_is_empty(run, text):
    """No file, an empty file or only a header/short row gives an empty table, not an error."""
    if text is not None:
        (run / "history.csv").write_text(text)
    assert RunFolder(run).read_history().empty


def test_read_history_survives_binary_garbage(run):
    """Non-UTF-8 bytes are replaced, not raised."""
    (run / "history.csv").write_bytes(HEADER.encode() + b"\n\xff\xfe\x00\n0,0.2,0.001,1.9,3.1,0.25,1.8\n")
    assert RunFolder(run).read_history()["epoch"].tolist() == [1]


# ---- listing ----------------------------------------------------------------------------------

def test_list_runs_ignores_folders_that_are_not_runs(tmp_path):
    """Stray folders (no config.json, odd names) and files in experiments/ are skipped."""
    root = tmp_path / "runs"
    older = create_run(TrainConfig(), root, run_id="older")
    RunFolder(older).write_status(created=time.time() - 100)
    newer = create_run(TrainConfig.for_architecture("vgg_fer"), root, run_id="newer")
    (root / "notes").mkdir()
    (root / ".hidden").mkdir()
    (root / ".hidden" / "config.json").write_text("{}")
    (root / "README.md").write_text("runs live here")
    runs = list_runs(root)
    assert [r.run_id for r in runs] == ["newer", "older"]
    assert runs[0].path == newer and runs[0].architecture == "vgg_fer"
    assert run_row(runs[0])["epochs"] == f"0/{TrainConfig.for_architecture('vgg_fer').epochs}"


def test_list_runs_of_a_missing_folder_is_empty(tmp_path):
    """A fresh checkout without experiments/ shows no runs instead of failing."""
    assert list_runs(tmp_path / "nowhere") == []


def test_load_run_with_broken_config_reports_it(run):
    """A run whose config.json is corrupt is still listed, as damaged with the problem."""
    (run / "config.json").write_text("{")
    summary = load_run(run)
    assert summary.config == {} and summary.state == "damaged"
    assert summary.problems == ["config.json is not valid JSON"]
    assert summary.architecture == "?"


def test_unreadable_status_counts_as_empty(run):
    """A corrupt status.json reads as {} rather than raising in the UI."""
    (run / "status.json").write_text("not json")
    assert RunFolder(run).read_status() == {} and effective_state(run) == "unknown"


def test_read_log_tail_returns_the_last_lines(run):
    """The UI shows the end of train.log; a missing log is an empty string."""
    assert RunFolder(run).read_log_tail() == ""
    (run / "train.log").write_text("\n".join(f"line {i}" for i in range(100)))
    assert RunFolder(run).read_log_tail(lines=3) == "line 97\nline 98\nline 99"


# ---- states and guarded actions ---------------------------------------------------------------

def test_running_without_a_live_worker_is_interrupted(run):
    """status.json says running but nobody holds the lock (worker killed): show 'interrupted'."""
    RunFolder(run).write_status(state="running", pid=2**22 + 12345)
    assert not is_alive(run)
    assert effective_state(run) == "interrupted"


def test_running_with_the_lock_held_is_running(run, held_lock):
    """While a worker holds the lock the run is running, whatever its pid says."""
    RunFolder(run).write_status(state="running", pid=None)
    assert is_alive(run) and effective_state(run) == "running"


def test_queued_is_queued_only_while_its_process_lives(run):
    """Between launch and the worker taking the lock, a live pid means queued; a dead one, interrupted."""
    RunFolder(run).write_status(state="queued", queued=time.time(), pid=os.getpid())
    assert effective_state(run) == "queued"
    RunFolder(run).write_status(pid=2**22 + 12345)
    assert effective_state(run) == "interrupted"
    RunFolder(run).write_status(pid=os.getpid(), queued=time.time() - 600)
    assert effective_state(run) == "interrupted"


def test_second_launch_of_an_active_run_is_refused(run, held_lock):
    """A double click on Start launches one worker: the second launch raises RunError."""
    RunFolder(run).write_status(state="running")
    with pytest.raises(RunError, match="already running"):
        launch(run)
    assert not (run / "train.log").exists()


def test_launch_of_a_finished_run_is_refused(run):
    """A finished run is never trained again in place."""
    RunFolder(run).write_status(state="finished")
    with pytest.raises(RunError, match="has finished"):
        launch(run)
    with pytest.raises(RunError, match="only stopped, failed or interrupted"):
        resume(run)


def test_delete_refuses_an_active_run(run, held_lock):
    """Deleting a training run would pull the folder from under its worker."""
    RunFolder(run).write_status(state="running")
    with pytest.raises(RunError, match="still training"):
        delete(run)
    assert run.is_dir()


def test_delete_removes_a_stopped_run(run):
    """A stopped (or finished, failed) run can be deleted."""
    RunFolder(run).write_status(state="stopped")
    delete(run)
    assert not run.exists()


def test_stop_of_a_run_that_is_not_active_is_a_no_op(run):
    """Stop on a created/finished/interrupted run signals nothing and changes nothing."""
    for state in ("created", "finished", "stopped", "failed"):
        RunFolder(run).write_status(state=state, pid=os.getpid())
        before = RunFolder(run).read_status()
        assert stop(run) is False
        assert RunFolder(run).read_status() == before
    RunFolder(run).write_status(state="running", pid=os.getpid())  # no lock: interrupted
    assert stop(run) is False


def test_write_status_merges_and_is_valid_json(run):
    """Each write merges into status.json and leaves a complete JSON file."""
    RunFolder(run).write_status(epochs_done=2)
    RunFolder(run).write_status(best_val_accuracy=0.5)
    status = json.loads((run / "status.json").read_text())
    assert status["epochs_done"] == 2 and status["best_val_accuracy"] == 0.5
    assert status["state"] == "created"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_runs_list_shows_why_a_run_failed_or_is_damaged(tmp_path, capsys):
    from fake_runs import fake_run

    from fer.runs import main

    fake_run(tmp_path, "broke", state="failed", error="dataset not found: /data/x does not exist",
             evaluation=False)
    damaged = fake_run(tmp_path, "odd", evaluation=False)
    (damaged / "status.json").write_text('{"state": "finished", "created": "yesterday"}')
    assert main(["--experiments", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "problem" in out.splitlines()[0]
    assert "dataset not found: /data/x does not exist" in out
    assert "status.json: created is 'yesterday', not a number" in out


def test_a_relative_dataset_path_is_stored_as_the_folder_it_named_where_the_run_was_made(
        tmp_path, tiny_data, monkeypatch):
    """The worker runs in the project folder: "fer2013" typed in the dataset's parent folder must
    still name that dataset there. A path that does not exist here stays as typed (the worker's
    error then shows it); an absolute path or none stays as it is."""
    monkeypatch.chdir(tiny_data.parent)
    root = tmp_path / "runs"

    def stored(data: str) -> str:
        run = create_run(TrainConfig.for_architecture("mini_xception", data=data), root)
        return RunFolder(run).read_config().data

    assert stored(tiny_data.name) == str(tiny_data)
    assert stored(f"./{tiny_data.name}/../{tiny_data.name}") == str(tiny_data)
    assert stored("no-such-folder") == "no-such-folder"
    assert stored(str(tiny_data)) == str(tiny_data)
    monkeypatch.delenv("FER_DATA", raising=False)
    monkeypatch.setattr("fer.data.DATA_DIR", tmp_path / "no-data")
    assert stored("") == ""  # no dataset anywhere: the worker says so


def test_an_empty_dataset_is_stored_as_the_dataset_it_means_so_a_later_import_changes_nothing(
        tmp_path, monkeypatch):
    """An empty dataset means "the default": stored as the concrete dataset at creation, so a
    dataset imported later whose name sorts first (``0-other``) does not become what the run, its
    resume or a sweep's next trial trains on."""
    from synthetic import write_image_folder

    data = tmp_path / "data"
    fer2013 = write_image_folder(data / "fer2013", train=1, test=1)
    monkeypatch.delenv("FER_DATA", raising=False)
    monkeypatch.setattr("fer.data.DATA_DIR", data)
    run = create_run(TrainConfig.for_architecture("mini_xception", data=""), tmp_path / "runs")
    assert RunFolder(run).read_config().data == str(fer2013)
    write_image_folder(data / "0-other", train=1, test=1)
    assert RunFolder(run).read_config().data == str(fer2013)
    archive = tmp_path / "fer2013_images.tar.gz"
    archive.write_bytes(b"")
    monkeypatch.setenv("FER_DATA", str(archive))
    later = create_run(TrainConfig.for_architecture("mini_xception", data=""), tmp_path / "runs")
    assert RunFolder(later).read_config().data == str(archive)


@pytest.mark.parametrize("name", ["sweeps.db", "sweeps.db-journal", "sweeps.db-wal", "Sweeps.DB-shm",
                                  "default-model.json"])
def test_a_run_may_not_take_the_name_of_the_experiments_folders_own_files(tmp_path, name):
    """A run folder named sweeps.db-journal made every sweep fail ("disk I/O error")."""
    with pytest.raises(RunError, match="experiments folder's own files"):
        create_run(TrainConfig.for_architecture("mini_xception"), tmp_path, name)
    assert not (tmp_path / name).exists()
    assert is_run_id("sweeps-db") and is_run_id("my.sweeps.db")
