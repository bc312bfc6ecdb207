"""Campaigns: the campaign (agent, carrier, pacing, calling hours, status) and its
contacts (number, params, time zone, where each stands, its claim and calls).

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


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("from_number", sa.String(64), nullable=False),
        sa.Column("machine_detection", sa.String(16), nullable=False),
        sa.Column("voicemail_message", sa.String(), nullable=False),
        sa.Column("hours_start", sa.String(5), nullable=False),
        sa.Column("hours_end", sa.String(5), nullable=False),
        sa.Column("default_time_zone", sa.String(64), nullable=False),
        sa.Column("calls_per_second", sa.Float(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_backoff_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_detail", sa.String(), nullable=False),
        sa.Column("hold_until", _utc(), nullable=True),
        sa.Column("bucket_tokens", sa.Float(), nullable=True),
        sa.Column("bucket_filled_at", _utc(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
    )
    op.create_index("ix_campaign_agent", "campaign", ["agent"])
    op.create_index("ix_campaign_status", "campaign", ["status"])
    op.create_table(
        "campaign_contact",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaign.id"), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=True),
        sa.Column("last_detail", sa.String(), nullable=False),
        sa.Column("call_ids", sa.JSON(), nullable=False),
        sa.Column("current_call_id", sa.String(32), nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", _utc(), nullable=True),
        sa.Column("dial_started_at", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.UniqueConstraint("campaign_id", "number", name="uq_campaign_contact_number"),
    )
    op.create_index("ix_campaign_contact_due", "campaign_contact",
                    ["campaign_id", "status", "next_attempt_at"])
    op.create_index("ix_campaign_contact_current_call_id", "campaign_contact",
                    ["current_call_id"])
    op.create_index("ix_campaign_contact_status", "campaign_contact", ["status"])


def downgrade() -> None:
    op.drop_index("ix_campaign_contact_status", table_name="campaign_contact")
    op.drop_index("ix_campaign_contact_current_call_id", table_name="campaign_contact")
    op.drop_index("ix_campaign_contact_due", table_name="campaign_contact")
    op.drop_table("campaign_contact")
    op.drop_index("ix_campaign_status", table_name="campaign")
    op.drop_index("ix_campaign_agent", table_name="campaign")
    op.drop_table("campaign")
