"""regsearch: find where dropout and batch normalization belong in a network, and how strong.

The package's face for users' own code (docs/interface.md "Python"). The rest is laid out by layer:

- ``regsearch.domain``     the job spec, the search space, states, metrics, the ranking, statistics
- ``regsearch.evidence``   the job report (groups, comparisons, the recommendation)
- ``regsearch.store``      the database: tables, migrations, data functions, Optuna's record, pruning
- ``regsearch.messaging``  the Celery app, queue names and the notices between components
- ``regsearch.cli``        the command line and its terminal tables
- ``regsearch.services``   the API and the coordinator (the repository's ``services/`` folder)
- ``regsearch.worker``     the Celery task and the PyTorch trainer (``worker/``)
- ``regsearch.dashboard``  the Streamlit app (``dashboard/``)

Names are loaded on first use, so ``import regsearch`` stays cheap (no httpx, no pydantic).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["ApiError", "Client", "JobSpec", "__version__", "load_model", "load_spec"]

_LAZY = {
    "ApiError": "regsearch.client",
    "Client": "regsearch.client",
    "JobSpec": "regsearch.domain.spec",
    "load_spec": "regsearch.domain.spec",
    # the worker's side (torch, the `worker` extra): imported on first use, never by `import regsearch`
    "load_model": "regsearch.worker.weights",
}

if TYPE_CHECKING:
    from regsearch.client import ApiError, Client
    from regsearch.domain.spec import JobSpec, load_spec


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'regsearch' has no attribute {name!r}")
