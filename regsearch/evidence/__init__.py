"""The job's report: the evidence behind "which placement, how much dropout, which momentum".

``build_report(spec, trials)`` works on plain trial dicts shaped like the API's trial items
(``number``, ``state``, ``params``, ``metrics``, ``confirm_of``, ``seed``; an optional
``retried`` flag drops attempts that a retry replaced). It is pure: no database, no torch, so
the API, the CLI and the dashboard show the same numbers. Every mean, std and interval comes
from :func:`regsearch.domain.stats.mean_interval` (sample std, Student-t 95% interval cut at the
metric's range; none below 3 runs: "too few runs").

What counts (one rule for every group):

- Groups summarize **complete search trials** (``confirm_of`` is None). Confirmation runs are
  left out of the groups: they re-run the leaders only, and counting them would tilt a group's
  mean toward its best configuration. They have their own section.
- A configuration that ran again with the same parameters and seed (``placement: act`` has no
  parameters at all; a list-valued space repeats itself) is one observation, the mean of its
  repeats: the same seed trains the same model, and counting it twice would narrow the interval
  without new evidence. ``n_complete`` counts trials, ``n_distinct`` the observations.
- Pruned trials stopped early on partial evidence: they are counted (``n_pruned``) but not in
  the means; failed and unfinished trials likewise (``n_failed``, ``n_active``).
- Groups by placement; by dropout band, fixed 0.1-wide bands ``[0.0, 0.1)``, ``[0.1, 0.2)``, ...
  (``none``: no dropout placed, or ``dropout_layers: none``); by BN momentum band, 1-2-5 steps on
  a log scale (``[0.01, 0.02)``, ``[0.02, 0.05)``, ``[0.05, 0.1)``, ... the last ``[0.5, 1]``;
  ``no BN``: no BN placed, or ``bn_layers: none``). Momentum is searched on a log prior, so
  log-spaced bands hold comparable shares of it.
- Placements are ranked by the mean of the job's first objective in its direction. The
  recommendation names the ranking's first configuration (what ``/best`` lists first) and says
  how far the placement comparison supports it: better than the others (intervals apart), or
  plainly not separable and which measure then chose; below ``MIN_RUNS`` complete, distinct
  configurations in any placement it says what is missing instead (``advice.py``).

Intervals that overlap are reported as "within noise". That is the conservative reading (two
95% intervals can overlap a little while the difference is still significant), which is the
side to err on when the question is whether a winner was luck.
"""

from regsearch.domain.stats import Interval
from regsearch.evidence.advice import describe_placement
from regsearch.evidence.build import build_report
from regsearch.evidence.groups import (
    DROPOUT_BAND_WIDTH,
    dropout_band,
    momentum_band,
)
from regsearch.evidence.markdown import format_stat, render_markdown
from regsearch.evidence.models import (
    Comparison,
    Confirmation,
    ConfirmedConfig,
    Group,
    Grouping,
    Recommendation,
    Report,
    ReportWarning,
)

__all__ = [
    "DROPOUT_BAND_WIDTH", "Comparison", "Confirmation", "ConfirmedConfig", "Group",
    "Grouping", "Interval", "Recommendation", "Report", "ReportWarning", "build_report", "describe_placement",
    "dropout_band", "format_stat", "momentum_band", "render_markdown",
]
