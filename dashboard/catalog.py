"""The plugin families workers published, so that a plugin job's spec validates in the dashboard.

A spec naming a plugin family validates only where the family's knobs are known: the torch-free
processes learn them from the database (``regsearch.store.families``) and pass them to the spec's
validation (``JobSpec.model_validate(data, context=validation_context(catalog))``). The dashboard
reads them the same way, through its own read-only database. Every published row counts, however
old (``live_s=None``): a job accepted while its worker ran still reads back after the worker
stopped. Most pages never need it: they read a stored spec leniently (``regsearch.domain.stored_spec``).
"""

from __future__ import annotations

import streamlit as st

from regsearch.domain.families import FamilyCatalog
from regsearch.store.db import Database
from regsearch.store.families import catalog


@st.cache_resource(show_spinner=False)
def published(url: str, _db: Database) -> FamilyCatalog:
    """One catalog per database URL and process (it rereads the table at most every 2 s)."""
    return catalog(_db, live_s=None)  # type: ignore[no-any-return]
