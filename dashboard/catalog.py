"""The plugin families workers published, so that a plugin job's spec validates in the dashboard.

A spec naming a plugin family validates only where the family's knobs are known: the torch-free
processes learn them from the database (``regsearch.store.families``) and pass them to the spec's
validation (``JobSpec.model_validate(data, context=validation_context(catalog))``). The dashboard
reads them the same way, through its own read-only engine. Every published row counts, however
old (``live_s=None``): a job accepted while its worker ran still reads back after the worker
stopped. Most pages never need it: they read a stored spec leniently (``regsearch.domain.stored_spec``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from regsearch.domain.families import FamilyCatalog
from regsearch.store.families import catalog


class _ReadOnly:
    """The one method ``regsearch.store.families.offered`` reads through, on a read-only engine."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session


@st.cache_resource(show_spinner=False)
def published(url: str, _engine: Engine) -> FamilyCatalog:
    """One catalog per database URL and process (it rereads the table at most every 2 s)."""
    return catalog(_ReadOnly(_engine), live_s=None)  # type: ignore[arg-type]
