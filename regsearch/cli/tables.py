"""Terminal output for the CLI: progress, the placement comparison and the best configuration.

Tables fit the console's width (a terminal's own width; into a pipe, ``COLUMNS`` when set, else
no limit): a cell is never cut to an ellipsis, and a row of numbers stays one line. Where a table
is too wide, prose columns (a family's knobs) wrap at spaces, then columns are left out by
priority, the least important first, and the caption names them. Never left out: the trial
number (``#``), the placement and the objective of the best table; the placement or band and the
objective's mean of the report's tables; a job's id, status and progress in ``status``. Every
metric prints in its one format (regsearch.domain.metrics.format_metric); a mark (``†`` an
interval cut at the metric's range, ``‡`` too few runs for one) has its footnote in the caption.
Text is printed as text, never read as console markup (a message may hold ``[height, width]``).
``--json`` (``best``, ``status``) prints everything for scripts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from regsearch.domain.metrics import format_metric, task_metrics
from regsearch.domain.model_label import model_label
from regsearch.domain.progress import document_progress
from regsearch.domain.states import TrialState


def _param(value: Any) -> str:
    """A searched parameter (dropout, bn_momentum): 3 fixed decimals, like the metrics."""
    if value is None:
        return format_metric(None, None)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _layers(params: dict[str, Any]) -> str:
    parts = []
    if "dropout_layers" in params:
        parts.append(f"drop:{params['dropout_layers']}")
    if "bn_layers" in params:
        parts.append(f"bn:{params['bn_layers']}")
    return " ".join(parts) or "-"


PIPE_WIDTH = 10_000  # into a pipe without COLUMNS: wide enough for any table, nothing truncated
KEEP = 0  # the priority of a column that is never left out; larger numbers go first


def make_console(stream: IO[str], *, stderr: bool = False, environ: Mapping[str, str] | None = None) -> Console:
    """A console as wide as the terminal; into a pipe, ``COLUMNS`` wide when set, else unlimited.

    It prints text as text: no console markup (``[height, width]`` in a message stays), no
    highlighting; styles come as ``style=`` or :class:`rich.text.Text`.
    """
    environ = os.environ if environ is None else environ
    isatty = bool(getattr(stream, "isatty", lambda: False)())
    width = None if isatty or environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH
    return Console(stderr=stderr, width=width, markup=False, highlight=False)


@dataclass(frozen=True)
class Col:
    """A column of a :func:`fitted_table`: its header, its priority, how it is aligned and whether
    its cells are prose that may wrap at spaces (numbers and intervals never wrap)."""

    header: str
    priority: int = KEEP
    justify: str = "right"
    wrap: bool = False


def _pieces(cell: str) -> list[str]:
    """What a prose cell is not broken inside: its words."""
    return cell.split() or [cell]


COLUMN_GAP = 2  # spaces between two columns (no vertical rules: the width goes to the cells)


def _overhead(n_columns: int) -> int:
    """What a table takes besides its cells: the gaps between its columns."""
    return COLUMN_GAP * max(n_columns - 1, 0)


def fitted_table(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int | None, *,
                 title: str | None = None, hint: str = "", notes: dict[str, str] | None = None) -> Table:
    """A table that fits ``width`` columns without cutting a cell (None: no limit).

    A row stays one line: only prose columns (``Col.wrap``) and headers wrap at spaces. Where the
    table is still too wide, the columns with the largest ``priority`` are left out (the rightmost
    first among equals) and the caption names them. ``KEEP`` columns always stay. ``notes`` maps a
    mark to the footnote explaining it: the caption carries a note only when its mark is in a cell
    on screen (not in a column the width left out). Cells are text, never console markup.
    """
    cells = [[col.header, *(str(row[i]) for row in rows)] for i, col in enumerate(columns)]
    natural = [max(cell_len(c) for c in column) for column in cells]
    minimum = [max([cell_len(p) for p in _pieces(column[0])]
                   + [cell_len(p) if col.wrap else cell_len(c) for c in column[1:] for p in _pieces(c)])
               for col, column in zip(columns, cells)]
    kept = list(range(len(columns)))
    if width is not None:
        while sum(minimum[i] for i in kept) + _overhead(len(kept)) > width:
            droppable = [i for i in kept if columns[i].priority != KEEP]
            if not droppable:
                break
            kept.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    widths = {i: natural[i] for i in kept}
    excess = 0 if width is None else sum(widths.values()) + _overhead(len(kept)) - width
    while excess > 0:  # narrow the widest column that can still wrap, one cell at a time
        slack = [i for i in kept if widths[i] > minimum[i]]
        if not slack:
            break
        widths[max(slack, key=lambda i: (widths[i], i))] -= 1
        excess -= 1
    dropped = [col.header for i, col in enumerate(columns) if i not in kept]
    caption = f"Not shown at this width: {', '.join(dropped)}" + (f" ({hint})." if hint else ".") if dropped else None
    marked = [note for mark, note in (notes or {}).items() if any(mark in str(row[i]) for row in rows for i in kept)]
    caption = " ".join(filter(None, [caption, *marked])) or None
    # A rule under the header and COLUMN_GAP spaces between columns; a wrapped caption reads as prose.
    table = Table(title=Text(title) if title else None, caption=Text(caption) if caption else None,
                  caption_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True, title_justify="left")
    for i in kept:  # overflow="fold": should a cell still not fit (a tiny terminal), it folds, never "…"
        table.add_column(Text(columns[i].header), justify=columns[i].justify, width=widths[i], overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(Text(str(row[i])) for i in kept))
    return table


# The report's tables: the objective (its mean with the interval, then its sd), the counts, then
# the other metrics' means with their intervals. Left out first where the width is short.
_GROUP_METRIC_PRIORITY = {"test_acc": 5, "gap": 7, "epochs_to_95pct_best": 8, "seconds_per_epoch": 9, "mean_val_acc": 10}
_HEADS = {"epochs_to_95pct_best": "95% best ep.", "seconds_per_epoch": "s/epoch"}
_BAND_HEADS = {"dropout_band": "dropout", "momentum_band": "bn_momentum"}  # the table's title says "band"


def metric_header(metric: str) -> str:
    """A metric's column header: its name, shortened where the name is long."""
    return _HEADS.get(metric, metric)


