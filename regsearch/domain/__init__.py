"""The domain: the job spec, the search space, states, metrics, rankings and statistics.

Pure values and rules: no database, no queue, no torch.
"""
