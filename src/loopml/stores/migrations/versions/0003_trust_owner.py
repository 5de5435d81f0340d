"""Trust opt-ins on model versions; the owner of a run (host, pid, start) to spot dead runs.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("trusted", sa.Text, nullable=False, server_default="[]"))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("trusted")
