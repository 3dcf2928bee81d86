"""Compare runs: tags and notes kept in the run folder (notes.json), the parallel-coordinates chart
of hyperparameters against the best validation accuracy, its filters, and editing from the page."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_driver import array, figures, no_exception, open_page, page_links, texts
from fake_runs import fake_run
from test_access import SIGNED_IN, SIGNED_OUT, button, open_as

from fer.run_folder import RunError, RunFolder, RunNotes, clean_tags
from fer.runs import experiments_dir, list_runs
from fer.schemas import MAX_TAGS, NOTES_MAX_BYTES, NOTES_MAX_CHARS, TAG_MAX_CHARS
from fer.ui import MISSING, TARGET, filter_runs, parallel_dimension, parallel_figure, parameter_frame


@pytest.fixture
def root() -> Path:
    return experiments_dir()


def set_config(run_dir: Path, **changes) -> None:
    """Edit config.json as another version (or a hand) left it; None removes a key."""
    config = json.loads((run_dir / "config.json").read_text())
    config.update(changes)
    (run_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))


# ---- notes.json -----------------------------------------------------------------------------------

def test_tags_and_notes_round_trip_through_the_run_folder(root):
    folder = RunFolder(fake_run(root, "a"))
    assert folder.read_notes_checked() == (RunNotes(), [])
    written = folder.write_notes(["  baseline ", "lr  study", "Baseline", ""], "tried lr 1e-3\r\nok  \n")
    assert written == RunNotes(("baseline", "lr study"), "tried lr 1e-3\nok")
    assert folder.read_notes_checked() == (written, [])
    assert json.loads(folder.notes_file.read_text())["tags"] == ["baseline", "lr study"]
    assert not [p.name for p in folder.path.iterdir() if p.name.endswith(".tmp")]  # atomic write
    folder.write_notes([], "")
    assert folder.read_notes() == RunNotes()


@pytest.mark.parametrize("tags, text, problem", [
    (["x" * (TAG_MAX_CHARS + 1)], "", "at most 40"),
    (["a\x00b"], "", "control character"),
    ([f"t{i}" for i in range(MAX_TAGS + 1)], "", f"at most {MAX_TAGS}"),
    ([], "y" * (NOTES_MAX_CHARS + 1), "at most 10,000"),
])
def test_oversized_or_odd_tags_and_notes_are_refused_and_nothing_is_written(root, tags, text, problem):
    folder = RunFolder(fake_run(root, "a"))
    folder.write_notes(["kept"], "kept")
    with pytest.raises(RunError, match=problem):
        folder.write_notes(tags, text)
    assert folder.read_notes() == RunNotes(("kept",), "kept")


def test_clean_tags_keeps_the_first_spelling_of_a_repeated_tag():
    assert clean_tags(["Aug", "aug", "AUG ", "flip"]) == ("Aug", "flip")


HOSTILE_NOTES = {
    "a list": b"[1, 2]",
    "binary": os.urandom(512),
    "deep nesting": b"[" * 100_000,
    "wrong types": json.dumps({"tags": "baseline", "notes": 5}).encode(),
    "bad tags": json.dumps({"tags": ["ok", 7, "x" * 500, "a\u0007b"], "notes": "kept"}).encode(),
    "oversized": json.dumps({"tags": [], "notes": "x" * NOTES_MAX_BYTES}).encode(),
}


@pytest.mark.parametrize("case", [*HOSTILE_NOTES, "fifo", "/dev/zero", "folder", "link to passwd"])
def test_a_hostile_notes_file_reads_as_no_notes_with_a_problem_and_pages_open(root, case):
    healthy = fake_run(root, "healthy", created=1000)
    RunFolder(healthy).write_notes(["good"], "healthy notes")
    path = RunFolder(fake_run(root, "hostile", created=2000)).notes_file
    if case == "fifo":
        os.mkfifo(path)
    elif case == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif case == "folder":
        path.mkdir()
    elif case == "link to passwd":
        path.symlink_to("/etc/passwd")
    else:
        path.write_bytes(HOSTILE_NOTES[case])
    notes, problems = RunFolder(path.parent).read_notes_checked()
    assert problems and all(len(problem) < 200 for problem in problems)
    assert notes.tags in ((), ("ok",)) and notes.text in ("", "kept")
    states = {run.run_id: run.state for run in list_runs(root)}
    assert states == {"healthy": "finished", "hostile": "finished"}
    for page, params in (("compare", {"run": "hostile"}), ("runs", {"run": ["hostile", "healthy"]})):
        app = open_page(page, params)
        no_exception(app)
        shown = " ".join(texts(app.markdown) + texts(app.caption) + texts(app.warning))
        assert "root:x:0:0" not in shown and "damaged" in shown
    assert "**good**" in shown  # the healthy run's tags on its Runs card


# ---- parallel coordinates -------------------------------------------------------------------------

def test_a_numeric_hyperparameter_is_a_log_axis_and_a_missing_value_gets_its_own_tick():
    dimension = parallel_dimension([1e-3, None, 1e-2, float("nan")], "learning rate", log=True)
    assert dimension["label"] == "learning rate (log)"
    values = dimension["values"]
    assert values[0] == pytest.approx(-3) and values[2] == pytest.approx(-2)
    assert values[1] == values[3] < -3  # both missing runs sit below the others, on one tick
    assert dimension["ticktext"][0] == MISSING and dimension["tickvals"][0] == values[1]
    assert dimension["ticktext"][1:] == ["0.001", "0.01"]
    assert dimension["range"][0] <= values[1] and dimension["range"][1] >= -2


def test_mixed_kinds_of_values_make_a_categorical_axis_with_a_missing_tick():
    dimension = parallel_dimension(["adam", 3, None, True, "adam"], "optimizer")
    assert dimension["ticktext"] == ["3", "adam", "True", MISSING]
    names = [dimension["ticktext"][code] for code in dimension["values"]]
    assert names == ["adam", "3", MISSING, "True", "adam"]


def test_a_log_axis_falls_back_to_linear_when_a_value_is_not_positive():
    dimension = parallel_dimension([0.0, 1e-4, 1e-3], "weight decay", log=True)
    assert dimension["label"] == "weight decay" and dimension["values"] == [0.0, 1e-4, 1e-3]


def test_one_value_still_gets_an_axis_with_a_span():
    dimension = parallel_dimension([64, 64], "batch size")
    low, high = dimension["range"]
    assert low < 64 < high and dimension["ticktext"] == ["64"]


def test_parallel_figure_over_runs_with_mixed_and_missing_hyperparameters(root):
    fake_run(root, "adam", created=1000)
    sgd = fake_run(root, "sgd", created=2000)
    set_config(sgd, optimizer="sgd", learning_rate=0.01)
    RunFolder(sgd).write_status(best_val_accuracy=0.55)
    odd = fake_run(root, "odd", created=3000)
    # Damaged: text where a number belongs, and no dropout (only the file's plain values are kept).
    set_config(odd, batch_size="many", dropout=None)
    waiting = fake_run(root, "waiting", state="running", epochs_done=0, created=4000)
    frame = parameter_frame(list_runs(root))
    assert frame.loc["odd", "dropout"] is None or np.isnan(frame.loc["odd", "dropout"])
    assert frame.loc["waiting", TARGET] is None or np.isnan(frame.loc["waiting", TARGET])
    figure = parallel_figure(frame, ["optimizer", "learning_rate", "dropout", "batch_size"])
    trace = figure.data[0]
    assert trace.type == "parcoords"
    labels = [dimension.label for dimension in trace.dimensions]
    assert labels == ["optimizer", "learning rate (log)", "dropout", "batch size", TARGET]
    accuracy = list(trace.dimensions[-1].values)
    assert len(accuracy) == 3 and waiting.name not in frame.index[frame[TARGET].notna()].tolist()
    assert sorted(accuracy) == pytest.approx(sorted([0.36, 0.55, 0.36]))
    assert list(trace.line.color) == accuracy
    assert MISSING in trace.dimensions[2].ticktext  # the dropout the damaged config lacks
    assert "many" in trace.dimensions[3].ticktext


def test_filters_keep_runs_of_any_chosen_state_architecture_and_tag(root):
    fake_run(root, "a", created=1000)
    fake_run(root, "b", state="failed", created=2000)
    fake_run(root, "c", architecture="vgg_fer", created=3000)
    runs = list_runs(root)
    tags = {"a": ("Baseline",), "b": ("aug",), "c": ()}
    assert [run.run_id for run in filter_runs(runs, tags)] == ["c", "b", "a"]
    assert [run.run_id for run in filter_runs(runs, tags, states=["failed"])] == ["b"]
    assert [run.run_id for run in filter_runs(runs, tags, architectures=["vgg_fer"])] == ["c"]
    assert [run.run_id for run in filter_runs(runs, tags, with_tags=["baseline", "aug"])] == ["b", "a"]
    assert filter_runs(runs, tags, states=["finished"], with_tags=["aug"]) == []


# ---- the page -------------------------------------------------------------------------------------

def test_compare_page_without_runs_points_to_train():
    app = open_page("compare")
    no_exception(app)
    assert "No runs yet" in app.info[0].value
    assert [label for label, _ in page_links(app)] == ["Train a model"]


def test_compare_page_charts_the_runs_and_filters_them_by_state_and_tag(root):
    fake_run(root, "a", created=1000)
    b = fake_run(root, "b", created=2000)
    set_config(b, learning_rate=0.01, batch_size=128)
    RunFolder(b).write_status(best_val_accuracy=0.5)
    fake_run(root, "c", state="failed", created=3000)
    RunFolder(root / "a").write_notes(["baseline"], "first")
    app = open_page("compare")
    no_exception(app)
    assert app.title[0].value == "Compare runs"
    assert app.multiselect(key="compare.axes").value == ["batch_size", "learning_rate"]
    trace = figures(app)[0].data[0]
    assert [d.label for d in trace.dimensions] == ["batch size", "learning rate (log)", TARGET]
    assert len(array(trace.dimensions[-1].values)) == 3
    table = app.dataframe[0].value
    assert list(table["run"]) == ["c", "b", "a"]
    assert table.set_index("run").loc["a", "tags"] == "baseline"

    app.multiselect(key="compare.states").set_value(["finished"]).run()
    assert list(app.dataframe[0].value["run"]) == ["b", "a"]
    app.multiselect(key="compare.tags").set_value(["baseline"]).run()
    no_exception(app)
    assert list(app.dataframe[0].value["run"]) == ["a"]
    assert len(array(figures(app)[0].data[0].dimensions[-1].values)) == 1
    app.multiselect(key="compare.states").set_value(["failed"]).run()
    assert "No run matches these filters." in texts(app.info)


def test_runs_without_a_validation_accuracy_are_named_and_left_out_of_the_chart(root):
    fake_run(root, "done", created=1000)
    fake_run(root, "new", state="running", epochs_done=0, created=2000)
    app = open_page("compare")
    no_exception(app)
    assert len(array(figures(app)[0].data[0].dimensions[-1].values)) == 1
    assert any("Left out, with no validation accuracy yet: new." in text for text in texts(app.caption))


def test_editing_tags_and_notes_on_the_page_writes_notes_json(root):
    fake_run(root, "a", created=1000)
    run_dir = fake_run(root, "b", created=2000)
    app = open_page("compare", {"run": "b"})
    assert app.selectbox(key="compare.run").value == "b"
    app.multiselect(key="notes.tags.b").set_value(["augmentation", "baseline"])
    app.text_area(key="notes.text.b").set_value("flip + rotation\nbetter than a")
    button(app, "Save tags and notes").click()
    app.run()
    no_exception(app)
    assert "Saved the tags and notes of run b." in texts(app.success)
    notes = RunNotes(("augmentation", "baseline"), "flip + rotation\nbetter than a")
    assert RunFolder(run_dir).read_notes() == notes
    assert app.multiselect(key="compare.tags").options == ["augmentation", "baseline"]

    runs = open_page("runs", {"run": "b"})
    no_exception(runs)
    assert ":material/sell: **augmentation** · **baseline**" in texts(runs.markdown)
    assert any("flip + rotation" in text for text in texts(runs.caption))
    links = [(label, Path(page).stem) for label, page in page_links(runs)]
    assert ("Edit tags and notes", "compare") in links


def test_a_too_long_tag_is_a_message_and_the_notes_stay(root):
    run_dir = fake_run(root, "a")
    RunFolder(run_dir).write_notes(["kept"], "kept")
    app = open_page("compare")
    app.multiselect(key="notes.tags.a").set_value(["kept", "x" * 60])
    button(app, "Save tags and notes").click()
    app.run()
    no_exception(app)
    assert any("Nothing was saved" in text and "at most 40" in text for text in texts(app.error))
    assert RunFolder(run_dir).read_notes() == RunNotes(("kept",), "kept")


def test_signed_out_visitor_can_read_but_not_edit_tags_and_notes(root):
    run_dir = fake_run(root, "a")
    RunFolder(run_dir).write_notes(["kept"], "kept")
    before = RunFolder(run_dir).notes_file.read_bytes()
    app = open_as("compare", auth=True)
    no_exception(app)
    assert figures(app) and button(app, "Save tags and notes").disabled
    assert any(text.startswith("Sign in to edit tags and notes") for text in texts(app.warning))
    # Drawn for a signed-in user, clicked after signing out: the Save itself checks.
    app = open_as("compare", auth=True, user=SIGNED_IN)
    assert not button(app, "Save tags and notes").disabled
    app.text_area(key="notes.text.a").set_value("vandalised")
    app.user = dict(SIGNED_OUT)
    button(app, "Save tags and notes").click()
    app.run()
    no_exception(app)
    assert "Sign in to edit tags and notes: nothing was saved." in texts(app.warning)
    assert RunFolder(run_dir).notes_file.read_bytes() == before  # not even rewritten


def test_the_table_shows_the_chosen_axes_with_missing_values_as_a_dash(root):
    fake_run(root, "a", created=1000)
    b = fake_run(root, "b", created=2000)
    set_config(b, dropout=None, epochs="many")  # damaged: only the file's plain values are read
    app = open_page("compare")
    app.multiselect(key="compare.axes").set_value(["learning_rate", "dropout"]).run()
    no_exception(app)
    table = app.dataframe[0].value.set_index("run")
    dropout = json.loads((root / "a" / "config.json").read_text())["dropout"]
    assert table.loc["b", "dropout"] == "–" and table.loc["a", "dropout"] == str(dropout)
    assert pd.to_numeric(table["best val acc"]).tolist() == pytest.approx([36.0, 36.0])


def test_many_distinct_values_get_round_ticks():
    rates = parallel_dimension(list(10 ** np.linspace(-4, -2.5, 12)), "learning rate", log=True)
    # From a round number at or below the lowest value to one at or above the highest.
    assert rates["ticktext"] == ["0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005"]
    assert rates["range"] == pytest.approx([-4, math.log10(0.005)])
    dropout = parallel_dimension(list(np.linspace(0.05, 0.55, 11)), "dropout")
    assert dropout["tickvals"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert dropout["range"] == [0.0, 0.6]


@pytest.mark.parametrize("text", ["=HYPERLINK(\"https://evil.example\",\"open\")", "=1+1", "@SUM(A1)",
                                  "+1", "-1+2"])
def test_formula_like_tags_and_notes_reach_the_tables_csv_as_text(root, text):
    """The table's own "Download as CSV" exports what it holds: a note or tag that a spreadsheet
    would run as a formula is held with a leading apostrophe."""
    run = fake_run(root, "a")
    RunFolder(run).write_notes([text[:TAG_MAX_CHARS]], text)
    app = open_page("compare")
    no_exception(app)
    table = app.dataframe[0].value.set_index("run")
    for column in ("tags", "notes"):
        cell = str(table.loc["a", column])
        assert cell.startswith("'") and cell[1:2] == text[:1], (column, cell)
    assert table.loc["a", "notes"] == "'" + text[:80]
