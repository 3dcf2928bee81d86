"""Who may act on the dashboard: reading is open, actions need a signed-in user once auth is set up.

Streamlit's built-in authentication (``st.login`` / ``st.user`` / ``st.logout``) is switched on by an
``[auth]`` section in ``.streamlit/secrets.toml`` (an OpenID Connect provider). Without one nobody
signs in and every action is allowed: the dashboard must then stay on localhost (the shipped
``.streamlit/config.toml`` binds it there) or behind an SSH tunnel. With one, launching, stopping,
resuming and deleting runs, checking a dataset, TTA evaluations, photo and dataset uploads are
refused to visitors who have not signed in. An ``[access]`` section with ``allowed = [...]`` (e-mail
addresses, or ``@domain`` for everyone at a domain) narrows that to the users it names: anyone else
who signs in can look but not act. The pages check ``actions_allowed()`` in the callbacks and
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


def allowed_list() -> list[str] | None:
    """``[access] allowed`` from the secrets, lower-cased: e-mail addresses and ``@domain`` entries;
    None without an ``[access]`` section (every signed-in user may act). A section whose
    ``allowed`` is missing or not a list of strings allows nobody rather than everybody."""
    secrets = st.secrets
    if not secrets.load_if_toml_exists() or "access" not in secrets:
        return None
    try:
        value = secrets["access"].get("allowed")
    except AttributeError:  # [access] is not a table
        return []
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list | tuple):
        return []
    return [entry.strip().lower() for entry in entries if isinstance(entry, str) and entry.strip()]


def user_allowed() -> bool:
    """Whether the signed-in user is on ``allowed_list()`` (True when there is no list). The match
    is on the e-mail address the provider gives, refused when the provider says it is unverified."""
    allowed = allowed_list()
    if allowed is None:
        return True
    email = str(st.user.get("email") or "").strip().lower()
    if not email or "@" not in email or st.user.get("email_verified") is False:
        return False
    domain = "@" + email.rsplit("@", 1)[1]
    return email in allowed or domain in allowed


def actions_allowed() -> bool:
    """True when auth is not configured (a dashboard kept on localhost) or the user is signed in
    (and on the ``[access] allowed`` list, when there is one)."""
    return not auth_configured() or (signed_in() and user_allowed())


def user_label(with_email: bool = False) -> str:
    """The signed-in user's name or e-mail address, for the sidebar (``with_email``: both)."""
    name, email = st.user.get("name"), st.user.get("email")
    if with_email and name and email:
        return f"{name} ({email})"
    return str(name or email or "signed in")


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


NOT_ALLOWED = ("is not on this dashboard's list of users who may act on it (`[access] allowed` in "
               "its `.streamlit/secrets.toml`): ask its owner to add you")


def sign_in_notice(action: str) -> None:
    """Say that ``action`` (e.g. "launch training") needs a signed-in user, with a Sign in button,
    or, to a signed-in user the allowed list leaves out, that they may not."""
    if signed_in():
        st.warning(f"You cannot {action}: {escape_markdown(user_label(with_email=True))} {NOT_ALLOWED}.",
                   icon=":material/lock:")
        return
    st.warning(f"Sign in to {action}: this dashboard lets only signed-in users act on it.",
               icon=":material/lock:")
    sign_in_button(key=f"access.sign_in.{action}")


def sidebar_status() -> None:
    """Signed-in state with a Sign out button (or a Sign in button), when auth is configured."""
    if not auth_configured():
        return
    if signed_in():
        st.caption(f"Signed in as **{escape_markdown(user_label())}**" + (
            "" if user_allowed() else ": you can look, but not act (not on this dashboard's allowed list)."))
        st.button("Sign out", key="access.sign_out", icon=":material/logout:", on_click=st.logout)
    else:
        st.caption("Not signed in: you can look, but not act.")
        sign_in_button(key="access.sign_in.sidebar")
