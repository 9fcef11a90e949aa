"""The control-plane services: the REST API and the study coordinator (no torch, no worker code)."""
