"""The dashboard's entry (``streamlit run dashboard/app.py``): page setup and navigation only."""

from __future__ import annotations

import streamlit as st

# The pages import `regsearch.dashboard.*`, which the installed distribution provides.
st.set_page_config(page_title="regsearch", page_icon=":material/tune:", layout="wide")

navigation = st.navigation([
    st.Page("app_pages/jobs.py", title="Jobs", icon=":material/view_list:", default=True),
    st.Page("app_pages/job.py", title="Job", icon=":material/insights:", url_path="job"),
    st.Page("app_pages/trial.py", title="Trial", icon=":material/show_chart:", url_path="trial"),
])
navigation.run()
