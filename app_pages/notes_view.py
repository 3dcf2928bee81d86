"""A run's tags and notes: shown on the Runs page's run cards, edited on the Compare page. A module
those pages import, not a page; notes.json is read and written by fer.run_folder."""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from app_pages.access import actions_allowed
from fer.run_folder import RunError, RunFolder
from fer.runs import RunSummary, run_path
from fer.schemas import MAX_TAGS, NOTES_MAX_CHARS
from fer.ui import escape_markdown

FLASH = "notes.flash"  # what the last Save did, shown once above the editor
# How much of a run's notes its card shows.
PREVIEW_CHARS = 300


def tags_key(run_id: str) -> str:
    return f"notes.tags.{run_id}"


def text_key(run_id: str) -> str:
    return f"notes.text.{run_id}"


def as_markdown(text: str) -> str:
    """Text shown literally, its line breaks kept."""
    return "  \n".join(escape_markdown(line) for line in text.splitlines())


def notes_summary(run: RunSummary) -> None:
    """The run's tags and the start of its notes, with a link to edit them (on its Runs card)."""
    notes, problems = RunFolder(run.path).read_notes_checked()
    if notes.tags:
        st.markdown(":material/sell: " + " · ".join(f"**{escape_markdown(tag)}**" for tag in notes.tags))
    if notes.text:
        preview = notes.text if len(notes.text) <= PREVIEW_CHARS else notes.text[:PREVIEW_CHARS] + "…"
        st.caption(as_markdown(preview))
    if problems:
        st.caption(f"Tags and notes damaged ({escape_markdown(problems[0])}); saving new ones "
                   "replaces them.")
    st.page_link("app_pages/compare.py", icon=":material/edit_note:", query_params={"run": run.run_id},
                 label="Edit tags and notes" if notes.tags or notes.text else "Add tags or notes")


def save_notes(run_id: str) -> None:
    """Write the editor's tags and notes to the run's folder (the Save button's callback)."""
    if not actions_allowed():  # the button is disabled too, but a click may still reach the server
        st.session_state[FLASH] = ("warning", "Sign in to edit tags and notes: nothing was saved.")
        return
    try:
        folder = RunFolder(run_path(run_id))
        if not folder.is_run():
            raise RunError(f"there is no run {run_id!r} any more")
        folder.write_notes(st.session_state.get(tags_key(run_id)) or [],
                           st.session_state.get(text_key(run_id)) or "")
    except RunError as exc:
        st.session_state[FLASH] = ("error", f"Nothing was saved: {exc}.")
    except OSError as exc:
        st.session_state[FLASH] = ("error", f"Nothing was saved: cannot write to the folder of run "
                                            f"{run_id} ({exc.strerror or exc}).")
    else:
        st.session_state[FLASH] = ("success", f"Saved the tags and notes of run {run_id}.")


def notes_editor(run: RunSummary, known_tags: Iterable[str]) -> None:
    """Tags (any of ``known_tags`` or new ones) and notes of ``run``, with a Save button."""
    if flash := st.session_state.pop(FLASH, None):
        getattr(st, flash[0])(flash[1])
    notes, problems = RunFolder(run.path).read_notes_checked()
    if problems:
        st.warning("The run's notes.json is damaged; what could be read is shown, and saving replaces "
                   "it:\n" + "\n".join(f"- {escape_markdown(problem)}" for problem in problems[:5]))
    locked = not actions_allowed()
    options = sorted(set(known_tags) | set(notes.tags), key=str.casefold)
    with st.form(f"notes.form.{run.run_id}", border=False):
        st.multiselect("Tags", options, default=list(notes.tags), key=tags_key(run.run_id),
                       accept_new_options=True, max_selections=MAX_TAGS, disabled=locked,
                       placeholder="Pick a tag or type a new one",
                       help=f"Up to {MAX_TAGS} short labels (e.g. baseline, augmentation-study) to "
                            "filter runs by.")
        st.text_area("Notes", notes.text, key=text_key(run.run_id), max_chars=NOTES_MAX_CHARS,
                     disabled=locked, height=140, placeholder="What this run tried, what you saw")
        st.form_submit_button("Save tags and notes", icon=":material/save:", disabled=locked,
                              on_click=save_notes, args=(run.run_id,))
