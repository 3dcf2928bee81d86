"""Atomic writes (``fer.files.write_text_atomic``): whole or nothing, with the mode a plain write
would give (mkstemp alone makes every run file 0600, unreadable to a dashboard run as another user
of the same group)."""

from __future__ import annotations

import os
import stat

import fer.files
from fer.files import write_json_atomic, write_text_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_gets_the_umask_mode_not_0600(tmp_path, monkeypatch):
    assert fer.files._process_umask() == fer.files._UMASK
    for umask, expected in ((0o022, 0o644), (0o027, 0o640)):
        monkeypatch.setattr(fer.files, "_UMASK", umask)  # read once, at import
        write_text_atomic(tmp_path / f"status-{umask:o}.json", "{}")
        assert mode(tmp_path / f"status-{umask:o}.json") == expected
        assert (tmp_path / f"status-{umask:o}.json").read_text() == "{}"


def test_an_existing_files_mode_is_kept_and_no_temporary_file_is_left(tmp_path):
    target = tmp_path / "notes.json"
    target.write_text("old")
    target.chmod(0o640)
    write_json_atomic(target, {"a": 1})
    assert mode(target) == 0o640 and target.read_text() == '{\n  "a": 1\n}\n'
    write_text_atomic(target, "new")
    assert [path.name for path in tmp_path.iterdir()] == ["notes.json"]
