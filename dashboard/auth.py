"""The dashboard's login: with ``REGSEARCH_API_TOKEN`` set, every page asks for the token first.

The API's bearer token guards the dashboard too (one secret per deployment). Until the browser
session holds the right token, the entry (``dashboard/app.py``) shows a password field and
nothing else: no page script runs, so no job, trial or database detail reaches the browser.
The comparison is constant time (``hmac.compare_digest``), as the API's. Without a token the
dashboard is open, which ``regsearch.dashboard.run`` allows on loopback only.
"""

from __future__ import annotations

import hmac

from regsearch.config import Settings

SESSION_KEY = "regsearch_token"

__all__ = ["SESSION_KEY", "configured_token", "require_login", "token_matches"]


def configured_token(settings: Settings) -> str | None:
    """The token, or None when unset or blank (a blank token must not count as protection)."""
    token = (settings.api_token or "").strip()
    return token or None


def token_matches(given: object, token: str) -> bool:
    """True when ``given`` is the token (constant time; anything but a string is not)."""
    return isinstance(given, str) and hmac.compare_digest(given.strip().encode(), token.encode())


def require_login(settings: Settings) -> bool:
    """True when the session may see the pages; otherwise renders the token form (and nothing
    else). Streamlit only: call it from the entry before any page runs."""
    token = configured_token(settings)
    if token is None:
        return True
    import streamlit as st

    if token_matches(st.session_state.get(SESSION_KEY), token):
        return True
    st.title("regsearch")
    st.caption("This dashboard is protected: enter its token (the `REGSEARCH_API_TOKEN` it was started with).")
    with st.form("login", clear_on_submit=True):
        given = st.text_input("Token", type="password", key="login_token")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if token_matches(given, token):
            st.session_state[SESSION_KEY] = given
            st.rerun()
        st.error("That is not the dashboard's token.")
    return False
