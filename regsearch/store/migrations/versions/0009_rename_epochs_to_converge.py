"""rename the metric epochs_to_converge to epochs_to_95pct_best in stored trials and specs

``epochs_to_converge`` (the first epoch whose val_acc reaches 95% of the trial's *own* best) read
like a convergence speed; it rewards a trial that learns little. Stored trial metrics, the results
a retry superseded and the objectives of stored specs take the new name, so every reader sees one
name (a spec naming the old one still validates: regsearch.domain.metrics.RENAMED_METRICS). The
rewriting is revision 0007's (the names are given here, not imported, so that this revision stays
what it was when later code renames again).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# Alembic loads revisions by path; 0007's module by its package name (its rewrite, frozen with it).
_0007 = importlib.import_module('regsearch.store.migrations.versions.0007_rename_val_auc')


def upgrade() -> None:
    _0007._rename('epochs_to_converge', 'epochs_to_95pct_best')


def downgrade() -> None:
    _0007._rename('epochs_to_95pct_best', 'epochs_to_converge')
