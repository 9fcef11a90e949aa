"""The Optuna study coordinator: one tick per active job, the named steps of ``steps.TICK``."""

from regsearch.services.coordinator.coordinator import Coordinator, run_coordinator

__all__ = ["Coordinator", "run_coordinator"]
