"""trained weights: what became of a complete trial's best-validation weights

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('regsearch_trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('weights', sa.String(length=16), nullable=True))
        batch_op.create_index('ix_trial_job_weights', ['job_id', 'weights'], unique=False)
        batch_op.create_index('ix_trial_job_confirm_of', ['job_id', 'confirm_of'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('regsearch_trials', schema=None) as batch_op:
        batch_op.drop_index('ix_trial_job_confirm_of')
        batch_op.drop_index('ix_trial_job_weights')
        batch_op.drop_column('weights')
