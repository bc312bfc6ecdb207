"""Outbound calls: a call's direction, its status, and its answering-machine handling.

``direction`` is ``inbound`` or ``outbound``; ``status`` is ``queued`` → ``ringing``
→ ``in_progress`` → ``ended`` (an inbound call starts ``in_progress``);
``machine_detection`` is an outbound call's ``off``/``hangup``/``leave_message``.
Existing rows are inbound calls: ``ended`` if they have an end, else ``in_progress``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("call", sa.Column("direction", sa.String(16), nullable=False,
                                    server_default="inbound"))
    op.add_column("call", sa.Column("status", sa.String(16), nullable=False,
                                    server_default="in_progress"))
    op.add_column("call", sa.Column("machine_detection", sa.String(16), nullable=False,
                                    server_default=""))
    call = sa.table("call", sa.column("status", sa.String(16)),
                    sa.column("ended_at", sa.DateTime(timezone=True)))
    op.execute(sa.update(call).where(call.c.ended_at.is_not(None)).values(status="ended"))


def downgrade() -> None:
    with op.batch_alter_table("call") as batch:
        batch.drop_column("machine_detection")
        batch.drop_column("status")
        batch.drop_column("direction")
