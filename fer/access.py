"""Who may act on the dashboard: reading is open, actions need a signed-in user once auth is set up.

Streamlit's built-in authentication (``st.login`` / ``st.user`` / ``st.logout``) is switched on by an
``[auth]`` section in ``.streamlit/secrets.toml`` (an OpenID Connect provider). Without one nobody
signs in and every action is allowed: the dashboard must then stay on localhost (the shipped
``.streamlit/config.toml`` binds it there) or behind an SSH tunnel. With one, launching, stopping,
resuming and deleting runs, checking a dataset, TTA evaluations, photo and dataset uploads are
refused to visitors who have not signed in. The pages check ``actions_allowed()`` in the callbacks and
functions that act, not only when drawing their buttons.
"""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAuthError

from fer.ui import escape_markdown

SIGN_IN_ERROR = "access.sign_in_error"  # why the last sign-in could not start, shown once


def auth_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` has an ``[auth]`` section (False without a secrets file).

    An ``[auth]`` section that is empty or incomplete still counts: actions stay refused rather
    than open to everyone, and signing in reports what is missing.
    """
    secrets = st.secrets
    return secrets.load_if_toml_exists() and "auth" in secrets


def signed_in() -> bool:
    """Whether the visitor has signed in through the identity provider."""
    return st.user.get("is_logged_in") is True


def actions_allowed() -> bool:
    """True when auth is not configured (a dashboard kept on localhost) or the user is signed in."""
    return not auth_configured() or signed_in()


def user_label() -> str:
    """The signed-in user's name or e-mail address, for the sidebar."""
    return str(st.user.get("name") or st.user.get("email") or "signed in")


def sign_in() -> None:
    """Start the sign-in (a button callback); a missing Authlib or bad ``[auth]`` becomes a message."""
    try:
        st.login()
    except StreamlitAuthError as exc:
        st.session_state[SIGN_IN_ERROR] = f"Cannot sign in: {exc}"


def sign_in_button(key: str) -> None:
    error = st.session_state.pop(SIGN_IN_ERROR, None)
    if error:
        st.error(error)
    st.button("Sign in", key=key, icon=":material/login:", on_click=sign_in)


def sign_in_notice(action: str) -> None:
    """Say that ``action`` (e.g. "launch training") needs a signed-in user, with a Sign in button."""
    st.warning(f"Sign in to {action}: this dashboard lets only signed-in users act on it.",
               icon=":material/lock:")
    sign_in_button(key=f"access.sign_in.{action}")


def sidebar_status() -> None:
    """Signed-in state with a Sign out button (or a Sign in button), when auth is configured."""
    if not auth_configured():
        return
    if signed_in():
        st.caption(f"Signed in as **{escape_markdown(user_label())}**")
        st.button("Sign out", key="access.sign_out", icon=":material/logout:", on_click=st.logout)
    else:
        st.caption("Not signed in: you can look, but not act.")
        sign_in_button(key="access.sign_in.sidebar")
