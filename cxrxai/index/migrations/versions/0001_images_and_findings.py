"""Images and findings: the first released schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("sr_sop_instance_uid", sa.String(64), primary_key=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, index=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False, index=True),
        sa.Column("patient_id", sa.String(64), index=True),
        sa.Column("study_date", sa.Date, index=True),
        sa.Column("modality", sa.String(16)),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False, index=True),
        sa.Column("model_hash", sa.String(80), nullable=False),
        sa.Column("cardiothoracic_ratio", sa.Float),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "findings",
        sa.Column(
            "sr_sop_instance_uid",
            sa.String(64),
            sa.ForeignKey("images.sr_sop_instance_uid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("present", sa.Boolean, nullable=False),
    )
    op.create_index("findings_by_name_probability", "findings", ["name", "probability"])


def downgrade() -> None:
    op.drop_table("findings")
    op.drop_table("images")
