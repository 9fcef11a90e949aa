"""The queue: the Celery app factory, queue names and the notices between components."""
