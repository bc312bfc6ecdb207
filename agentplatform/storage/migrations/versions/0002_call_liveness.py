"""Calls carry a liveness lease, so a call whose server died can be closed.

``lease_expires_at`` is pushed forward by the writer of the process serving the
call; ``last_seen_at`` is when it last did. A call still open after its lease
ran out is closed as ``server_lost`` at ``last_seen_at`` (``storage/liveness.py``).

Calls left open by servers from before this revision have no lease. They get one
that runs out four hours after they started — the longest call any agent may
have (``limits.max_call_seconds``) — so a call a not-yet-upgraded server is still
serving is left alone, and one whose server is long gone is closed at once. Their
``last_seen_at`` is the last thing recorded on them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LONGEST_CALL = timedelta(hours=4)


def upgrade() -> None:
    op.add_column("call", sa.Column("lease_expires_at", sa.DateTime(timezone=True),
                                    nullable=True))
    op.add_column("call", sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_call_lease_expires_at", "call", ["lease_expires_at"])
    _lease_open_legacy_calls()


def downgrade() -> None:
    op.drop_index("ix_call_lease_expires_at", table_name="call")
    with op.batch_alter_table("call") as batch:
        batch.drop_column("last_seen_at")
        batch.drop_column("lease_expires_at")


def _lease_open_legacy_calls() -> None:
    meta = sa.MetaData()
    utc = sa.DateTime(timezone=True)
    call = sa.Table("call", meta, sa.Column("id", sa.String(32)),
                    sa.Column("started_at", utc), sa.Column("ended_at", utc),
                    sa.Column("lease_expires_at", utc), sa.Column("last_seen_at", utc))
    recorded = [sa.Table(name, meta, sa.Column("call_id", sa.String(32)),
                         sa.Column("created_at", utc))
                for name in ("turn", "callevent", "toolinvocation")]
    bind = op.get_bind()
    open_calls = bind.execute(sa.select(call.c.id, call.c.started_at)
                              .where(call.c.ended_at.is_(None))).all()
    for call_id, started_at in open_calls:
        started = _aware(started_at)
        seen = [started] + [
            _aware(t) for t in (
                bind.execute(sa.select(sa.func.max(table.c.created_at))
                             .where(table.c.call_id == call_id)).scalar()
                for table in recorded
            ) if t is not None
        ]
        bind.execute(sa.update(call).where(call.c.id == call_id).values(
            lease_expires_at=started + LONGEST_CALL, last_seen_at=max(seen)))


def _aware(value: datetime | str) -> datetime:
    # SQLite hands back naive UTC (or, for a raw column, text); PostgreSQL aware values.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