def grouping_table(document: dict[str, Any], by: str = "placement", width: int | None = None) -> Table:
    """One grouping of the report (``GET /jobs/{id}/report``): per placement (ranked) or band, the
    objective's mean with its 95% interval, then the other metrics.

    Where the width is short, left out first: failed, pruned, mean_val_acc, s/epoch, 95% best ep.,
    gap, trials, test_acc, sd, n, rank; never the placement (or band) and the objective.
    """
    from regsearch.evidence import Report, format_stat
    from regsearch.evidence.markdown import TABLE_NOTES

    report = Report.model_validate(document)
    grouping = report.grouping(by)
    metric = report.metric
    others = [m for m in report.metrics if m != metric]
    lead = [Col("rank", 2), Col("placement", KEEP, "left")] if by == "placement" else [Col(_BAND_HEADS[by], KEEP, "left")]
    columns = [*lead, Col("n", 3), Col("trials", 6), Col("pruned", 11), Col("failed", 12),
               Col(f"{metric_header(metric)} mean [95% CI]", KEEP), Col(f"{metric_header(metric)} sd", 4),
               *(Col(metric_header(m), _GROUP_METRIC_PRIORITY.get(m, 10)) for m in others)]
    rows = []
    for group in grouping.groups:
        first = [str(group.rank) if group.rank else NO_RANK, group.key] if by == "placement" else [group.label]
        stat = group.metrics.get(metric)
        rows.append([*first, str(group.n_distinct), str(group.n_complete), str(group.n_pruned), str(group.n_failed),
                     format_stat(metric, stat, marked=True), format_metric(metric, stat.std if stat else None),
                     *(format_stat(m, group.metrics.get(m), marked=True) for m in others)])
    return fitted_table(columns, rows, width, hint="a wider terminal or --format md shows them", notes=TABLE_NOTES,
                        title=grouping.title)


NO_RANK = "–"  # a placement without a complete trial has no rank


def comparison_table(document: dict[str, Any], width: int | None = None) -> Table:
    """The report's placements, ranked by the objective's mean, with their 95% intervals
    (:func:`grouping_table` by placement)."""
    return grouping_table(document, "placement", width)


