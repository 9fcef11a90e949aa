"""coordinators' leases on jobs: regsearch_job_owners (fencing token) and regsearch_coordinators

Several ``regsearch coordinator`` processes may run; each active job is driven by the one whose
lease row it is (regsearch/store/ownership.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'regsearch_job_owners',
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('owner', sa.String(length=200), nullable=False),
        sa.Column('token', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('job_id'),
    )
    op.create_table(
        'regsearch_coordinators',
        sa.Column('owner', sa.String(length=200), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('owner'),
    )


def downgrade() -> None:
    op.drop_table('regsearch_coordinators')
    op.drop_table('regsearch_job_owners')
