"""Online checkpoints: an online learner's state and its stream position, committed together.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "online_checkpoints",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("stream", sa.String(512), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("position", sa.Text, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("learned", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", "stream", "seq", name="pk_online_checkpoints"),
    )
    op.create_index("ix_online_checkpoints_created_at", "online_checkpoints", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_online_checkpoints_created_at", table_name="online_checkpoints")
    op.drop_table("online_checkpoints")
