"""The Streamlit dashboard: jobs, job comparison (generalization, convergence), trial detail.

``dashboard/app.py`` is the entry (``streamlit run``); :func:`dashboard.run.run_dashboard` launches
it as a subprocess for ``regsearch dashboard`` and ``regsearch up``. All data access lives in
:mod:`dashboard.data` (read-only SQL behind short TTL caches); :mod:`dashboard.frames` derives
the analysis tables and :mod:`dashboard.charts` builds the figures, both pure functions of frames.
"""
