"""The schema as it stood when migrations began (revision 0001), frozen here.

Written out by hand rather than taken from ``models.py``, because the models move
on and this must not: revision 0001 creates exactly these tables, and a database
made before migrations existed (by ``create_all`` plus "add missing columns") is
brought to exactly this shape before it is stamped 0001 (``storage/schema.py``).
"""

from __future__ import annotations

import sqlalchemy as sa

INITIAL_REVISION = "0001"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def initial_metadata() -> sa.MetaData:
    """A fresh ``MetaData`` holding revision 0001's tables."""
    meta = sa.MetaData()
    sa.Table(
        "call", meta,
        sa.Column("carrier_call_id", sa.String(128), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False, server_default="twilio"),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("requested_model", sa.String(128), nullable=False),
        sa.Column("from_number", sa.String(64), nullable=False, server_default=""),
        sa.Column("to_number", sa.String(64), nullable=False, server_default=""),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("end_detail", sa.String(), nullable=False, server_default=""),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("input_text_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("input_audio_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("input_cached_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("output_text_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("output_audio_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("model_connected_at", _utc(), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("interruptions", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Index("ix_call_carrier_call_id", "carrier_call_id"),
        sa.Index("ix_call_agent", "agent"),
        sa.Index("ix_call_started_at", "started_at"),
        sa.Index("ix_call_agent_started_at", "agent", "started_at"),
    )
    sa.Table(
        "turn", meta,
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("interrupted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("model_ms", sa.Float(), nullable=True),
        sa.Column("tool_ms", sa.Float(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.String(32), sa.ForeignKey("call.id"), nullable=False),
        sa.UniqueConstraint("call_id", "seq", name="uq_turn_call_seq"),
        sa.Index("ix_turn_call_id", "call_id"),
    )
    sa.Table(
        "toolinvocation", meta,
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("arguments", sa.String(), nullable=False),
        sa.Column("result", sa.String(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.String(32), sa.ForeignKey("call.id"), nullable=False),
        sa.Index("ix_toolinvocation_call_id", "call_id"),
    )
    sa.Table(
        "callevent", meta,
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.String(32), sa.ForeignKey("call.id"), nullable=False),
        sa.Index("ix_callevent_call_id", "call_id"),
    )
    sa.Table(
        "limitscope", meta,
        sa.Column("scope", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    )
    sa.Table(
        "calllease", meta,
        sa.Column("scope", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(128), primary_key=True),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Index("ix_calllease_expires_at", "expires_at"),
    )
    sa.Table(
        "dailycounter", meta,
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
    )
    sa.Table(
        "used_tokens", meta,
        sa.Column("token_id", sa.String(128), primary_key=True),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Index("ix_used_tokens_expires_at", "expires_at"),
    )
    return meta
