"""The Optuna study coordinator: ask, record, enqueue; reap, retry, re-send; finish jobs."""

from regsearch.services.coordinator.coordinator import Coordinator, run_coordinator

__all__ = ["Coordinator", "run_coordinator"]
