"""``regsearch report`` on a terminal: the report's prose, then its tables fitted to the width.

The Markdown form (regsearch.evidence.render_markdown) is for files and pipes; rendered by a
terminal at 80 columns its wide tables were cut to ``bn-…`` and ``0.3…``. Here every table is a
:func:`regsearch.cli.tables.fitted_table`: the placement (or band) and the objective's interval
always whole, a row one line, the columns left out named under the table.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from regsearch.cli.tables import KEEP, Col, fitted_table, grouping_table, metric_header


def _paragraph(console: Console, text: str, style: str = "") -> None:
    console.print(Text(text, style=style))  # wrapped at spaces by the console, never read as markup
    console.print()


def confirmation_table(document: dict[str, Any], width: int | None) -> Any:
    """The confirmed configurations: each one's seed group, the objective with its interval first."""
    from regsearch.domain.metrics import format_metric
    from regsearch.evidence import Report, format_stat
    from regsearch.evidence.markdown import TABLE_NOTES

    report = Report.model_validate(document)
    metric = report.metric
    shown = [metric, *(m for m in ("val_acc", "test_acc", "gap") if m != metric)]
    columns = [Col("rank", 3), Col("#", KEEP), Col("configuration", 9, "left", wrap=True), Col("runs", 4),
               Col("seeds", 8, "left", wrap=True), *(Col(metric_header(m), KEEP if m == metric else 5 + i)
                                                     for i, m in enumerate(shown)),
               Col(f"{metric_header(metric)} sd", 6)]
    rows = [[str(c.rank), str(c.number), c.config, str(c.metrics[metric].n), ", ".join(map(str, c.seeds)),
             *(format_stat(m, c.metrics.get(m), marked=True) for m in shown), format_metric(metric, c.metrics[metric].std)]
            for c in report.confirmation.configs]
    return fitted_table(columns, rows, width, notes=TABLE_NOTES, hint="a wider terminal or --format md shows them",
                        title="Confirmation runs (seed groups; # is the search trial)")


def print_report(console: Console, document: dict[str, Any]) -> None:
    """The report for a person at a terminal of ``console.width`` columns."""
    from regsearch.domain.states import TrialState
    from regsearch.domain.stats import MIN_RUNS, TOO_FEW_RUNS
    from regsearch.evidence import Report

    report = Report.model_validate(document)
    title = f"Report: {report.name or report.job_id or 'job'}"
    if report.job_id:
        title += f" (job {report.job_id}" + (f", {report.status})" if report.status else ")")
    _paragraph(console, title, "bold")
    if report.model:
        _paragraph(console, f"Model: {report.model}.")
    if report.slots:
        _paragraph(console, f"Slots ({len(report.slots)}, by layer name): "
                   + ", ".join(f"{i} {name}" for i, name in enumerate(report.slots)) + ".")
    console.print(Text.assemble(("Recommendation.", "bold"), " ", report.recommendation.sentence))
    console.print()
    if report.convergence:  # the convergence comparison in words (regsearch/evidence/convergence.py)
        console.print(Text.assemble(("Convergence.", "bold"), " ", report.convergence))
        console.print()
    search = report.counts["search"]
    _paragraph(console, f"Search trials: {search.get(TrialState.COMPLETE, 0)} complete, "
               f"{search.get(TrialState.PRUNED, 0)} pruned, {search.get(TrialState.FAILED, 0)} failed, "
               f"{search.get(TrialState.QUEUED, 0) + search.get(TrialState.RUNNING, 0)} unfinished. Means are over "
               f"complete search trials with Student-t 95% intervals (none below {MIN_RUNS} runs: {TOO_FEW_RUNS}); "
               "n counts distinct configurations (a repeat with the same seed counts once), trials the complete ones.")
    if report.warnings:
        console.print(Text("Warnings", style="bold"))
        bullets = Table.grid(padding=(0, 1))  # a hanging indent: a wrapped warning stays right of its dash
        bullets.add_column()
        bullets.add_column()
        for warning in report.warnings:
            bullets.add_row("-", Text(warning.message))
        console.print(bullets)
        console.print()
    for grouping in report.groupings:
        if grouping.groups:
            console.print(grouping_table(document, grouping.by, console.width))
            console.print(Text(grouping.description, style="dim"))
        else:
            console.print(Text(f"{grouping.title}: no trials yet."))
        console.print()
    confirmation = report.confirmation
    if confirmation.configs:
        console.print(confirmation_table(document, console.width))
    elif confirmation.requested:
        console.print(Text(f"Confirmation runs: requested (top {confirmation.top_k}, {confirmation.seeds} extra "
                           f"seeds each); {confirmation.n_pending} run(s) pending."))
    else:
        console.print(Text("Confirmation runs: not requested (spec option `confirm: {top_k: 3, seeds: 3}`)."))
