"""What a spec is checked against outside the service: the running service's answers, or nothing.

The CLI (``submit``, ``validate``, ``inspect``) and ``Client.submit(path)`` check a spec as ``POST
/jobs`` will: against the families, ``auto``'s networks and the trainers the live workers publish,
asked from the API (``GET /families``, ``GET /trainers``): :func:`service_catalog`. When the API
cannot be reached, ``validate`` checks what it can with an :class:`OfflineCatalog`, which lets
a family or trainer it cannot know through and remembers it, so the command names what it could
not check. Both are ``regsearch.domain.families.FamilyCatalog``\\ s passed as validation context.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from regsearch.domain.families import FamilyInfo
from regsearch.domain.published import PublishedCatalog, family_info


class ServiceCatalog(PublishedCatalog):
    """The running service's families (``GET /families``) and trainers (``GET /trainers``)."""

    def __init__(self, families: list[Mapping[str, Any]], trainers: list[Mapping[str, Any]] | None) -> None:
        rows = {str(item["name"]): dict(item) for item in families if item.get("source") == "plugin"}
        super().__init__(lambda: rows, ttl_s=math.inf)
        auto = next((item for item in families if item.get("name") == "auto"), None)
        listed = auto.get("networks") if auto is not None else None
        self._networks = (None if listed is None else
                          {str(n["name"]): {"entry_point": n.get("entry_point"), "error": n.get("error")}
                           for n in listed})
        self._trainers = (None if trainers is None else
                          {str(t["name"]): {"options": t.get("options") or {}, "doc": t.get("doc") or ""}
                           for t in trainers if t.get("source") == "plugin"})

    def networks(self) -> dict[str, Any] | None:
        return self._networks

    def trainers(self) -> dict[str, Any] | None:
        return self._trainers


def service_catalog(client: Any) -> ServiceCatalog:
    """Ask the API what its workers publish; ``ApiError`` (status 0) when it cannot be reached.

    An API without ``GET /trainers`` (an earlier version, answering 404) leaves the trainers
    unchecked here. (``client`` is a ``regsearch.client.Client``, not imported: it imports this.)"""
    families = client.families()
    try:
        trainers = client.trainers()
    except Exception as exc:
        if getattr(exc, "status", None) != 404:  # an ApiError for a route the API does not have
            raise
        trainers = None
    return ServiceCatalog(families, trainers)


class OfflineCatalog:
    """No service to ask: a family this process does not know is let through unchecked (and
    remembered in :attr:`unchecked`), as are ``auto``'s network and a plugin trainer."""

    def __init__(self) -> None:
        self.unchecked: list[str] = []

    def get(self, name: str) -> FamilyInfo | None:
        import difflib

        from regsearch.domain.families import BUILTIN

        if difflib.get_close_matches(name, list(BUILTIN), n=1, cutoff=0.6):
            return None  # a misspelt built-in: refused, with the known families
        self.unchecked.append(f"model.family {name!r} and its knobs")
        # the control plane's unchecked plugin family (domain/published.py), with any knobs
        return family_info({"name": name, "knobs": {"additionalProperties": True},
                            "slots_doc": "unknown (not installed here)"})

    def names(self) -> list[str]:
        return []

    def networks(self) -> None:
        return None

    def trainers(self) -> None:
        return None

    def notes(self, spec: Any) -> list[str]:
        """What of ``spec`` only the service could check."""
        from regsearch.domain.trainers import BUILTIN_TRAINER

        found = list(dict.fromkeys(self.unchecked))
        if spec.model.family == "auto":
            found.append(f"model.network {spec.model.knobs.network!r} (installed on a worker?)")
        if spec.training.trainer != BUILTIN_TRAINER:
            found.append(f"training.trainer {spec.training.trainer!r} and training.options")
        return found
