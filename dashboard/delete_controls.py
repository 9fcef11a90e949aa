"""The job page's sidebar "Delete job": for a job that has ended, behind a confirmation; for a
queued or running job, disabled, saying to cancel it first (the deletion itself:
``regsearch.dashboard.delete``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from regsearch.config import get_settings
from regsearch.dashboard.delete import NOTICE_KEY, delete_job

JOBS_PAGE = "app_pages/jobs.py"
CONFIRM_KEY = "delete_confirm"  # session state: the job whose deletion awaits its confirmation


def draw(info: dict[str, Any], job_id: str) -> None:
    """The sidebar's "Delete job": for a job that has ended, behind a confirmation; for a queued or
    running job, disabled, saying to cancel it first (``regsearch.dashboard.delete``)."""
    box = st.sidebar.container(border=True)
    box.markdown("**Delete this job**")
    if info["active"]:
        box.button("Delete job", key="delete_job", icon=":material/delete:", disabled=True)
        box.caption(f"This job is {info['status']}: cancel it first (`regsearch cancel {job_id}`), then "
                    "delete it here once it has stopped.")
        return
    if st.session_state.get(CONFIRM_KEY) != job_id:
        box.caption("Removes its trials, their epochs, its Optuna study and its kept weights.")
        if box.button("Delete job…", key="delete_job", icon=":material/delete:"):
            st.session_state[CONFIRM_KEY] = job_id
            st.rerun()
        return
    box.warning(f"Delete **{info['name']}** (`{job_id}`) for good: its trials, their epochs, its Optuna "
                "study and its kept weights? This cannot be undone.")
    yes, no = box.columns(2)
    if no.button("Keep it", key="delete_job_no"):
        st.session_state.pop(CONFIRM_KEY, None)
        st.rerun()
    if yes.button("Delete", key="delete_job_yes", type="primary"):
        st.session_state.pop(CONFIRM_KEY, None)
        problem = delete_job(get_settings(), job_id)
        if problem:
            box.error(problem)
            return
        st.session_state[NOTICE_KEY] = f"Deleted job {info['name']} (`{job_id}`)."
        st.switch_page(JOBS_PAGE)
