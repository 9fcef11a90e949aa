"""rename the metric val_auc to mean_val_acc in stored trials and specs

``val_auc`` (the mean val_acc over the epochs run) read like a ROC AUC. Stored trial metrics, the
results a retry superseded and the objectives of stored specs take the new name, so every reader
sees one name. The names are written out here (not imported) so that this revision stays what it
was when later code renames again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_BATCH = 500


def _renamed_metrics(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict) and old in value:
        return {(new if key == old else key): item for key, item in value.items()}
    return value


def _renamed_spec(spec: Any, old: str, new: str) -> Any:
    objective = spec.get("objective") if isinstance(spec, dict) else None
    metrics = objective.get("metrics") if isinstance(objective, dict) else None
    if not isinstance(metrics, list) or old not in metrics:
        return spec
    return {**spec, "objective": {**objective, "metrics": [new if m == old else m for m in metrics]}}


def _rewrite(table: sa.Table, key: str, columns: dict[str, Any], old: str, new: str) -> None:
    """Rewrite ``columns`` (name -> function) of the rows whose JSON text mentions ``old``."""
    bind = op.get_bind()
    mentions = sa.or_(*(sa.cast(table.c[name], sa.Text).like(f'%"{old}"%') for name in columns))
    last = None
    while True:
        query = sa.select(table.c[key], *(table.c[name] for name in columns)).where(mentions)
        if last is not None:
            query = query.where(table.c[key] > last)
        rows = bind.execute(query.order_by(table.c[key]).limit(_BATCH)).all()
        for row in rows:
            values = {name: fix(row._mapping[name], old, new) for name, fix in columns.items()}
            bind.execute(table.update().where(table.c[key] == row._mapping[key]).values(**values))
        if len(rows) < _BATCH:
            return
        last = rows[-1]._mapping[key]


def _tables() -> tuple[sa.Table, sa.Table]:
    meta = sa.MetaData()
    trials = sa.Table('regsearch_trials', meta, sa.Column('id', sa.Integer, primary_key=True),
                      sa.Column('metrics', sa.JSON), sa.Column('superseded_result', sa.JSON))
    jobs = sa.Table('regsearch_jobs', meta, sa.Column('id', sa.String(32), primary_key=True),
                    sa.Column('spec', sa.JSON))
    return trials, jobs


def _rename(old: str, new: str) -> None:
    trials, jobs = _tables()
    _rewrite(trials, 'id', {'metrics': _renamed_metrics, 'superseded_result': _renamed_superseded}, old, new)
    _rewrite(jobs, 'id', {'spec': _renamed_spec}, old, new)


def _renamed_superseded(value: Any, old: str, new: str) -> Any:
    # A superseded result keeps the lost attempt's metrics under "metrics" (or is that dict itself).
    if isinstance(value, dict) and isinstance(value.get("metrics"), dict):
        return {**value, "metrics": _renamed_metrics(value["metrics"], old, new)}
    return _renamed_metrics(value, old, new)


def upgrade() -> None:
    _rename('val_auc', 'mean_val_acc')


def downgrade() -> None:
    _rename('mean_val_acc', 'val_auc')
