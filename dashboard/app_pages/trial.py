"""One trial (``/trial?job=ID&trial=NUMBER``): its curves, parameters, recipe, where it ran and
how it got there (state history, attempts, a superseded late result, the error).

While the trial runs, each section refreshes itself in place (``regsearch.dashboard.live``), as on the
job page.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import streamlit as st

from regsearch.dashboard import charts, data, frames, live
from regsearch.domain.states import ACTIVE_TRIAL_STATES

REFRESH_S = 3
JOB_PAGE = "app_pages/job.py"

url = data.database_url_or_stop("Trial")


def _number(text: Any) -> int | None:
    try:
        return int(str(text))
    except ValueError:
        return None


def _pick(job_id: str | None, message: str | None = None) -> None:
    st.title("Trial")
    if message:
        st.warning(message)
    jobs = data.jobs(url)
    if jobs.empty:
        st.info("No jobs yet.")
        st.stop()
    names = dict(zip(jobs["id"], jobs["name"]))
    job_choice = st.selectbox("Job", list(names), index=list(names).index(job_id) if job_id in names else None,
                              format_func=lambda i: f"{names[i]} ({i})", placeholder="Choose a job")
    if job_choice:
        df = data.trials(url, job_choice)
        if df.empty:
            st.info("This job has no trials yet.")
            st.stop()
        labels = dict(zip(df["number"].astype(int), df["config"] + " · " + df["state"]))
        number = st.selectbox("Trial", list(labels), index=None, format_func=lambda n: f"#{n} {labels[n]}",
                              placeholder="Choose a trial")
        if number is not None:
            st.query_params.update({"job": job_choice, "trial": str(number)})
            st.rerun()
    st.stop()


job_id, number = st.query_params.get("job"), _number(st.query_params.get("trial"))
if not job_id or number is None:
    _pick(job_id)
assert job_id is not None and number is not None
found = data.trial(url, job_id, number)
if found is None:
    _pick(job_id, f"Job `{job_id.replace('`', '')[:64]}` has no trial {number}.")
assert found is not None

st.title(f"Trial {number} · {found['job_name']}")
st.caption(f"model `{found['job_model'] or '?'}`")
st.page_link(JOB_PAGE, label=f"Back to {found['job_name']}", query_params={"job": job_id}, icon=":material/arrow_back:")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "–"


def _history(t: dict[str, Any]) -> pd.DataFrame:
    events = [("created", t["created_at"]), ("enqueued", t["enqueued_at"]), ("started", t["started_at"]),
              ("last heartbeat", t["heartbeat_at"]), ("finished", t["finished_at"])]
    return pd.DataFrame({"event": [e for e, _ in events], "at": [_when(v) for _, v in events]})


def _summary(t: dict[str, Any]) -> None:
    running = t["state"] in ACTIVE_TRIAL_STATES
    if running != was_running:
        st.rerun()  # the trial just ended: the whole page, once (its sections stop refreshing)
    metrics = t["metrics"] or {}
    epochs: pd.DataFrame = t["epochs"]
    shown, suffix = metrics, ""
    if not metrics.get("val_acc") and not epochs.empty:
        # running, or ended without a summary (failed, or pruned before writing one)
        shown, suffix = frames.summary_so_far(epochs), " (so far)" if running else " (from its epochs)"
    cols = st.columns(6)
    cols[0].metric("State", t["state"])
    for col, name in zip(cols[1:], ("val_acc", "test_acc", "gap", "epochs_to_95pct_best", "seconds_per_epoch")):
        value = shown.get(name)
        text = str(value) if name == "epochs_to_95pct_best" and value is not None else _fmt(value)
        col.metric(name + (suffix if name != "test_acc" else ""), text)
    if t["error"]:
        st.error(f"Error: {t['error']}")


def _curves(t: dict[str, Any]) -> None:
    epochs: pd.DataFrame = t["epochs"]
    st.header("Curves")
    if epochs.empty:
        st.info("No epoch recorded for this trial" + (" yet." if t["state"] in ACTIVE_TRIAL_STATES else "."))
    else:
        st.plotly_chart(charts.trial_curves(epochs), width="stretch")
        with st.expander("Epochs"):
            st.dataframe(epochs, hide_index=True, width="stretch")


def _details(t: dict[str, Any]) -> None:
    left, right = st.columns(2)
    with left:
        st.header("Parameters")
        st.code(json.dumps(t["params"] or {}, indent=2), language="json")
        st.header("Where it ran")
        st.markdown(f"worker `{t['worker'] or '–'}` · device `{t['device'] or '–'}` · attempt {t['attempt']}"
                    f" · sent {t['send_count']} time(s)")
        if t["retry_of"] is not None:
            st.page_link("app_pages/trial.py", label=f"Retry of trial {t['retry_of']}",
                         query_params={"job": job_id, "trial": str(t["retry_of"])})
        if t["retried_by"] is not None:
            st.page_link("app_pages/trial.py", label=f"Run again as trial {t['retried_by']}",
                         query_params={"job": job_id, "trial": str(t["retried_by"])})
    with right:
        slots = frames.slots_table(t["recipe"])
        if not slots.empty:
            st.header("Slots")
            st.caption("What follows each hidden Linear/Conv, from the recipe; a layer is named as in your "
                       "network where the family names its slots (`auto`), else by its index.")
            st.dataframe(slots, hide_index=True, width="stretch", column_config={
                c: st.column_config.NumberColumn(c, format="%.4f") for c in ("dropout", "bn_momentum")})
        st.header("Recipe")
        if t["recipe"]:
            st.code(json.dumps(t["recipe"], indent=2), language="json")
        else:
            st.info("No recipe stored (the trial had not started training).")


def _state_history(t: dict[str, Any]) -> None:
    metrics = t["metrics"] or {}
    st.header("State history")
    st.dataframe(_history(t), hide_index=True, width="stretch")
    if t["superseded_result"]:
        st.warning("A late result arrived after this attempt had been presumed lost; it was kept aside:")
        st.code(json.dumps(t["superseded_result"], indent=2), language="json")
    if metrics:
        with st.expander("All summary metrics"):
            st.json(metrics)


def _read() -> dict[str, Any]:
    return data.trial(url, job_id, number) or found


was_running = found["state"] in ACTIVE_TRIAL_STATES
if was_running:
    live.steady()
for _draw in (_summary, _curves, _details, _state_history):
    live.section(_draw, _read, REFRESH_S if was_running else None)
