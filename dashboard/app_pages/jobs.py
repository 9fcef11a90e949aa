"""Jobs: every search job with its progress, its leader so far and its elapsed time.

The table refreshes itself (a fragment with ``run_every``): every few seconds while a job is
queued or running, slowly when all are idle. Selecting a row opens the job page
(``/job?job=ID``, linkable); ``/?job=ID`` redirects there too.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from regsearch.dashboard import data, live
from regsearch.dashboard.delete import NOTICE_KEY
from regsearch.domain.states import ACTIVE_JOB_STATES

JOB_PAGE = "app_pages/job.py"
ACTIVE_REFRESH_S = 3
IDLE_REFRESH_S = 15

if st.query_params.get("job"):
    st.switch_page(JOB_PAGE, query_params={"job": st.query_params["job"]})

st.title("Search jobs")
if st.session_state.get(NOTICE_KEY):  # set by the job page's "Delete job"
    st.success(st.session_state.pop(NOTICE_KEY))
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


# Shown: what tells jobs apart (id, name, created) and how far each is, within the layout's width
# at 1280 px (the id is the link to the job's page); the rest from the table's column menu.
# The best trial's metrics are the job's task's, named (val_acc 0.971; val_rmse 55.120 on a regression job).
SHOWN = ["open", "name", "status", "progress", "best_score", "best_test", "elapsed", "created_at"]
MORE = ["trials", "complete", "pruned", "failed", "running", "queued", "best", "best_val_acc", "test_acc", "objective",
        "dataset", "model", "id"]


def _table(df: pd.DataFrame) -> None:
    view = df.assign(
        trials=[f"{f}/{n}" for f, n in zip(df["finished"], df["n_planned"])],
        open=[f"job?job={job_id}" for job_id in df["id"]],
    )
    event = st.dataframe(
        view[SHOWN + MORE], hide_index=True, width="stretch", key="jobs_table", column_order=SHOWN,
        on_select="rerun", selection_mode="single-row",
        column_config={
            "open": st.column_config.LinkColumn("id", display_text=r"job\?job=(.*)",
                                                help="the job's id, as the CLI and the API name it: a link to its page"),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                        width="small",
                                                        help="finished trials (complete, pruned, failed) of those planned: search trials + confirmation runs"),
            "trials": st.column_config.TextColumn("trials", help="finished of planned"),
            "best": st.column_config.NumberColumn("best trial", help="the first configuration of the job's ranking "
                                                  "so far, as `regsearch best` lists it"),
            "best_val_acc": st.column_config.NumberColumn("best val_acc", format="%.4f",
                                                          help="val_acc of the job's best trial so far (the first "
                                                               "configuration of its ranking, as `regsearch best` "
                                                               "lists it)"),
            "test_acc": st.column_config.NumberColumn("test_acc", format="%.4f",
                                                      help="held-out test accuracy of that best trial"),
            "best_score": st.column_config.TextColumn("best", help="the job's first metric (val_acc; val_rmse on a "
                                                      "regression job) of its best trial so far (the first "
                                                      "configuration of its ranking, as `regsearch best` lists it)"),
            "best_test": st.column_config.TextColumn("its test", help="the held-out test metric of that best trial "
                                                     "(test_acc; test_rmse on a regression job)"),
            "model": st.column_config.TextColumn("model", help="the model family and its knobs"),
            "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm",
                                                          help="when the job was submitted (UTC)"),
        },
    )
    rows = event.selection.rows if event is not None else []
    if rows:
        st.switch_page(JOB_PAGE, query_params={"job": str(view.iloc[rows[0]]["id"])})
    st.caption("Select a row (or its id) to open the job. More columns (trials finished of planned; complete, pruned, "
               "failed, running and queued trials; the best trial; objective, dataset, model) from the table's column menu. Trials count the latest "
               "attempt of each: a trial lost with its worker and run again counts once.")


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
if active:
    live.steady()
st.fragment(jobs_list, run_every=ACTIVE_REFRESH_S if active else IDLE_REFRESH_S)(active)
