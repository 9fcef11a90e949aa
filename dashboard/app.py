"""The dashboard's entry (``streamlit run dashboard/app.py``; ``dashboard/server.py`` serves it as the
service does): page setup and navigation only."""

from __future__ import annotations

import streamlit as st

# The pages import `regsearch.dashboard.*`, which the installed distribution provides.
from regsearch.config import get_settings
from regsearch.dashboard.auth import require_login

# The tab's icon is an emoji: Streamlit draws it in the page (a data: URL). A ":material/...:" icon
# would be fetched from fonts.gstatic.com, a request off the machine (it fails offline).
st.set_page_config(page_title="regsearch", page_icon="🎛️", layout="wide")
# With REGSEARCH_API_TOKEN set, nothing but the token form shows until the session holds it;
# the pages are still declared, so the address asked for (/job?job=...) opens once signed in.
signed_in = require_login(get_settings())

navigation = st.navigation([
    st.Page("app_pages/jobs.py", title="Jobs", icon=":material/view_list:", default=True),
    st.Page("app_pages/job.py", title="Job", icon=":material/insights:", url_path="job"),
    st.Page("app_pages/trial.py", title="Trial", icon=":material/show_chart:", url_path="trial"),
    st.Page("app_pages/compare.py", title="Compare jobs", icon=":material/compare_arrows:", url_path="compare"),
], position="sidebar" if signed_in else "hidden")
if signed_in:
    navigation.run()
