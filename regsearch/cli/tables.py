"""Terminal output for the CLI: progress, the placement comparison and the best configuration.

Tables fit the console's width (a terminal's own width; into a pipe, ``COLUMNS`` when set, else
no limit): a cell is never cut to an ellipsis. Where a table is too wide, cells first wrap (at
spaces, an interval ``[low, high]`` on its own line), then columns are left out by priority, the
least important first, and the caption names them. Never left out: the trial number, the
placement and the objective (``val_acc``) of the best table; the placement and the objective's
mean of the comparison; a job's id, status and progress in ``status``. ``--json`` (``best``,
``status``) prints everything for scripts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from regsearch.domain.metrics import SHOWN_METRICS
from regsearch.domain.model_label import model_label
from regsearch.domain.progress import document_progress
from regsearch.domain.states import TrialState


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(value)


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
    """A console as wide as the terminal; into a pipe, ``COLUMNS`` wide when set, else unlimited."""
    environ = os.environ if environ is None else environ
    isatty = bool(getattr(stream, "isatty", lambda: False)())
    width = None if isatty or environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH
    return Console(stderr=stderr, width=width)


@dataclass(frozen=True)
class Col:
    """A column of a :func:`fitted_table`: its header, its priority and how it is aligned."""

    header: str
    priority: int = KEEP
    justify: str = "right"


_INTERVAL = re.compile(r" (?=\[)")  # "0.72 [0.67, 0.77]": the interval may go on a line of its own


def _pieces(cell: str) -> list[str]:
    """What a cell is not broken inside: its words, and an interval as a whole."""
    if _INTERVAL.search(cell):
        return _INTERVAL.split(cell)
    return cell.split() or [cell]


def _overhead(n_columns: int) -> int:
    """Borders and padding of a rich table: ``| a | b |`` is 3 per column, plus 1."""
    return 3 * n_columns + 1


def _wrap_interval(cell: str, width: int) -> str:
    """An interval on a line of its own when the cell does not fit its column."""
    return "\n".join(_INTERVAL.split(cell)) if cell_len(cell) > width and _INTERVAL.search(cell) else cell


def fitted_table(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int | None, *,
                 title: str | None = None, hint: str = "", notes: dict[str, str] | None = None) -> Table:
    """A table that fits ``width`` columns without cutting a cell (None: no limit).

    Cells wrap at spaces (an interval moves to its own line) down to their longest unbreakable
    piece; where even that does not fit, the columns with the largest ``priority`` are left out
    (the rightmost first among equals) and the caption names them. ``KEEP`` columns always stay.
    ``notes`` maps a mark to the note explaining it: the caption carries a note only when its
    mark is in a cell on screen (not in a column the width left out).
    """
    cells = [[col.header, *(str(row[i]) for row in rows)] for i, col in enumerate(columns)]
    natural = [max(cell_len(c) for c in column) for column in cells]
    minimum = [max(cell_len(p) for c in column for p in _pieces(c)) for column in cells]
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
    table = Table(title=title, caption=caption, caption_justify="left")  # a wrapped caption reads as prose
    for i in kept:  # overflow="fold": should a cell still not fit (a tiny terminal), it folds, never "…"
        table.add_column(columns[i].header, justify=columns[i].justify, width=widths[i], overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(_wrap_interval(str(row[i]), widths[i]) for i in kept))
    return table


def comparison_table(document: dict[str, Any], width: int | None = None) -> Table:
    """The report's placements (``GET /jobs/{id}/report``), ranked, with their 95% intervals.

    Where the width is short, left out first: failed, pruned, done, converge ep., gap, test_acc.
    """
    from regsearch.evidence import Report, format_stat
    from regsearch.evidence.markdown import CLIPPED_MARK, CLIPPED_NOTE

    report = Report.model_validate(document)
    columns = [Col("placement", KEEP, "left"), Col("done", 6), Col("pruned", 7), Col("failed", 8),
               Col(f"{report.metric} mean", KEEP), Col("test_acc", 3), Col("gap", 4), Col("converge ep.", 5)]
    rows = [[group.key, str(group.n_complete), str(group.n_pruned), str(group.n_failed),
             *(format_stat(m, group.metrics.get(m)) for m in (report.metric, "test_acc", "gap", "epochs_to_converge"))]
            for group in report.grouping("placement").groups]
    return fitted_table(columns, rows, width, hint="a wider terminal shows them", notes={CLIPPED_MARK: CLIPPED_NOTE},
                        title=f"Placements compared (ranked by mean {report.metric}, 95% intervals)")


def _over_seeds(confirmation: dict[str, Any] | None, metric: str) -> str:
    """``mean ± std [low, high]`` of a metric over a confirmed configuration's seeds (the API's
    interval, regsearch.domain.stats.mean_interval: ``†`` when cut at the metric's range)."""
    from regsearch.evidence.markdown import CLIPPED_MARK, TOO_FEW_RUNS

    summary = (confirmation or {}).get("metrics", {}).get(metric) or {}
    if summary.get("mean") is None:
        return "-"
    if summary.get("low") is None or summary.get("high") is None:
        return f"{_fmt(summary['mean'])} ({TOO_FEW_RUNS})"
    std = f"{summary['std']:.2g}"  # significant digits: a spread of 0.0035 must not print as 0
    mark = CLIPPED_MARK if summary.get("clipped") else ""
    return f"{_fmt(summary['mean'])} ±{std} [{_fmt(summary['low'], 3)}, {_fmt(summary['high'], 3)}]{mark}"


