"""Monitor events (what the monitor saw and did, with evidence) and leases (one actor at a time).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_events",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("policy", sa.String(128), nullable=True),
        sa.Column("dedupe", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_events"),
        sa.UniqueConstraint("dedupe", name="uq_monitor_events_dedupe"),
    )
    op.create_index("ix_monitor_events_model_at", "monitor_events", ["model", "at"])
    op.create_index("ix_monitor_events_at", "monitor_events", ["at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_monitor_events_at", table_name="monitor_events")
    op.drop_index("ix_monitor_events_model_at", table_name="monitor_events")
    op.drop_table("monitor_events")
