"""One router per resource: jobs (with their trials and best configurations) and health."""
