"""Compare jobs (``/compare?jobs=ID,ID``): two or more jobs' placement comparison overlaid (each
job's report: mean and 95% interval per placement) and their leaders by the one ranking.

Useful when the same question ran on two datasets or models: does the placement that wins on
one win on the other, and by how much?
"""

from __future__ import annotations

import streamlit as st

from regsearch.dashboard import charts, comparison, data

JOB_PAGE = "app_pages/job.py"

url = data.database_url_or_stop("Compare jobs")
st.title("Compare jobs")
jobs = data.jobs(url)
if jobs.empty:
    st.info("No jobs yet. Submit one with `regsearch submit SPEC.yaml`, or try `regsearch demo`.")
    st.stop()

names = dict(zip(jobs["id"], jobs["name"]))
asked = [j for j in str(st.query_params.get("jobs", "")).split(",") if j in names]
default = asked or [j for j, n in zip(jobs["id"], jobs["complete"]) if n > 0][:2]
chosen = st.multiselect("Jobs", list(names), default=default, format_func=lambda j: f"{names[j]} ({j})",
                        placeholder="Choose two or more jobs", key="compare_jobs")
if chosen != asked:
    st.query_params["jobs"] = ",".join(chosen)  # the page's address names what it compares
if len(chosen) < 2:
    st.info("Choose two or more jobs to compare their placements and their leaders.")
    st.stop()

labels = comparison.job_labels(chosen, names)
reports = {j: r for j in chosen if (r := data.report(url, j)) is not None}
metrics = comparison.common_metrics(list(reports.values()))
first = reports[chosen[0]]["metric"] if chosen[0] in reports else "val_acc"
metric = st.selectbox("Metric", metrics, index=metrics.index(first) if first in metrics else 0,
                      help="each job's report summarizes these metrics per placement")
objectives = {labels[j]: f"{r['metric']} ({r['direction']})" for j, r in reports.items()}
models = dict(zip(jobs["id"], jobs["model"]))
st.caption("Models: " + " · ".join(f"**{labels[j]}** `{models.get(j) or '?'}`" for j in chosen))
st.caption("Objectives: " + " · ".join(f"**{job}** {objective}" for job, objective in objectives.items()))

st.header("Placement comparison", anchor="placement-comparison")
overlay = comparison.placement_overlay(reports, labels, metric)
if overlay.empty:
    st.info(f"None of these jobs has a complete trial with {metric} yet.")
else:
    st.markdown(f"**Mean {metric} per placement with its 95% interval, per job** (n = distinct configurations)")
    st.plotly_chart(charts.jobs_placement_overlay(overlay, metric), width="stretch")
    st.dataframe(comparison.placement_table(overlay), hide_index=True, width="stretch")
    st.caption("Each job's own report (`regsearch report JOB`): means over its complete search trials, "
               "Student-t 95% intervals; a placement with fewer than 3 distinct runs has no interval.")
for job_id, report in reports.items():
    st.markdown(f"**{labels[job_id]}** (`{models.get(job_id) or '?'}`). {report['recommendation']['sentence']}")

st.header("Leaders", anchor="leaders")
k = st.slider("Leaders per job", min_value=1, max_value=10, value=3)
leaders = data.leaders_of_jobs(url, tuple(chosen), k)
if leaders.empty:
    st.info("No complete trial in these jobs yet.")
else:
    st.dataframe(leaders.drop(columns=["job_id"]), hide_index=True, width="stretch", column_config={
        "score": st.column_config.NumberColumn("score", format="%.4f",
                                               help="what the ranking compared: the first objective, the mean "
                                                    "over the configuration's seed group when it was confirmed"),
        **{c: st.column_config.NumberColumn(c, format="%.4f") for c in ("val_acc", "test_acc", "gap")},
    })
    st.caption("The one ranking of configurations (the API's `/best`): confirmed configurations first, "
               "by their seed-group mean; several objectives: Pareto fronts first.")
    cols = st.columns(len(chosen))
    for col, job_id in zip(cols, chosen):
        col.page_link(JOB_PAGE, label=f"{labels[job_id]} in detail", query_params={"job": job_id})
