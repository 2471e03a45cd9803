"""Rankings say why a task was skipped, mark an arena "both bad" answer, and record an edit:
``rankings.skip_reason`` (NULL unless skipped with a reason), ``rankings.both_bad`` and
``rankings.edited_at`` (NULL until the annotator changes the ranking).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rankings") as batch:
        batch.add_column(sa.Column("skip_reason", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("both_bad", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rankings") as batch:
        batch.drop_column("edited_at")
        batch.drop_column("both_bad")
        batch.drop_column("skip_reason")