def _over_runs(confirmation: dict[str, Any] | None, metric: str, *, interval: bool) -> str:
    """A metric over a confirmed configuration's runs (the API's interval,
    regsearch.domain.stats.mean_interval): ``mean [low, high]`` (``†`` when cut at the metric's
    range, ``‡`` below 3 runs) where ``interval``, else the mean alone."""
    from regsearch.domain.stats import Interval
    from regsearch.evidence import format_stat

    summary = (confirmation or {}).get("metrics", {}).get(metric)
    if not summary or summary.get("mean") is None:
        return format_metric(metric, None)
    if not interval:
        return format_metric(metric, summary["mean"])
    return format_stat(metric, Interval.model_validate(summary), marked=True)


def best_table(items: list[dict[str, Any]], width: int | None = None, *, objective: str = "val_acc") -> Table:
    """The best configurations, ranked, one row each; ``#`` is the trial number.

    Once confirmation runs exist, a confirmed configuration's metrics are its means over its runs
    (the search trial and its re-runs with other seeds), the objective with its 95% interval.
    Where the width is short, left out first: s/epoch, 95% best ep., layers, runs, bn_momentum,
    dropout; never #, placement, the objective, test_acc or gap (how well it generalizes).
    """
    from regsearch.evidence.markdown import TABLE_NOTES

    confirmed = any(item.get("confirmation") for item in items)
    title = "Best configurations" + (
        f" (a confirmed one: mean over its runs, {metric_header(objective)} with its 95% interval)"
        if confirmed else "")
    regression = recipe_task(items) == "regression"  # a regression job's metrics, no accuracy
    if regression and objective not in task_metrics("regression", shown_only=False):
        objective = "val_rmse"  # a caller that did not say: the regression job's default objective
    metrics_shown = (task_metrics("regression") if regression
                     else ("val_acc", "test_acc", "gap", "epochs_to_95pct_best", "seconds_per_epoch"))
    shown = [objective, *(m for m in metrics_shown if m != objective)]
    keep = {objective, "test_rmse" if regression else "test_acc", "gap"}
    priority = {"val_acc": 2, "epochs_to_95pct_best": 7, "seconds_per_epoch": 9}
    columns = [Col("#"), Col("placement", KEEP, "left"), Col("dropout", 3), Col("bn_momentum", 4),
               Col("layers", 6, "left"), *([Col("runs", 5)] if confirmed else []),
               *(Col(metric_header(m), KEEP if m in keep else priority.get(m, 8)) for m in shown)]
    rows = []
    for item in items:
        params, metrics, confirmation = item["params"], item["metrics"], item.get("confirmation")
        row = [str(item["number"]), params["placement"], _param(params.get("dropout")),
               _param(params.get("bn_momentum")), _layers(params)]
        if confirmed:
            row.append(str(confirmation["n"]) if confirmation else "1")
        row += [_over_runs(confirmation, m, interval=m == objective) if confirmation else format_metric(m, metrics.get(m))
                for m in shown]
        rows.append(row)
    return fitted_table(columns, rows, width, title=title, hint="a wider terminal or --json shows them",
                        notes=TABLE_NOTES)


RECIPE_WIDTH = 80  # the recipe's JSON is indented to fit this, whatever the console's width


def compact_json(value: Any, width: int = RECIPE_WIDTH, indent: int = 0, start: int | None = None) -> str:
    """``value`` as indented JSON: an object or list stays on one line where that fits ``width``
    (it begins at column ``start``, after its key), else each member goes on a line of its own,
    two spaces further in than ``indent``. Valid JSON, copied whole."""
    flat = json.dumps(value)
    # + 1: room for the comma after it
    if not isinstance(value, (dict, list)) or not value or (indent if start is None else start) + cell_len(flat) + 1 <= width:
        return flat
    inner = indent + 2
    if isinstance(value, dict):
        members = [f"{' ' * inner}{json.dumps(k)}: "
                   + compact_json(v, width, inner, inner + cell_len(json.dumps(k)) + 2) for k, v in value.items()]
        opening, closing = "{", "}"
    else:
        members = [" " * inner + compact_json(v, width, inner) for v in value]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(members) + "\n" + " " * indent + closing


def print_recipe(console: Console, recipe: dict[str, Any]) -> None:
    """The recipe as indented JSON on lines of its own (never wrapped by the console)."""
    console.print(Text(compact_json(recipe)), soft_wrap=True)


