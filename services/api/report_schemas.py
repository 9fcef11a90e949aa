"""What ``GET /jobs/{id}/report`` answers: the report models of :mod:`regsearch.evidence`, named
as the API names its answers (the dashboard and the CLI read the very same shape)."""

from __future__ import annotations

from regsearch.evidence import Report


class ReportPublic(Report):
    """Per placement, dropout band and momentum band: counts, mean, std and 95% interval of each
    metric; the seed groups of the confirmation runs; the recommendation and the warnings."""
