"""Runs gain a parent and tags, per-step metrics; versions a status; aliases a history.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("tags", sa.Text, nullable=False, server_default="{}"))
        batch.create_index("ix_runs_parent_id", ["parent_id"])
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="active")
        )
    op.create_table(
        "run_steps",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("step", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", "step", name="pk_run_steps"),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_alias_events_model_name_at", "alias_events", ["model_name", "at"])


def downgrade() -> None:
    op.drop_index("ix_alias_events_model_name_at", table_name="alias_events")
    op.drop_table("alias_events")
    op.drop_table("run_steps")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("status")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_parent_id")
        batch.drop_column("tags")
        batch.drop_column("parent_id")
