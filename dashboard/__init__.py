"""The Streamlit dashboard: jobs, job comparison (generalization, convergence), trial detail.

``dashboard/app.py`` is the entry (``streamlit run``); :func:`regsearch.dashboard.run.run_dashboard` launches
it as a subprocess for ``regsearch dashboard`` and ``regsearch up``. All data access lives in
:mod:`regsearch.dashboard.data` (read-only SQL behind short TTL caches); :mod:`regsearch.dashboard.frames` derives
the analysis tables and :mod:`regsearch.dashboard.charts` builds the figures, both pure functions of frames.
"""
