"""The audit chain cannot fork: no two events share a hash or follow the same event.

Two writers that read the same head (two machines on one PostgreSQL, say) would both append an
event with that head as ``prev_hash``; the second insert now fails instead of forking the chain.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ux_auditevent_hash", "auditevent", ["hash"], unique=True)
    op.create_index("ux_auditevent_prev_hash", "auditevent", ["prev_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_auditevent_prev_hash", table_name="auditevent")
    op.drop_index("ux_auditevent_hash", table_name="auditevent")
