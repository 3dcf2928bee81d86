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

import functools
import tomllib
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAuthError

from fer.ui import escape_markdown

SIGN_IN_ERROR = "access.sign_in_error"  # why the last sign-in could not start, shown once


def secrets_problem() -> str | None:
    """Why a secrets file that exists cannot be read (None when every one reads, or there is none).

    Streamlit treats a secrets file it cannot parse (a missing ``]``, a Windows path with
    backslashes in a basic string) like no file at all, which would turn sign-in off for everyone:
    fer-lab reads the files itself and then locks every action instead (fails closed).
    """
    from streamlit import config

    for name in config.get_option("secrets.files"):
        path = Path(name)
        try:
            info = path.stat()
        except OSError:
            continue
        if path.is_file() and (problem := _parse_problem(str(path), info.st_mtime_ns, info.st_size)):
            return problem
    return None


@functools.lru_cache(maxsize=16)
def _parse_problem(path: str, mtime_ns: int, size: int) -> str | None:
    """Why the secrets file at ``path`` cannot be parsed, None when it can. Cached by the file's
    modification time and size: ``actions_allowed`` asks many times per page view."""
    try:
        tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"{path} cannot be read ({exc})"
    return None


def auth_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` has an ``[auth]`` section (False without a secrets file).

    An ``[auth]`` section that is empty or incomplete still counts: actions stay refused rather
    than open to everyone, and signing in reports what is missing. A secrets file that cannot be
    read counts too (``secrets_problem``): nobody can act until it is fixed.
    """
    if secrets_problem() is not None:
        return True
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


def email_verified(claim) -> bool:
    """Whether an ``email_verified`` claim lets the address count: absent (a provider that does not
    send it), or true as a boolean or as the text some providers send ("true"). ``False``,
    ``"false"``, ``0`` or anything else refuses."""
    if claim is None:
        return True
    if isinstance(claim, bool):
        return claim
    return isinstance(claim, str) and claim.strip().lower() == "true"


def user_allowed() -> bool:
    """Whether the signed-in user is on ``allowed_list()`` (True when there is no list). The match
    is on the e-mail address the provider gives, refused when the provider says it is unverified
    (``email_verified``)."""
    allowed = allowed_list()
    if allowed is None:
        return True
    email = str(st.user.get("email") or "").strip().lower()
    if not email or "@" not in email or not email_verified(st.user.get("email_verified")):
        return False
    domain = "@" + email.rsplit("@", 1)[1]
    return email in allowed or domain in allowed


def actions_allowed() -> bool:
    """True when auth is not configured (a dashboard kept on localhost) or the user is signed in
    (and on the ``[access] allowed`` list, when there is one); never while a secrets file cannot
    be read."""
    if secrets_problem() is not None:
        return False
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
    if problem := secrets_problem():
        st.error(f"You cannot {action}: {escape_markdown(problem)}. Every action is locked until "
                 "the dashboard's owner fixes the file.", icon=":material/lock:")
        return
    if signed_in():
        st.warning(f"You cannot {action}: {escape_markdown(user_label(with_email=True))} {NOT_ALLOWED}.",
                   icon=":material/lock:")
        return
    st.warning(f"Sign in to {action}: this dashboard lets only signed-in users act on it.",
               icon=":material/lock:")
    sign_in_button(key=f"access.sign_in.{action}")


def sidebar_status() -> None:
    """Signed-in state with a Sign out button (or a Sign in button), when auth is configured; on
    every page, the reason every action is locked when a secrets file cannot be read."""
    if problem := secrets_problem():
        st.error(f"Every action is locked: {escape_markdown(problem)}. Fix the file and reload.",
                 icon=":material/lock:")
        return
    if not auth_configured():
        return
    if signed_in():
        st.caption(f"Signed in as **{escape_markdown(user_label())}**" + (
            "" if user_allowed() else ": you can look, but not act (not on this dashboard's allowed list)."))
        st.button("Sign out", key="access.sign_out", icon=":material/logout:", on_click=st.logout)
    else:
        st.caption("Not signed in: you can look, but not act.")
        sign_in_button(key="access.sign_in.sidebar")
