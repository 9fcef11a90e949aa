"""Live sections: parts of a page that refresh themselves in place while a job or trial runs.

Each section is a fragment of its own (``st.fragment(run_every=...)``): a refresh reruns that
section alone, never the page, and its charts are replaced where they stand (a chart is never
removed and drawn again, so none is blank between refreshes). While an element is being redrawn
Streamlit marks it stale and, past half a second, fades it out; on a page that refreshes every
few seconds that read as the whole page greying out at every refresh. :func:`steady` keeps
what is shown at full opacity meanwhile: the data on screen stays readable until its
replacement arrives (the "running" indicator still shows that a run is under way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

__all__ = ["STEADY_CSS", "section", "steady"]

T = TypeVar("T")

# Streamlit marks the container of an element being redrawn with data-stale="true" and fades it
# (its opacity, after a delayed transition). Only that container: the charts' own opacities stay.
STEADY_CSS = "<style>[data-stale='true'] {opacity: 1 !important; transition: none !important;}</style>"


def steady() -> None:
    """No fading of the page's elements while they are redrawn (see the module). Call once per run."""
    st.html(STEADY_CSS)


def section(draw: Callable[[T], None], read: Callable[[], T], run_every_s: float | None) -> None:
    """``draw(read())`` as a fragment of its own, read afresh at each of its refreshes (every
    ``run_every_s`` seconds; None: only when one of its own widgets changes)."""

    def run() -> None:
        draw(read())

    run.__qualname__ = f"live_{draw.__name__}"  # the fragment's identity: one per section
    st.fragment(run, run_every=run_every_s)()
