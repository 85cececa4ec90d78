"""Ledger rows carry a revision, bumped by every state change (the exporter's cache key).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows start at 0, like new ones.
    op.add_column("driftline_ledger", sa.Column("revision", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("driftline_ledger") as batch:
        batch.drop_column("revision")
