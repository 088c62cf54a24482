"""Series UID, view position and processing time per image; the result objects (SR, SEG, SC) with
their files, for exports with heatmaps.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as images:
        images.add_column(sa.Column("series_instance_uid", sa.String(64)))
        images.add_column(sa.Column("view_position", sa.String(16)))
        images.add_column(sa.Column("processing_seconds", sa.Float))
    op.create_table(
        "result_objects",
        sa.Column("sop_instance_uid", sa.String(64), primary_key=True),
        sa.Column(
            "sr_sop_instance_uid",
            sa.String(64),
            sa.ForeignKey("images.sr_sop_instance_uid", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("path", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("result_objects")
    with op.batch_alter_table("images") as images:
        images.drop_column("processing_seconds")
        images.drop_column("view_position")
        images.drop_column("series_instance_uid")
