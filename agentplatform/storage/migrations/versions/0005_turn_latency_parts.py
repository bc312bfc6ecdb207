"""Each answer's latency split by where it went (end-of-turn wait, speech-to-text, the
model's first token or audio, text-to-speech, tools, the rest), as JSON on the turn.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turn") as batch:
        batch.add_column(sa.Column("latency_parts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turn") as batch:
        batch.drop_column("latency_parts")
