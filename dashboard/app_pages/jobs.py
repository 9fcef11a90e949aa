"""Jobs: every search job with its progress, its leader so far and its elapsed time.

The table refreshes itself (a fragment with ``run_every``): every few seconds while a job is
queued or running, slowly when all are idle. Selecting a row opens the job page
(``/job?job=ID``, linkable); ``/?job=ID`` redirects there too.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from regsearch.dashboard import data
from regsearch.domain.states import ACTIVE_JOB_STATES

JOB_PAGE = "app_pages/job.py"
ACTIVE_REFRESH_S = 3
IDLE_REFRESH_S = 15

if st.query_params.get("job"):
    st.switch_page(JOB_PAGE, query_params={"job": st.query_params["job"]})

st.title("Search jobs")
url = data.database_url()
problem = data.database_problem(url)
if problem:
    st.info(problem)
    st.stop()


def _active(df: pd.DataFrame) -> bool:
    return bool(df["status"].isin(list(ACTIVE_JOB_STATES)).any())


def _cards(df: pd.DataFrame) -> None:
    running = df[df["status"].isin(list(ACTIVE_JOB_STATES))]
    cols = st.columns(4)
    cols[0].metric("Jobs", len(df))
    cols[1].metric("Queued or running", len(running))
    cols[2].metric("Trials finished", int(df["finished"].sum()))
    cols[3].metric("Trials running", int(df["running"].sum()))


def _table(df: pd.DataFrame) -> None:
    view = df.assign(
        trials=[f"{f}/{n}" for f, n in zip(df["finished"], df["n_planned"])],
        open=[f"job?job={job_id}" for job_id in df["id"]],
    )
    columns = ["name", "status", "progress", "trials", "complete", "pruned", "failed", "running", "queued",
               "best", "best_val_acc", "test_acc", "elapsed", "objective", "dataset", "model", "created_at", "id", "open"]
    event = st.dataframe(
        view[columns], hide_index=True, width="stretch", key="jobs_table",
        on_select="rerun", selection_mode="single-row",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                        help="finished trials (complete, pruned, failed) of those planned: search trials + confirmation runs"),
            "best": st.column_config.NumberColumn("best trial", help="the first configuration of the job's ranking "
                                                  "so far, as `regsearch best` lists it"),
            "best_val_acc": st.column_config.NumberColumn("its val_acc", format="%.4f",
                                                          help="that trial's own val_acc"),
            "test_acc": st.column_config.NumberColumn("its test_acc", format="%.4f",
                                                      help="held-out test accuracy of that trial"),
            "model": st.column_config.TextColumn("model", help="the model family and its knobs"),
            "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
            "open": st.column_config.LinkColumn("link", display_text="open ↗"),
        },
    )
    rows = event.selection.rows if event is not None else []
    if rows:
        st.switch_page(JOB_PAGE, query_params={"job": str(view.iloc[rows[0]]["id"])})
    st.caption("Select a row to open the job. Complete, pruned and failed count the latest attempt of each "
               "trial; a trial lost with its worker and run again counts once.")


def jobs_list(was_active: bool) -> None:
    df = data.jobs(url)
    if _active(df) != was_active:
        st.rerun()  # switch between the fast and the slow refresh
    if df.empty:
        st.info("No jobs yet. Submit one with `regsearch submit SPEC.yaml` (or `POST /jobs`), "
                "or try `regsearch demo`.")
        return
    _cards(df)
    _table(df)


active = _active(data.jobs(url))
st.fragment(jobs_list, run_every=ACTIVE_REFRESH_S if active else IDLE_REFRESH_S)(active)
