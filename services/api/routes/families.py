"""``GET /families``: the model families on offer, built in and published by live workers.

Torch-free: the built-in families come from ``regsearch.domain.families`` (offered even before any
worker has started), the plugins from the rows workers published (``regsearch.store.families``).
``POST /jobs`` validates ``model.family`` against the same set (the app's catalog, passed to the
spec's validation), so it accepts a plugin family only while a live worker offers it.
``GET /trainers`` likewise: the built-in trainer and the trainer plugins live workers offer.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from regsearch.domain import families as domain
from regsearch.domain.trainers import BUILTIN_TRAINER
from regsearch.services.api.deps import DatabaseDep
from regsearch.store import families as published
from regsearch.store.db import Database

router = APIRouter(tags=["families"])


class NetworkPublic(BaseModel):
    name: str = Field(description="what model.network names (family auto)")
    entry_point: str = Field(description="the regsearch.networks entry point: pkg.module:make")
    error: str | None = Field(description="why it does not load on the workers; null: it loads")


class FamilyPublic(BaseModel):
    name: str
    knobs: dict[str, Any] = Field(description="the family's knobs (the spec's model.* fields) as JSON schema")
    slots_doc: str = Field(description="which layers are followed by a slot")
    source: Literal["builtin", "plugin"]
    networks: list[NetworkPublic] | None = Field(
        default=None, description="auto only, once a live worker has said: the networks installed on live workers "
                                  "(left out while unknown)")


class FamiliesPublic(BaseModel):
    items: list[FamilyPublic]


def offered_families(db: Database) -> list[dict[str, Any]]:
    """The built-in families, then the plugin families live workers offer, by name."""
    items = [
        {"name": info.name, "knobs": info.knobs.model_json_schema(), "slots_doc": info.slots_doc, "source": "builtin"}
        for info in (domain.BUILTIN[name] for name in sorted(domain.BUILTIN))
    ]
    offered = published.offered(db)
    networks = offered.get("auto", {}).get("networks")
    if networks is not None:
        for item in items:
            if item["name"] == "auto":
                item["networks"] = [{"name": name, "entry_point": str(net.get("entry_point") or ""),
                                     "error": net.get("error")} for name, net in sorted(networks.items())]
    for name, row in sorted(offered.items()):
        if name not in domain.BUILTIN and row["source"] == "plugin":
            items.append({"name": name, "knobs": row["knobs"], "slots_doc": row["slots_doc"], "source": "plugin"})
    return items


@router.get("/families", response_model=FamiliesPublic, response_model_exclude_unset=True)
def read_families(db: DatabaseDep) -> FamiliesPublic:
    """The model families a spec's ``model.family`` may name, with their knobs."""
    return FamiliesPublic(items=[FamilyPublic(**item) for item in offered_families(db)])


class TrainerPublic(BaseModel):
    name: str = Field(description="what training.trainer names")
    options: dict[str, Any] = Field(description="the trainer's Options (the spec's training.options) as JSON schema")
    doc: str = Field(description="the trainer's description (its docstring's first line)")
    source: Literal["builtin", "plugin"]


class TrainersPublic(BaseModel):
    items: list[TrainerPublic]


BUILTIN_TRAINER_DOC = ("the built-in loop: cross-entropy, the spec's optimizer (training.*), best "
                       "validation epoch's weights")


def offered_trainers(db: Database) -> list[dict[str, Any]]:
    """The built-in trainer, then the trainer plugins live workers offer, by name."""
    items = [{"name": BUILTIN_TRAINER, "options": {}, "doc": BUILTIN_TRAINER_DOC, "source": "builtin"}]
    for name, row in sorted(published.offered_trainers(db).items()):
        items.append({"name": name, "options": row["options"], "doc": row["doc"], "source": "plugin"})
    return items


@router.get("/trainers", response_model=TrainersPublic)
def read_trainers(db: DatabaseDep) -> TrainersPublic:
    """The trainers a spec's ``training.trainer`` may name, with their options."""
    return TrainersPublic(items=[TrainerPublic(**item) for item in offered_trainers(db)])
