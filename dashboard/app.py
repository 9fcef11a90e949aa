"""The dashboard's entry (``streamlit run dashboard/app.py``): page setup and navigation only."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

st.set_page_config(page_title="regsearch", page_icon=":material/tune:", layout="wide")

navigation = st.navigation([
    st.Page("app_pages/jobs.py", title="Jobs", icon=":material/view_list:", default=True),
    st.Page("app_pages/job.py", title="Job", icon=":material/insights:", url_path="job"),
    st.Page("app_pages/trial.py", title="Trial", icon=":material/show_chart:", url_path="trial"),
])
navigation.run()
