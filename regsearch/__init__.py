"""Shared core of regsearch: spec, search space, store, configuration, queue names, CLI."""

__version__ = "0.1.0"