def best_table(items: list[dict[str, Any]], width: int | None = None) -> Table:
    """The best configurations, ranked.

    Where the width is short, left out first: test_acc over seeds, converge ep., layers, runs,
    gap, test_acc, bn_momentum, dropout, val_acc over seeds; never #, placement or val_acc.
    """
    confirmed = any(item.get("confirmation") for item in items)
    title = "Best configurations" + (" (confirmed ones ranked by the mean over seeds, 95% interval)" if confirmed else "")
    columns = [Col("#"), Col("placement", KEEP, "left"), Col("dropout", 3), Col("bn_momentum", 4),
               Col("layers", 8, "left"), Col("val_acc"), Col("test_acc", 5), Col("gap", 6), Col("converge ep.", 9)]
    if confirmed:
        columns += [Col("runs", 7), Col("val_acc over seeds", 2), Col("test_acc over seeds", 10)]
    rows = []
    for item in items:
        params, metrics = item["params"], item["metrics"]
        row = [str(item["number"]), params["placement"], _fmt(params.get("dropout"), 3), _fmt(params.get("bn_momentum"), 3),
               _layers(params), *(_fmt(metrics.get(c)) for c in ("val_acc", "test_acc", "gap", "epochs_to_converge"))]
        if confirmed:
            confirmation = item.get("confirmation")
            row += [str(confirmation["n"]) if confirmation else "1", _over_seeds(confirmation, "val_acc"),
                    _over_seeds(confirmation, "test_acc")]
        rows.append(row)
    from regsearch.evidence.markdown import CLIPPED_MARK, CLIPPED_NOTE

    return fitted_table(columns, rows, width, title=title, hint="a wider terminal or --json shows them",
                        notes={CLIPPED_MARK: CLIPPED_NOTE})


def print_best(console: Console, items: list[dict[str, Any]], *, with_recipe: bool = True) -> None:
    if not items:
        console.print("No complete trial yet.")
        return
    console.print(best_table(items, console.width))
    if with_recipe and items[0].get("recipe"):
        console.print("Recipe of the best configuration (rebuilds the exact module):")
        console.print_json(json.dumps(items[0]["recipe"]), indent=None)


def status_line(job: dict[str, Any]) -> str:
    done, total = document_progress(job)
    counts = job.get("counts", {})
    best = job.get("best") or {}
    best_val = (best.get("metrics") or {}).get("val_acc")
    return (f"{job['id']}  {job['name']:<24} {job['status']:<10} {done}/{total} done "
            f"(running {counts.get(TrialState.RUNNING, 0)}, pruned {counts.get(TrialState.PRUNED, 0)}, "
            f"failed {counts.get(TrialState.FAILED, 0)}"
            + (f", cancelled {counts[TrialState.CANCELLED]}" if counts.get(TrialState.CANCELLED) else "") + ")"
            f"  best val_acc {_fmt(best_val)}")


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
                     _fmt(best_val)])
    return fitted_table(columns, rows, width, hint="a wider terminal or --json shows them")


def trial_document(params: dict[str, Any], recipe: dict[str, Any], layers: list[str], summary: dict[str, Any],
                   epochs: list[dict[str, Any]], device: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``regsearch trial --json`` prints."""
    return {"params": params, "metrics": summary, "epochs": epochs, "recipe": recipe, "layers": layers,
            "device": device, "data": data}


def print_trial(console: Console, document: dict[str, Any]) -> None:
    """The human form of a local trial: metrics, per-epoch curve, layer order, recipe."""
    summary = document["metrics"]
    title = f"Trial on {document['device']}: " + ", ".join(f"{k}={_fmt(v, 3)}" for k, v in document["params"].items())
    names = (*SHOWN_METRICS, "epochs_run")
    values = [_fmt(summary.get(c)) for c in names]
    console.print(title, highlight=False)
    if sum(max(cell_len(n), cell_len(v)) for n, v in zip(names, values)) + _overhead(len(names)) <= console.width:
        console.print(fitted_table([Col(n) for n in names], [values], console.width))
    else:  # too narrow for a row of metrics: one metric per line rather than cut headers
        console.print(fitted_table([Col("metric", KEEP, "left"), Col("value")], list(zip(names, values)),
                                   console.width))
    curve_columns = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
    curve = [[_fmt(epoch[c]) for c in curve_columns] for epoch in document["epochs"]]
    console.print(fitted_table([Col(c, KEEP if c in ("epoch", "val_acc") else 5) for c in curve_columns], curve,
                               console.width, title="Per-epoch curve"))
    console.print("Layer order: " + " -> ".join(document["layers"]), highlight=False)
    console.print("Recipe:")
    console.print_json(json.dumps(document["recipe"]), indent=None)
