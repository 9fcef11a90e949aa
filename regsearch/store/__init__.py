"""Persistence: engines, tables, migrations and the data functions the components share."""
