"""*Clone settings into Train* (Runs and Sweeps pages): the Train page opens with a run's settings
in its form (``fer.train_form`` turns them into form values)."""

from __future__ import annotations

import streamlit as st

from fer.train_form import CLONE_REQUEST, TRAIN_PAGE


def request_clone(run_id: str) -> None:
    """Open the Train page with ``run_id``'s settings in its form (call it from a button's
    ``if``, not from a callback: it switches page)."""
    st.session_state[CLONE_REQUEST] = run_id
    st.switch_page(TRAIN_PAGE)
