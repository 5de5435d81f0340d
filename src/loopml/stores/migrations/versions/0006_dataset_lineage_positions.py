"""Dataset versions: parent, mode, parts (manifest) and partition columns; source positions.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("parent", sa.Integer, nullable=True))
        batch.add_column(sa.Column("mode", sa.String(16), nullable=False, server_default="replace"))
        batch.add_column(sa.Column("parts", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("partition_by", sa.Text, nullable=False, server_default="[]"))
    op.create_table(
        "source_positions",
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("position", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "key", name="pk_source_positions"),
    )


def downgrade() -> None:
    op.drop_table("source_positions")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("partition_by")
        batch.drop_column("parts")
        batch.drop_column("mode")
        batch.drop_column("parent")
