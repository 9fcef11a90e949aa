"""``space.placement_balance``: each placement gets an equal share of the search trials.

A sampler left alone gives placements what it likes (random sampling gave 1 to 12 trials per
placement on a 30-trial mnist1d job, too few to compare two of them). With the balance on, the
coordinator picks the placement of each new search trial itself, the one with the fewest search
trials so far (the spec's order among equals), and asks the sampler for the rest of the
configuration with the placement fixed (the mirror's ``structure``). So after any number of asks
the counts differ by at most one. A placement whose space is used up is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from regsearch.domain.spec import JobSpec


def placement_order(spec: JobSpec, search_params: Iterable[Mapping[str, Any]]) -> list[str] | None:
    """The spec's placements, fewest search trials first (the spec's order among equals); None
    when the balance is off or there is nothing to choose. ``search_params``: the parameters of the
    job's search trials so far (retries left out: a retry repeats its trial's placement)."""
    choices = spec.space.choices("placement")
    if not spec.space.placement_balance or len(choices) < 2:
        return None
    counts = dict.fromkeys(choices, 0)
    for params in search_params:
        placement = params.get("placement")
        if placement in counts:
            counts[placement] += 1
    return sorted(choices, key=lambda p: (counts[p], choices.index(p)))
