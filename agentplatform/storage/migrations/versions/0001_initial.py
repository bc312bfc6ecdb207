"""The call-record tables as they stood when migrations began.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from agentplatform.storage.migrations.initial_schema import INITIAL_REVISION, initial_metadata

revision = INITIAL_REVISION
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    initial_metadata().create_all(op.get_bind())


def downgrade() -> None:
    initial_metadata().drop_all(op.get_bind())
