"""One job (``/job?job=ID``): the evidence (the recommendation, its warnings, each placement's mean
and 95% interval), what each regularization choice buys in generalization and costs in
convergence, how the placements compare, what the search found and the best recipes.

While the job runs, each section refreshes itself in place every few seconds, a fragment of its
own (``regsearch.dashboard.live``): never the whole page, nothing faded, no chart blank between
refreshes; charts whose data did not change are not rebuilt. The job ending reruns the page once.
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from typing import Any

import pandas as pd
import streamlit as st

from regsearch.dashboard import (
    charts,
    data,
    delete_controls,
    frames,
    live,
    placement_curves,
    report_frames,
)
from regsearch.domain.progress import progress
from regsearch.domain.states import JobState, TrialState

REFRESH_S = 3
TRIAL_PAGE = "app_pages/trial.py"

url = data.database_url_or_stop("Job")


def _pick_job(message: str | None = None) -> None:
    st.title("Job")
    if message:
        st.warning(message)
    jobs = data.jobs(url)
    if jobs.empty:
        st.info("No jobs yet. Submit one with `regsearch submit SPEC.yaml`.")
        st.stop()
    names = dict(zip(jobs["id"], jobs["name"]))
    choice = st.selectbox("Job", list(names), index=None, format_func=lambda i: f"{names[i]} ({i})",
                          placeholder="Choose a job")
    if choice:
        st.query_params["job"] = choice
        st.rerun()
    st.stop()


job_id = st.query_params.get("job")
if not job_id:
    _pick_job()
info = data.job(url, str(job_id))
if info is None:
    _pick_job(f"There is no job with id `{str(job_id).replace('`', '')[:64]}`.")
assert info is not None
job_id = str(job_id)

st.title(info["name"])
st.caption(
    f"job `{job_id}` · **{info['status']}** · dataset `{info['dataset']}` · model `{info['model']}` · "
    f"objective {info['objective']} · sampler `{info['sampler']}` · pruner `{info['pruner']}`"
)
# The table of contents: Streamlit anchors every header at its text ("Search space" -> #search-space).
SECTIONS = ("Evidence", "Generalization", "Convergence", "Placement comparison", "Search space",
            "Parallel coordinates", "Best configurations", "All trials")
st.markdown("**On this page:** " + " · ".join(f"[{s}](#{s.lower().replace(' ', '-')})" for s in SECTIONS))
k = st.sidebar.slider("Leaders shown", min_value=1, max_value=10, value=5,
                      help="how many of the best configurations the charts and the table show")
objectives: list[tuple[str, str]] = info["objectives"]
metric, direction = objectives[0]
task: str = info["task"]  # its metrics: val_rmse, test_rmse ... on a regression job (regsearch.domain.metrics)
first, test_metric = frames.task_pair(task)


@st.cache_resource(max_entries=256, show_spinner=False)
def _figure(name: str, *args: Any) -> Any:
    """``charts.<name>(*args)``, built once per distinct input and shared: a refresh whose data did
    not change redraws its charts in milliseconds instead of rebuilding them (50-70 ms a chart),
    so a section's refresh stays short enough not to fade (Streamlit fades what a run is
    redrawing after half a second)."""
    return getattr(charts, name)(*args)


class Trials:
    """What the sections draw: the job and its trials now; the complete search trials and the
    leaders, worked out when a section first asks."""

    def __init__(self, job: dict[str, Any], df: pd.DataFrame) -> None:
        self.job, self.df = job, df

    @cached_property
    def done(self) -> pd.DataFrame:
        return frames.complete_search(self.df)  # the report's groups count these too

    @cached_property
    def board(self) -> pd.DataFrame:
        return frames.leaders(self.df, objectives, k=k)


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _overview(job: dict[str, Any], df: pd.DataFrame, board: pd.DataFrame) -> None:
    counts = frames.counts(df)
    done = progress(counts, job["n_planned"])  # the one definition: regsearch.domain.progress
    cols = st.columns(7)
    cols[0].metric("Complete", counts[TrialState.COMPLETE])
    cols[1].metric("Pruned", counts[TrialState.PRUNED])
    cols[2].metric("Failed", counts[TrialState.FAILED],
                   help=f"{counts.get(TrialState.CANCELLED, 0)} cancelled (stopped with the job: not failures)")
    cols[3].metric("Running", counts[TrialState.RUNNING], help=f"{counts[TrialState.QUEUED]} queued")
    leader = board.iloc[0] if len(board) else None
    cols[4].metric(f"Best {metric}", _fmt(leader["score"] if leader is not None else None),
                   help="the first configuration of the ranking (`regsearch best`): a confirmed configuration's "
                        "mean over its seeds, else its single run")
    cols[5].metric(f"Its {test_metric}", _fmt(leader[test_metric] if leader is not None else None),
                   help=f"held-out {test_metric}, evaluated once with the best validation epoch's weights")
    cols[6].metric("Elapsed", frames.format_seconds(job["elapsed_s"]))
    runs = f" ({job['n_trials']} search trials + {job['n_confirm']} confirmation runs)" if job.get("n_confirm") else ""
    st.progress(done.fraction, text=f"{done.finished} of {done.planned} trials finished{runs}")
    if job.get("error") and job.get("status") == JobState.COMPLETED:  # why it ended early: not a failure
        st.info(f"The job ended: {job['error']}")
    elif job.get("error"):
        st.error(f"The job failed: {job['error']}")


REPORT_TABS = (("By placement", "placement"), ("By dropout band", "dropout_band"),
               ("By BN momentum band", "momentum_band"))


def _evidence(_: Trials) -> None:
    """The job's report (``regsearch.evidence``), the same as ``regsearch report`` and the API's."""
    from regsearch.evidence import Report, render_markdown

    st.header("Evidence")
    found = data.report(url, job_id)
    if found is None:
        return
    recommendation, metric = found["recommendation"], found["metric"]
    if recommendation["basis"] == "none":
        st.info(recommendation["sentence"])
    else:
        st.success(f"**Recommendation.** {recommendation['sentence']}")
    if found["warnings"]:
        st.warning("**Read with care**\n\n" + "\n".join(f"- {w['message']}" for w in found["warnings"]))
    intervals = report_frames.report_intervals(found)
    if not intervals.empty:
        st.markdown(f"**Mean {metric} per placement with its 95% interval** (n = distinct configurations)")
        st.plotly_chart(_figure("placement_intervals", intervals, metric), width="stretch")
    groupings = {g["by"]: g for g in found["groupings"]}
    tabs = st.tabs([title for title, _ in REPORT_TABS] + ["Confirmation runs"])
    for tab, (_, by) in zip(tabs, REPORT_TABS):
        tab.caption(groupings[by]["description"])
        tab.dataframe(report_frames.report_table(found, by), hide_index=True, width="stretch")
    confirmed = report_frames.confirmation_table(found)
    if not confirmed.empty:
        tabs[-1].dataframe(confirmed, hide_index=True, width="stretch")
    elif found["confirmation"]["requested"]:
        tabs[-1].info(f"Confirmation runs requested; {found['confirmation']['n_pending']} pending.")
    else:
        tabs[-1].info("Not requested: add `confirm: {top_k: 3, seeds: 3}` to the spec to re-run the leaders "
                      "with other seeds.")
    st.caption("Means over complete search trials (a configuration repeated with the same seed counts once) with "
               "Student-t 95% intervals. `regsearch report JOB` prints this report as Markdown, "
               "`GET /jobs/{id}/report` answers it as JSON.")
    with st.expander("The report as Markdown"):
        st.code(render_markdown(Report.model_validate(found)), language="markdown")


def _generalization(t: Trials) -> None:
    df, done, board = t.df, t.done, t.board
    st.header("Generalization")
    if done.empty:
        st.info("No complete trial yet: the train/validation gap appears here as trials finish.")
        return
    if first != "val_acc":  # no accuracy on this task: its gap is val_loss − train_loss at the best epoch
        st.caption(f"The gap is val_loss − train_loss (MSE) at the best validation epoch; {first} per trial "
                   "is under Placement comparison.")
        st.plotly_chart(_figure("box_by_placement", done, "gap"), width="stretch")
        return
    st.caption("Per configuration, training and validation accuracy at the best validation epoch; the gap is "
               "train_acc − val_acc. In **train_acc vs val_acc** (train_acc up, val_acc across), points above "
               "the dashed diagonal generalize worse than they fit: their height above it is the gap.")
    left, right = st.columns(2)
    left.markdown("**train_acc vs val_acc**")
    left.plotly_chart(_figure("train_vs_val", frames.generalization(df)), width="stretch")
    right.markdown("**gap vs dropout**")
    if done["dropout"].notna().any():
        right.plotly_chart(_figure("gap_vs_dropout", done), width="stretch")
    else:
        right.info("No complete trial placed dropout.")
    left, right = st.columns(2)
    left.markdown("**gap by placement**")
    left.plotly_chart(_figure("box_by_placement", done, "gap"), width="stretch")
    right.markdown("**The leaders on held-out test data**")
    right.plotly_chart(_figure("leaders_accuracy", board), width="stretch")
    with st.expander("gap per configuration"):
        st.dataframe(frames.generalization(df), hide_index=True, width="stretch")


def _convergence(t: Trials) -> None:
    df, done, board = t.df, t.done, t.board
    st.header("Convergence")
    with_epochs = df[df["epochs_recorded"].fillna(0) > 0]
    if with_epochs.empty:
        st.info("No epoch recorded yet: validation curves appear here as soon as a trial reports one.")
        return
    ranked_numbers = [int(n) for n in frames.leaders(df, objectives, k=None)["number"]]
    options = ranked_numbers + [int(n) for n in with_epochs["number"] if int(n) not in set(ranked_numbers)]
    labels = dict(zip(df["number"].astype(int), df["config"] + " · " + df["state"]))
    chosen = st.multiselect(
        "Validation curves of", options, default=[int(n) for n in board["number"]] or options[:k],
        format_func=lambda n: f"#{n} {labels.get(n, '')}", key="curve_trials", max_selections=data.MAX_CURVES,
    )
    curves = data.curves(url, job_id, tuple(int(n) for n in chosen))
    if curves.empty:
        st.info("Choose trials to compare their validation curves.")
    else:
        placements = dict(zip(df["number"].astype(int), df["placement"]))
        st.plotly_chart(_figure("curves_overlay", curves, placements), width="stretch")
    if done.empty:
        st.info("No complete trial yet: epochs_to_95pct_best and seconds_per_epoch appear as trials finish.")
        return
    placement_curves.draw(url, job_id, done)
    cols = st.columns(3)
    cols[0].markdown("**epochs_to_95pct_best by placement**")
    cols[0].plotly_chart(_figure("box_by_placement", done, "epochs_to_95pct_best"), width="stretch")
    cols[1].markdown("**epochs_to_95pct_best by bn_momentum**")
    if done["bn_momentum"].notna().any():
        cols[1].plotly_chart(_figure("by_momentum", done, "epochs_to_95pct_best"), width="stretch")
    else:
        cols[1].info("No complete trial placed batch normalization.")
    cols[2].markdown("**seconds_per_epoch by placement**")
    cols[2].plotly_chart(_figure("box_by_placement", done, "seconds_per_epoch"), width="stretch")
    st.caption("epochs_to_95pct_best: the first epoch whose val_acc reaches 95% of the trial's *own* best: a trial "
               "that learns little gets there early, so it is no convergence speed; the report's convergence to a "
               "common target is above.")


def _placement_comparison(t: Trials) -> None:
    df, done = t.df, t.done
    st.header("Placement comparison")
    if done.empty:
        st.info("No complete trial yet.")
    else:
        st.markdown(f"**{first} per placement** (n = complete search trials behind each box, as in the "
                    "report; confirmation runs are in its seed groups)")
        st.plotly_chart(_figure("box_by_placement", done, first), width="stretch")
    st.dataframe(frames.placement_summary(df, task), hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(c, format="%.4f")
        for c in (f"{first}_median", f"{first}_best", "gap_mean", "seconds_per_epoch_median")
    })


def _search_space(t: Trials) -> None:
    df, done = t.df, t.done
    st.header("Search space")
    if done.empty:
        st.info("No complete trial yet: the search's picture appears here as trials finish.")
        return
    left, right = st.columns(2)
    left.markdown(f"**dropout × bn_momentum, colored by {metric}**")
    both = done[done["dropout"].notna() & done["bn_momentum"].notna()]
    if both.empty:
        left.info("No complete trial has both dropout and batch normalization.")
    else:
        left.plotly_chart(_figure("dropout_momentum_map", both, metric), width="stretch")
    right.markdown("**Parameter importance** (Optuna, PED-ANOVA)")
    found = data.importance(url, job_id, len(done))
    if found["importances"]:
        right.plotly_chart(_figure("importance_bars", found["importances"]), width="stretch")
        right.caption(f"From {found['n']} complete search trials"
                      + ("; the importance of reaching the Pareto front." if len(objectives) > 1 else "."))
    else:
        right.info(found["message"])
    if len(objectives) > 1:
        st.markdown(f"**Pareto front: {objectives[0][0]} and {objectives[1][0]}**")
        mask = frames.pareto_front(done, objectives)
        st.plotly_chart(_figure("pareto_front", done, objectives, mask), width="stretch")
    st.markdown(f"**Optimization history: {metric} per trial and the best so far**")
    st.plotly_chart(_figure("optimization_history", frames.history(df, metric, direction), metric), width="stretch")


def _parallel_coordinates(t: Trials) -> None:
    done = t.done
    st.subheader("Parallel coordinates", anchor="parallel-coordinates")
    if done.empty:
        st.info("No complete trial yet: each complete trial's parameters and objective appear here as a line.")
        return
    st.markdown(f"**Every complete trial through its parameters and {', '.join(m for m, _ in objectives)}**, "
                f"colored by {metric}")
    st.plotly_chart(_figure("parallel_coordinates", done, objectives), width="stretch")
    st.caption("Drag along an axis to keep only the trials in that range; drag an axis' title to reorder. "
               "\"none\": the placement has no dropout (or no BN), so the trial has no such parameter.")


def _best_configurations(t: Trials) -> None:
    board = t.board
    st.header("Best configurations")
    if board.empty:
        st.info("No complete trial yet: the best configurations and their recipes appear here.")
        return
    st.caption("Ranked as `regsearch best` and `GET /jobs/{id}/best` rank them (regsearch.domain.ranking): "
               "configurations re-run with other seeds first, by their mean over the seeds; then the others by "
               "their single run" + ("; with several objectives, by Pareto front (0: not dominated), then by the "
                                     "objectives in order" if len(objectives) > 1 else "") + "; ties: trial number.")
    columns = ["rank", *(["front"] if len(objectives) > 1 else []), "number", "placement", "dropout", "bn_momentum",
               "dropout_layers", "bn_layers", "score", "runs", *info["metrics"],
               *(["val_acc_std"] if first == "val_acc" else [])]
    st.dataframe(board[columns], hide_index=True, width="stretch", column_config={
        "score": st.column_config.NumberColumn(f"{metric} (ranked)", format="%.4f",
                                               help="the mean over the seed group when confirmed, else the single run"),
        "runs": st.column_config.NumberColumn("runs", help="the search run and its complete confirmation runs"),
        **{c: st.column_config.NumberColumn(c, format="%.4f")
           for c in (*info["metrics"], "val_acc_std") if c != "epochs_to_95pct_best"},
    })
    found = data.recipes(url, job_id, tuple(int(n) for n in board["number"]))
    for rank, row in zip(board["rank"], board.itertuples(index=False)):
        with st.expander(f"#{rank} · trial {row.number} · {row.config} · {metric} {_fmt(row.score)}"
                         + (f" over {row.runs} seeds" if row.confirmed else ""),
                         expanded=rank == 1):
            recipe = found.get(int(row.number))
            if recipe:
                st.code(json.dumps(recipe, indent=2), language="json")
            else:
                st.info("This trial stored no recipe.")
            st.page_link(TRIAL_PAGE, label=f"Trial {row.number} in detail",
                         query_params={"job": job_id, "trial": str(row.number)})


def _all_trials(t: Trials) -> None:
    df = t.df
    if df.empty:
        return
    st.header("All trials")
    view = df.assign(open=[f"trial?job={job_id}&trial={n}" for n in df["number"]])
    shown = [c for c in info["metrics"] if c != "mean_val_acc"]  # the task's columns (regsearch.domain.metrics)
    columns = ["number", "state", "config", *shown, "epochs_recorded", "attempt", "worker", "error", "open"]
    st.dataframe(view[columns], hide_index=True, width="stretch", column_config={
        "open": st.column_config.LinkColumn("link", display_text="open ↗"),
        **{c: st.column_config.NumberColumn(c, format="%.4f") for c in shown
           if c not in ("epochs_to_95pct_best", "seconds_per_epoch")},
    })


def _trials() -> Trials:
    """The job and its trials now (both reads are cached for a few seconds: the sections share them)."""
    return Trials(data.job(url, job_id) or info, data.trials(url, job_id))


def _status(t: Trials) -> None:
    if t.job["active"] != info["active"]:
        st.rerun()  # the job just ended (or was queued again): the whole page, once
    _overview(t.job, t.df, t.board)
    if t.df.empty:
        st.info("This job has no trials yet: the coordinator asks Optuna for the first ones shortly.")


delete_controls.draw(info, job_id)
if info["active"]:
    live.steady()
for _draw in (_status, _evidence, _generalization, _convergence, _placement_comparison, _search_space,
              _parallel_coordinates, _best_configurations, _all_trials):
    live.section(_draw, _trials, REFRESH_S if info["active"] else None)
