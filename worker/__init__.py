"""The worker: model builder, datasets and training loop (pure PyTorch), plus the Celery adapter."""
