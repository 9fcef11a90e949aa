"""The plugin families workers published, so that a plugin job's spec parses in the dashboard.

A spec naming a plugin family validates only where the family's knobs are known: the torch-free
processes learn them from the database (``regsearch.store.families``), the API per request and
the coordinator at start. The dashboard reads them the same way, through its own read-only
engine, and every data function that parses a spec does so inside :func:`known_families`.
Every published row counts, however old (``live_s=None``): a job accepted while its worker ran
still reads back after the worker stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from regsearch.domain.families import use_catalog
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
def published(url: str, _engine: Engine) -> Any:
    """One catalog per database URL and process (it rereads the table at most every 2 s)."""
    return catalog(_ReadOnly(_engine), live_s=None)  # type: ignore[arg-type]


@contextlib.contextmanager
def known_families(url: str, engine: Engine) -> Iterator[None]:
    """Within the block, a spec may name any family a worker of this database ever published."""
    with use_catalog(published(url, engine)):
        yield