def recipe_task(items: list[dict[str, Any]]) -> str:
    """The task of a job's trials, as their recipes say (``task``: regression; else classification)."""
    recipe = next((item.get("recipe") for item in items if item.get("recipe")), None) or {}
    return str(recipe.get("task", "classification"))


def print_best(console: Console, items: list[dict[str, Any]], *, with_recipe: bool = True,
               objective: str = "val_acc") -> None:
    if not items:
        console.print("No complete trial yet.")
        return
    console.print(best_table(items, console.width, objective=objective))
    if with_recipe and items[0].get("recipe"):
        console.print(f"Recipe of the best configuration, #{items[0]['number']} (rebuilds the exact module):")
        print_recipe(console, items[0]["recipe"])


def job_model(job: Mapping[str, Any]) -> str | None:
    """A job document's model in one line (``resnet depth=20 width=16 activation=relu``): the
    document's own ``model`` where it has one, else read from its ``spec``; None without either."""
    given = job.get("model")
    if isinstance(given, str):
        return given
    return model_label(job["spec"]) if isinstance(job.get("spec"), Mapping) else None


def status_table(jobs: list[dict[str, Any]], width: int | None = None, *, with_model: bool = True) -> Table:
    """Jobs with their progress (``regsearch status``).

    Where the width is short, left out first: model, cancelled, failed, pruned, running, name, best
    val_acc. The model column shows where the documents name a model (``with_model``).
    """
    models = [job_model(job) for job in jobs] if with_model else []
    shown = any(models)
    columns = [Col("job", KEEP, "left"), Col("name", 4, "left"), *([Col("model", 10, "left")] if shown else []),
               Col("status", KEEP, "left"), Col("done"), Col("running", 6), Col("pruned", 7), Col("failed", 8),
               Col("cancelled", 9), Col("best val_acc", 3)]
    rows = []
    for i, job in enumerate(jobs):
        done, total = document_progress(job)
        counts = job.get("counts", {})
        best_val = ((job.get("best") or {}).get("metrics") or {}).get("val_acc")
        rows.append([job["id"], job["name"], *([models[i] or "-"] if shown else []), str(job["status"]), f"{done}/{total}",
                     *(str(counts.get(state, 0)) for state in (TrialState.RUNNING, TrialState.PRUNED, TrialState.FAILED,
                                                               TrialState.CANCELLED)),
                     format_metric("val_acc", best_val)])
    return fitted_table(columns, rows, width, hint="a wider terminal or --json shows them")


def trial_document(params: dict[str, Any], recipe: dict[str, Any], layers: list[str], summary: dict[str, Any],
                   epochs: list[dict[str, Any]], device: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``regsearch trial --json`` prints."""
    return {"params": params, "metrics": summary, "epochs": epochs, "recipe": recipe, "layers": layers,
            "device": device, "data": data}


def print_trial(console: Console, document: dict[str, Any]) -> None:
    """The human form of a local trial: metrics, per-epoch curve, layer order, recipe."""
    summary = document["metrics"]
    title = f"Trial on {document['device']}: " + ", ".join(f"{k}={_param(v)}" for k, v in document["params"].items())
    task = recipe_task([document])
    names = (*task_metrics(task), "epochs_run")
    values = [format_metric(c, summary.get(c)) for c in names]
    console.print(title, highlight=False)
    if sum(max(cell_len(n), cell_len(v)) for n, v in zip(names, values)) + _overhead(len(names)) <= console.width:
        console.print(fitted_table([Col(n) for n in names], [values], console.width))
    else:  # too narrow for a row of metrics: one metric per line rather than cut headers
        console.print(fitted_table([Col("metric", KEEP, "left"), Col("value")], list(zip(names, values)),
                                   console.width))
    curve_columns = (("epoch", "train_loss", "val_loss", "seconds") if task == "regression"
                     else ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"))
    curve = [[format_metric(c, epoch[c]) for c in curve_columns] for epoch in document["epochs"]]
    console.print(fitted_table([Col(c, KEEP if c in ("epoch", "val_acc") else 5) for c in curve_columns], curve,
                               console.width, title="Per-epoch curve"))
    console.print("Layer order: " + " -> ".join(document["layers"]), highlight=False)
    console.print("Recipe:")
    print_recipe(console, document["recipe"])
