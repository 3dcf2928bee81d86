""""Use as the default model" and "Restore the shipped model" (Runs and Evaluate pages): the model
Predict, Evaluate and ``python -m fer.evaluate`` start from (``fer.default_model``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages.access import actions_allowed
from fer.default_model import (
    DefaultModelError,
    check_candidate,
    choose_default,
    current_default,
    public_accuracy,
    restore_shipped,
)
from fer.ui import escape_markdown, percent

MESSAGE = "default_model.message"  # (kind, text) from the last click, shown once


def _name(default) -> str:
    return "the shipped model" if default.shipped else default.source


def _choose(run_id: str, changed: str | None = None) -> None:
    if changed:
        st.session_state[changed] = True  # the page reads everything afresh
    if not actions_allowed():  # the button is disabled too; a forged click still ends here
        st.session_state[MESSAGE] = ("warning", "Sign in to change the default model.")
        return
    try:
        choose_default(run_id)
    except (DefaultModelError, OSError) as exc:
        st.session_state[MESSAGE] = ("error", f"Cannot use {run_id} as the default model: {exc}")
        return
    st.session_state[MESSAGE] = ("success", f"{run_id} is now the default model: Predict and Evaluate start "
                                            "from it.")


def _restore(changed: str | None = None) -> None:
    if changed:
        st.session_state[changed] = True
    if not actions_allowed():
        st.session_state[MESSAGE] = ("warning", "Sign in to change the default model.")
        return
    try:
        restore_shipped()
    except OSError as exc:
        st.session_state[MESSAGE] = ("error", f"Cannot restore the shipped model: {exc}")
        return
    st.session_state[MESSAGE] = ("success", "The shipped model is the default model again.")


def show_message() -> None:
    if message := st.session_state.pop(MESSAGE, None):
        kind, text = message
        getattr(st, kind)(escape_markdown(text))


def default_model_actions(run_id: str, folder: Path, key: str, changed: str | None = None) -> None:
    """For run (or ensemble) ``run_id``: a "Use as the default model" popover whose confirmation
    shows the current and the new model's PublicTest accuracy, or, when it is the default, a note
    and "Restore the shipped model". A click sets ``st.session_state[changed]`` (a page whose
    fragment must rerun the whole page)."""
    default = current_default()
    locked = not actions_allowed()
    if default.source == run_id:
        st.caption(":material/star: The default model: Predict and Evaluate start from it.")
        st.button("Restore the shipped model", key=f"{key}.restore",
                  icon=":material/settings_backup_restore:", on_click=_restore, args=(changed,),
                  disabled=locked)
        return
    try:
        check_candidate(run_id)
    except DefaultModelError:
        return  # training, damaged or without a model: nothing to offer
    with st.popover("Use as the default model", icon=":material/star:", disabled=locked):
        current, new = public_accuracy(default.folder), public_accuracy(folder)
        st.markdown("Predict, Evaluate and `python -m fer.evaluate` will start from "
                    f"**{escape_markdown(run_id)}** instead of {escape_markdown(_name(default))}.")
        st.markdown(f"PublicTest accuracy: {escape_markdown(_name(default))} **{percent(current)}** → "
                    f"{escape_markdown(run_id)} **{percent(new)}**")
        if new is None:
            st.caption("This model has no evaluation yet: evaluate it first to compare.")
        st.caption("The shipped files are kept: **Restore the shipped model** undoes this.")
        st.button("Make it the default", key=f"{key}.choose", type="primary", on_click=_choose,
                  args=(run_id, changed), disabled=locked)


def fallback_notice() -> None:
    """Why a default model chosen before is not used (deleted, damaged, training again)."""
    if notice := current_default().notice:
        st.warning(escape_markdown(notice), icon=":material/swap_horiz:")
