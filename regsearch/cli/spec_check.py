"""A spec file checked as ``POST /jobs`` will check it: against what the service's workers publish.

``submit``, ``validate`` and ``inspect`` ask the API for its families, ``auto``'s networks and
its trainers (``regsearch.service_catalog``), so a plugin family or trainer that a worker offers is
accepted here too. When the API cannot be reached, the spec is checked with what this process
knows (built-ins, and the plugins installed here) and the answer names what only the service
could check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regsearch.cli.common import api_client, cli_settings, fail
from regsearch.domain.spec import JobSpec, SpecError, load_spec

CATALOG_TIMEOUT_S = 5.0


@dataclass
class CheckedSpec:
    spec: JobSpec
    offline: str | None = None  # why the service was not asked (None: it was)
    unchecked: list[str] = field(default_factory=list)  # what only the service could check

    def note(self) -> str | None:
        """One line saying what was not checked, for an offline check that left something out."""
        if self.offline is None or not self.unchecked:
            return None
        return (f"note: could not ask the service ({self.offline}); not checked: {'; '.join(self.unchecked)}. "
                "Start it (regsearch up) or give --api-url to check these too.")


def _installed_plugins() -> None:
    """Offline: the plugin families installed in this environment are known too (needs torch)."""
    try:
        from regsearch.worker.families import load_plugins
    except ImportError:  # a client without the worker extra: the service checks them
        return
    load_plugins()


def check_spec_file(path: Path) -> CheckedSpec:
    """``path`` validated against the service's catalog, or offline when the API is unreachable;
    exit 2 naming the field when it is not valid."""
    from regsearch.client import ApiError
    from regsearch.service_catalog import OfflineCatalog

    catalog: Any
    offline: str | None = None
    client = api_client(cli_settings(), timeout_s=CATALOG_TIMEOUT_S)  # --api-url, else REGSEARCH_API_URL
    try:
        catalog = client.catalog()
    except ApiError as exc:
        if exc.status != 0:
            fail(f"asking the service what its workers offer: {exc.message}", 2 if exc.is_bad_input else 1)
        offline = exc.message
        _installed_plugins()
        catalog = OfflineCatalog()
    finally:
        client.close()
    try:
        spec = load_spec(path, catalog)
    except SpecError as exc:
        fail(str(exc), 2)
    unchecked = catalog.notes(spec) if isinstance(catalog, OfflineCatalog) else []
    return CheckedSpec(spec, offline, unchecked)
