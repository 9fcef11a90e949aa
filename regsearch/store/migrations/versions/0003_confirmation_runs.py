"""confirmation runs: a trial's own training seed and the search trial it re-runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('regsearch_trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seed', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('confirm_of', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('regsearch_trials', schema=None) as batch_op:
        batch_op.drop_column('confirm_of')
        batch_op.drop_column('seed')
