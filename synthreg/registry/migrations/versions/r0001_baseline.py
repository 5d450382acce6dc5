"""Baseline: the schema of the first release (round 1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def _s() -> sa.String:
    return sa.String()


def upgrade() -> None:
    op.create_table(
        "auditevent",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", _s(), nullable=False),
        sa.Column("action", _s(), nullable=False),
        sa.Column("dataset", _s(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("prev_hash", _s(), nullable=False),
        sa.Column("hash", _s(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "dataset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _s(), nullable=False),
        sa.Column("description", _s(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", _s(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dataset_name", "dataset", ["name"], unique=True)
    op.create_table(
        "diffrecord",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_a", _s(), nullable=False),
        sa.Column("version_a", sa.Integer(), nullable=False),
        sa.Column("dataset_b", _s(), nullable=False),
        sa.Column("version_b", sa.Integer(), nullable=False),
        sa.Column("path", _s(), nullable=False),
        sa.Column("summary", _s(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", _s(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alias",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", _s(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "name"),
    )
    op.create_index("ix_alias_dataset_id", "alias", ["dataset_id"], unique=False)
    op.create_table(
        "version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", _s(), nullable=False),
        sa.Column("content_digest", _s(), nullable=False),
        sa.Column("spec_sha256", _s(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("path", _s(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=True),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.Column("derived_from", sa.Integer(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", _s(), nullable=False),
        sa.Column("message", _s(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("dvc_md5", _s(), nullable=False),
        sa.Column("git_commit", _s(), nullable=False),
        sa.Column("mlflow_run_id", _s(), nullable=False),
        sa.Column("validation", sa.JSON(), nullable=True),
        sa.Column("quality", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset_id", "number"),
    )
    op.create_index("ix_version_content_digest", "version", ["content_digest"], unique=False)
    op.create_index("ix_version_dataset_id", "version", ["dataset_id"], unique=False)
    op.create_table(
        "generationrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("prompt", _s(), nullable=False),
        sa.Column("model", _s(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("spec_sha256", _s(), nullable=False),
        sa.Column("content_digest", _s(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("rows_per_s", sa.Float(), nullable=False),
        sa.Column("peak_rss_mb", sa.Float(), nullable=False),
        sa.Column("user", _s(), nullable=False),
        sa.Column("host", _s(), nullable=False),
        sa.Column("synthreg_version", _s(), nullable=False),
        sa.Column("libraries", sa.JSON(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("git_commit", _s(), nullable=False),
        sa.Column("dvc_md5", _s(), nullable=False),
        sa.Column("mlflow_run_id", _s(), nullable=False),
        sa.Column("status", _s(), nullable=False),
        sa.Column("error", _s(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["version.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_generationrun_version_id", "generationrun", ["version_id"], unique=False)
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("run_id", _s(), nullable=False),
        sa.Column("experiment_id", _s(), nullable=False),
        sa.Column("context", _s(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", _s(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["version.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_usage_run_id", "usage", ["run_id"], unique=False)
    op.create_index("ix_usage_version_id", "usage", ["version_id"], unique=False)


def downgrade() -> None:
    for table in ("usage", "generationrun", "version", "alias", "diffrecord", "dataset", "auditevent"):
        op.drop_table(table)
