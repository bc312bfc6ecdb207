"""Campaign state in the database: every decision is a short transaction here.

Nothing about a campaign lives only in a process: which contacts are due, which
are claimed and by whom until when, the rate bucket, each outcome. So a campaign
survives a restart, and processes sharing one database share one campaign:

* **Claiming** serializes per campaign — the claim transaction first bumps the
  campaign row's ``version`` (a row lock on PostgreSQL, the write lock on SQLite),
  so two processes never read the same room or bucket — and each contact moves
  ``pending → dialing`` by a conditional UPDATE that must find it still pending.
* **Dialing** starts with another conditional UPDATE (``dial_started_at`` still
  empty, the claim token still ours, the campaign still running), so a claim is
  dialed at most once even if its job runs twice, and a pause stops every dial that
  has not started.
* **Outcomes** come from the call record (``end_reason``), whoever placed the call.
* **Recovery:** a claim whose process died runs out (``claimed_until``) and is put
  back — as never dialed when its dial had not started, else as an interrupted
  attempt, which counts.

Plain functions over an engine, run in worker threads (never on the event loop).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, exists, func, insert, update
from sqlmodel import Session, col, select

from agentplatform.campaigns.contacts_csv import ContactRow
from agentplatform.campaigns.hours import next_call_time, parse_hhmm
from agentplatform.campaigns.pacing import TokenBucket, backoff, spacing
from agentplatform.records import RETRYABLE_OUTBOUND_REASONS, EndReason
from agentplatform.storage.models import Call, Campaign, CampaignContact, utcnow


def new_owner() -> str:
    """A claim holder's name: host, process and a random part (one per queue)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


STATUSES = ("draft", "running", "paused", "completed", "cancelled")
CONTACT_STATUSES = ("pending", "dialing", "done", "failed")
# A claim not dialed by then, or a dial not answered with a call id by then, is
# taken back: the dial itself is given far less (``runner.DIAL_TIMEOUT``).
CLAIM_SECONDS = 120.0
# Contacts looked at per campaign per tick when looking for due ones.
SCAN_LIMIT = 200
# The platform itself refused (agent's slots full, budget spent, shutting down): not
# an attempt at the callee; tried again after this.
PLATFORM_REFUSALS = frozenset({EndReason.BUSY.value, EndReason.DRAINING.value})
PLATFORM_RETRY = timedelta(seconds=10)
# Refusals about the campaign, not the number: every other number would be refused
# alike, so the campaign stops — paused until someone fixes the agent or carrier, or
# held until the budget day (UTC) turns — and the number waits, not counted.
PAUSING_REFUSALS = frozenset({"unknown_agent", "carrier_unavailable"})
HOLDING_REFUSALS = frozenset({EndReason.OVER_BUDGET.value})
INTERRUPTED = "interrupted"  # our server stopped before the callee answered: retried
# Ends that are our server's doing: on a call nobody had answered yet, the callee was
# never reached, so the number is tried again.
OUR_ENDINGS = frozenset({EndReason.SERVER_SHUTDOWN.value, EndReason.SERVER_LOST.value,
                         EndReason.DRAINING.value})
# A placed call's record says it is not answered yet (``outbound/``).
NOT_ANSWERED_STATUSES = ("queued", "ringing")
TRANSITIONS = {
    "pause": ({"running"}, "paused"),
    "resume": ({"paused", "draft"}, "running"),
    "cancel": ({"draft", "running", "paused"}, "cancelled"),
}


class CampaignConflict(ValueError):
    """A pause/resume/cancel that the campaign's status does not allow."""


@dataclass(frozen=True, slots=True)
class CampaignSettings:
    """A new campaign as its creator states it (checked by ``campaigns.api``)."""

    name: str
    agent: str
    carrier: str
    from_number: str = ""
    machine_detection: str = "off"
    voicemail_message: str = ""
    hours_start: str = "09:00"
    hours_end: str = "20:00"
    default_time_zone: str = "UTC"
    calls_per_second: float = 1.0
    max_concurrent: int = 1
    max_attempts: int = 3
    retry_backoff_seconds: int = 600
    start: bool = True


@dataclass(frozen=True, slots=True)
class Claim:
    contact_id: int
    token: str
    delay: float  # seconds from the claim to this contact's dial, for an even rate


@dataclass(frozen=True, slots=True)
class DialTicket:
    """What placing one claimed contact's call needs."""

    contact_id: int
    token: str
    campaign_id: str
    agent: str
    carrier: str
    from_number: str
    to_number: str
    params: dict[str, str]
    machine_detection: str
    voicemail_message: str


@dataclass(slots=True)
class TickReport:
    settled: int = 0
    recovered: int = 0
    completed: list[str] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    running: int = 0  # campaigns running: none, and the queue may tick less often


# ---------------------------------------------------------------- create, read, steer


def create_campaign(engine: Engine, spec: CampaignSettings, rows: list[ContactRow],
                    now: datetime | None = None) -> str:
    """Store a campaign and all its contacts in one transaction; returns its id."""
    now = now or utcnow()
    campaign_id = uuid.uuid4().hex
    values = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name != "start"}
    with Session(engine) as session:
        session.add(Campaign(id=campaign_id, status="running" if spec.start else "draft",
                             created_at=now, updated_at=now, **values))
        session.flush()
        session.execute(insert(CampaignContact), [
            {"campaign_id": campaign_id, "line": r.line, "number": r.number,
             "params": r.params, "time_zone": r.time_zone, "status": "pending",
             "attempts": 0, "next_attempt_at": now, "last_detail": "", "call_ids": [],
             "updated_at": now} for r in rows])
        session.commit()
    return campaign_id


def set_status(engine: Engine, campaign_id: str, action: str,
               now: datetime | None = None) -> str:
    """Pause, resume or cancel; returns the new status. ``KeyError`` for no such
    campaign, ``CampaignConflict`` when its status does not allow ``action``."""
    allowed, target = TRANSITIONS[action]
    now = now or utcnow()
    with Session(engine) as session:
        done = session.execute(update(Campaign).where(
            Campaign.id == campaign_id, col(Campaign.status).in_(allowed),
        ).values(status=target, status_detail="", updated_at=now,
                 version=Campaign.version + 1))
        status = session.exec(select(Campaign.status).where(Campaign.id == campaign_id)).first()
        session.commit()
    if status is None:
        raise KeyError(campaign_id)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise CampaignConflict(f"cannot {action} a campaign that is {status}")
    return target


def campaign_counts(session: Session, ids: list[str] | None = None
                    ) -> dict[str, dict[str, int]]:
    statement = select(CampaignContact.campaign_id, CampaignContact.status, func.count()) \
        .group_by(CampaignContact.campaign_id, CampaignContact.status)
    if ids is not None:
        statement = statement.where(col(CampaignContact.campaign_id).in_(ids))
    counts: dict[str, dict[str, int]] = {}
    for campaign_id, status, n in session.exec(statement).all():
        counts.setdefault(campaign_id, dict.fromkeys(CONTACT_STATUSES, 0))[status] = n
    return counts


def _public(campaign: Campaign, counts: Mapping[str, int]) -> dict[str, Any]:
    data = campaign.model_dump(mode="json", exclude={"bucket_tokens", "bucket_filled_at",
                                                     "version", "hold_until"})
    total = sum(counts.values())
    finished = counts.get("done", 0) + counts.get("failed", 0)
    data["contacts"] = {"total": total, **{s: counts.get(s, 0) for s in CONTACT_STATUSES}}
    data["progress"] = round(finished / total, 4) if total else 0.0
    return data


def list_campaigns(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """Campaigns, newest first, each with its contacts counted by status."""
    with Session(engine) as session:
        campaigns = session.exec(select(Campaign).order_by(
            col(Campaign.created_at).desc()).limit(limit)).all()
        counts = campaign_counts(session, [c.id for c in campaigns])
        return [_public(c, counts.get(c.id, {})) for c in campaigns]


def campaign_detail(engine: Engine, campaign_id: str, contacts_limit: int = 500
                    ) -> dict[str, Any] | None:
    """One campaign: settings, status, progress, outcomes by reason, its contacts."""
    with Session(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            return None
        counts = campaign_counts(session, [campaign_id]).get(campaign_id, {})
        outcomes = Counter({reason: n for reason, n in session.exec(
            select(CampaignContact.last_outcome, func.count())
            .where(CampaignContact.campaign_id == campaign_id,
                   col(CampaignContact.status).in_(("done", "failed")))
            .group_by(CampaignContact.last_outcome)).all() if reason})
        attempts = session.exec(select(func.coalesce(func.sum(CampaignContact.attempts), 0))
                                .where(CampaignContact.campaign_id == campaign_id)).one()
        contacts = session.exec(select(CampaignContact).where(
            CampaignContact.campaign_id == campaign_id).order_by(
            col(CampaignContact.line), col(CampaignContact.id)).limit(contacts_limit)).all()
        data = _public(campaign, counts)
        data["outcomes"] = dict(sorted(outcomes.items()))
        data["attempts"] = int(attempts)
        data["contact_list"] = [c.model_dump(mode="json", include={
            "line", "number", "params", "time_zone", "status", "attempts", "next_attempt_at",
            "last_outcome", "last_detail", "call_ids"}) for c in contacts]
        return data


# ---------------------------------------------------------------- the tick


def tick(engine: Engine, now: datetime, *, owner: str,
         agent_limits: Mapping[str, int | None] | None = None,
         claim: bool = True) -> TickReport:
    """One round: record outcomes of ended calls, take back dead claims, complete
    finished campaigns, then (unless ``claim`` is false: the process is shutting
    down) claim what each running campaign may dial now."""
    report = TickReport()
    report.settled = settle(engine, now)
    report.recovered = recover(engine, now)
    report.completed = complete_finished(engine, now)
    if not claim:
        return report
    with Session(engine) as session:
        running = session.exec(select(Campaign.id).where(Campaign.status == "running")).all()
    report.running = len(running)
    for campaign_id in running:
        report.claims.extend(claim_due(engine, campaign_id, now, owner=owner,
                                       agent_limits=agent_limits or {}))
    return report


def settle(engine: Engine, now: datetime) -> int:
    """Contacts whose call has ended take the call's outcome (the record's
    ``end_reason``: busy, no_answer, failed, completed, voicemail_left…)."""
    settled = 0
    with Session(engine) as session:
        ended = session.exec(
            select(CampaignContact, Call.end_reason, Call.end_detail, Call.ended_at,
                   Call.model_connected_at, Campaign)
            .join(Call, Call.id == CampaignContact.current_call_id)
            .join(Campaign, Campaign.id == CampaignContact.campaign_id)
            .where(CampaignContact.status == "dialing", col(Call.ended_at).is_not(None))
            .limit(500)).all()
        for contact, reason, detail, ended_at, connected_at, campaign in ended:
            reason = reason or EndReason.COMPLETED.value
            if reason in OUR_ENDINGS and connected_at is None:
                reason = INTERRUPTED  # our server went away before anyone answered
            # The wait before a retry runs from when the call ended.
            if _conclude(session, contact, campaign, reason, detail or "",
                         min(now, ended_at or now)):
                settled += 1
        session.commit()
    return settled


def after_outcome(reason: str, attempts: int, max_attempts: int, first_backoff: timedelta,
                  now: datetime) -> tuple[str, datetime | None]:
    """Where a contact goes after a call that ended ``reason`` on its ``attempts``-th
    try: ``(status, next_attempt_at)``. Busy and no answer are tried again after a
    growing wait, until ``max_attempts``; a failed dial is not (a bad number stays
    bad); anything else reached the callee (or their machine)."""
    retryable = reason in RETRYABLE_OUTBOUND_REASONS or reason == INTERRUPTED
    if retryable and attempts < max_attempts:
        return "pending", now + backoff(attempts, first_backoff)
    if retryable or reason == EndReason.FAILED.value:
        return "failed", None
    return "done", None


def _conclude(session: Session, contact: CampaignContact, campaign: Campaign, reason: str,
              detail: str, now: datetime) -> bool:
    status, next_at = after_outcome(reason, contact.attempts, campaign.max_attempts,
                                    timedelta(seconds=campaign.retry_backoff_seconds), now)
    done = session.execute(update(CampaignContact).where(
        CampaignContact.id == contact.id, CampaignContact.status == "dialing",
        CampaignContact.claim_token == contact.claim_token,
    ).values(status=status, next_attempt_at=next_at, last_outcome=reason[:32],
             last_detail=detail[:500], current_call_id=None, claim_token=None,
             claimed_by=None, claimed_until=None, dial_started_at=None, updated_at=now))
    return done.rowcount == 1  # type: ignore[attr-defined]


def recover(engine: Engine, now: datetime, *, not_mine_of: str | None = None) -> int:
    """Take back claims whose process is gone: those past ``claimed_until`` — and, at
    the start of a single-process queue, every undialed claim not held by
    ``not_mine_of`` at once. (Taking back an undialed claim is safe even if its
    holder lives: its dial needs the claim token. A claim whose dial had started
    waits for its lease, in case another process is still placing that call.)
    Claims with a call id are left to ``settle`` (the call record knows)."""
    recovered = 0
    with Session(engine) as session:
        lost = CampaignContact.claimed_until < now
        if not_mine_of is not None:
            lost = lost | ((CampaignContact.claimed_by != not_mine_of)
                           & col(CampaignContact.dial_started_at).is_(None))
        stuck = session.exec(
            select(CampaignContact, Campaign)
            .join(Campaign, Campaign.id == CampaignContact.campaign_id)
            .where(CampaignContact.status == "dialing",
                   col(CampaignContact.current_call_id).is_(None), lost).limit(500)).all()
        for contact, campaign in stuck:
            if contact.dial_started_at is None:
                done = session.execute(update(CampaignContact).where(
                    CampaignContact.id == contact.id,
                    CampaignContact.claim_token == contact.claim_token,
                    CampaignContact.status == "dialing",
                ).values(status="pending", claim_token=None, claimed_by=None,
                         claimed_until=None, updated_at=now))
                recovered += done.rowcount  # type: ignore[attr-defined]
            elif _conclude(session, contact, campaign, INTERRUPTED,
                           f"the process dialing it ({contact.claimed_by}) stopped", now):
                recovered += 1
        session.commit()
    return recovered


def complete_finished(engine: Engine, now: datetime) -> list[str]:
    """Running campaigns with nothing left pending or dialing become ``completed``."""
    with Session(engine) as session:
        open_contacts = exists().where(
            CampaignContact.campaign_id == Campaign.id,
            col(CampaignContact.status).in_(("pending", "dialing")))
        ids = session.exec(select(Campaign.id).where(Campaign.status == "running",
                                                     ~open_contacts)).all()
        if ids:
            session.execute(update(Campaign).where(
                col(Campaign.id).in_(ids), Campaign.status == "running", ~open_contacts,
            ).values(status="completed", updated_at=now, version=Campaign.version + 1))
        session.commit()
        return list(ids)


def _agent_busy(session: Session, agent: str) -> int:
    """Lines the agent has in use: its campaigns' claims plus its other open calls."""
    claimed = session.exec(select(func.count()).select_from(CampaignContact)
                           .join(Campaign, Campaign.id == CampaignContact.campaign_id)
                           .where(Campaign.agent == agent,
                                  CampaignContact.status == "dialing")).one()
    campaign_call = exists().where(CampaignContact.current_call_id == Call.id,
                                   CampaignContact.status == "dialing")
    others = session.exec(select(func.count()).select_from(Call).where(
        Call.agent == agent, col(Call.ended_at).is_(None), ~campaign_call)).one()
    return int(claimed) + int(others)


def claim_due(engine: Engine, campaign_id: str, now: datetime, *, owner: str,
              agent_limits: Mapping[str, int | None]) -> list[Claim]:
    """Claim the contacts ``campaign_id`` may dial now, in one transaction: as many as
    its free concurrency, the agent's free lines and the rate bucket allow, each
    inside calling hours in its own time zone (one outside gets its next opening)."""
    with Session(engine) as session:
        locked = session.execute(update(Campaign).where(
            Campaign.id == campaign_id, Campaign.status == "running",
        ).values(version=Campaign.version + 1))
        if locked.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return []
        campaign = session.get(Campaign, campaign_id, populate_existing=True)
        assert campaign is not None
        if campaign.hold_until is not None:
            if campaign.hold_until > now:
                session.commit()
                return []
            campaign.hold_until, campaign.status_detail = None, ""
        in_flight = session.exec(select(func.count()).select_from(CampaignContact).where(
            CampaignContact.campaign_id == campaign_id,
            CampaignContact.status == "dialing")).one()
        room = campaign.max_concurrent - int(in_flight)
        agent_limit = agent_limits.get(campaign.agent)
        if agent_limit:
            room = min(room, agent_limit - _agent_busy(session, campaign.agent))
        if room <= 0:
            session.commit()
            return []
        bucket = TokenBucket.for_rate(campaign.calls_per_second, campaign.bucket_tokens,
                                      campaign.bucket_filled_at, now)
        granted = bucket.take(room, now)
        claims: list[Claim] = []
        if granted:
            claims = _claim_contacts(session, campaign, granted, now, owner)
            bucket.give_back(granted - len(claims))
        campaign.bucket_tokens, campaign.bucket_filled_at = bucket.tokens, bucket.filled_at
        session.add(campaign)
        session.commit()
        return claims


def _claim_contacts(session: Session, campaign: Campaign, wanted: int, now: datetime,
                    owner: str) -> list[Claim]:
    start, end = parse_hhmm(campaign.hours_start), parse_hhmm(campaign.hours_end)
    due = session.exec(select(CampaignContact).where(
        CampaignContact.campaign_id == campaign.id, CampaignContact.status == "pending",
        CampaignContact.next_attempt_at <= now,
    ).order_by(col(CampaignContact.next_attempt_at), col(CampaignContact.id))
        .limit(SCAN_LIMIT)).all()
    claims: list[Claim] = []
    for contact in due:
        if len(claims) == wanted:
            break
        opens = next_call_time(now, contact.time_zone, start, end)
        if opens > now:  # outside the callee's hours: not looked at again till they open
            session.execute(update(CampaignContact).where(CampaignContact.id == contact.id)
                            .values(next_attempt_at=opens))
            continue
        token = uuid.uuid4().hex
        done = session.execute(update(CampaignContact).where(
            CampaignContact.id == contact.id, CampaignContact.status == "pending",
        ).values(status="dialing", claim_token=token, claimed_by=owner[:64],
                 claimed_until=now + timedelta(seconds=CLAIM_SECONDS), dial_started_at=None,
                 current_call_id=None, updated_at=now))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            assert contact.id is not None
            claims.append(Claim(contact.id, token, spacing(len(claims),
                                                           campaign.calls_per_second)))
    return claims


# ---------------------------------------------------------------- one dial


def start_dial(engine: Engine, contact_id: int, token: str, now: datetime,
               owner: str | None = None) -> DialTicket | None:
    """Mark the claimed contact as being dialed (by ``owner``, which may not be the
    process that claimed it) — only if the claim is still ours, not yet dialed, and
    the campaign still running; else ``None`` (a paused campaign's claim goes back to
    pending, not counted)."""
    with Session(engine) as session:
        running = exists().where(Campaign.id == CampaignContact.campaign_id,
                                 Campaign.status == "running")
        started = session.execute(update(CampaignContact).where(
            CampaignContact.id == contact_id, CampaignContact.claim_token == token,
            CampaignContact.status == "dialing", col(CampaignContact.dial_started_at).is_(None),
            running,
        ).values(dial_started_at=now, attempts=CampaignContact.attempts + 1,
                 claimed_until=now + timedelta(seconds=CLAIM_SECONDS), updated_at=now,
                 **({"claimed_by": owner[:64]} if owner else {})))
        if started.rowcount != 1:  # type: ignore[attr-defined]
            # Not running any more (or never ours): give an undialed claim back.
            _release(session, contact_id, token, now)
            session.commit()
            return None
        row = session.exec(select(CampaignContact, Campaign).join(
            Campaign, Campaign.id == CampaignContact.campaign_id).where(
            CampaignContact.id == contact_id)).one()
        contact, campaign = row
        ticket = DialTicket(contact_id, token, campaign.id, campaign.agent, campaign.carrier,
                            campaign.from_number, contact.number,
                            {str(k): str(v) for k, v in (contact.params or {}).items()},
                            campaign.machine_detection, campaign.voicemail_message)
        session.commit()
    return ticket


def _release(session: Session, contact_id: int, token: str, now: datetime) -> None:
    session.execute(update(CampaignContact).where(
        CampaignContact.id == contact_id, CampaignContact.claim_token == token,
        CampaignContact.status == "dialing", col(CampaignContact.dial_started_at).is_(None),
    ).values(status="pending", claim_token=None, claimed_by=None, claimed_until=None,
             updated_at=now))


def release_claim(engine: Engine, contact_id: int, token: str, now: datetime) -> None:
    """Give back a claim this process will not dial (it is shutting down): the
    contact is pending again, no attempt counted, for any process to take."""
    with Session(engine) as session:
        _release(session, contact_id, token, now)
        session.commit()


def interrupt_ringing(engine: Engine, owner: str, now: datetime) -> int:
    """This server is stopping: the calls it placed that still ring will be cancelled
    by their carrier, so their numbers are let go now as interrupted attempts (tried
    again after the back-off) rather than given the carrier's ending. Returns how many."""
    interrupted = 0
    with Session(engine) as session:
        ringing = session.exec(
            select(CampaignContact, Campaign)
            .join(Call, Call.id == CampaignContact.current_call_id)
            .join(Campaign, Campaign.id == CampaignContact.campaign_id)
            .where(CampaignContact.status == "dialing", CampaignContact.claimed_by == owner,
                   col(Call.ended_at).is_(None),
                   col(Call.status).in_(NOT_ANSWERED_STATUSES))).all()
        for contact, campaign in ringing:
            if _conclude(session, contact, campaign, INTERRUPTED,
                         "the server stopped while the call rang", now):
                interrupted += 1
        session.commit()
    return interrupted


def dial_placed(engine: Engine, contact_id: int, token: str, call_id: str,
                now: datetime) -> None:
    """The carrier has the call: its outcome will be read from this call's record."""
    with Session(engine) as session:
        contact = session.get(CampaignContact, contact_id)
        if contact is None or contact.claim_token != token:
            return
        contact.current_call_id = call_id
        contact.call_ids = [*(contact.call_ids or []), call_id]
        contact.updated_at = now
        session.add(contact)
        session.commit()


def dial_refused(engine: Engine, contact_id: int, token: str, reason: str, detail: str,
                 now: datetime) -> None:
    """The dial did not happen. A refusal by the platform (the agent's lines full,
    shutting down) is no attempt: the number waits a little and is tried again. One
    about the campaign (its agent gone, its carrier unable to dial, the budget spent)
    is no attempt either, and stops the campaign: paused, or held to the next UTC
    day. Anything else (a bad number, the carrier refusing it) is a failed attempt."""
    with Session(engine) as session:
        row = session.exec(select(CampaignContact, Campaign).join(
            Campaign, Campaign.id == CampaignContact.campaign_id).where(
            CampaignContact.id == contact_id, CampaignContact.claim_token == token,
            CampaignContact.status == "dialing")).first()
        if row is None:
            return
        contact, campaign = row
        waits = reason in PLATFORM_REFUSALS | PAUSING_REFUSALS | HOLDING_REFUSALS
        if waits:
            session.execute(update(CampaignContact).where(
                CampaignContact.id == contact_id, CampaignContact.claim_token == token,
            ).values(status="pending", attempts=CampaignContact.attempts - 1,
                     next_attempt_at=now + PLATFORM_RETRY, last_outcome=reason[:32],
                     last_detail=detail[:500], claim_token=None, claimed_by=None,
                     claimed_until=None, dial_started_at=None, updated_at=now))
        if reason in PAUSING_REFUSALS:
            session.execute(update(Campaign).where(
                Campaign.id == campaign.id, Campaign.status == "running",
            ).values(status="paused", status_detail=f"paused: {detail}"[:500],
                     updated_at=now, version=Campaign.version + 1))
        elif reason in HOLDING_REFUSALS:
            midnight = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1),
                                        time(0), UTC)
            session.execute(update(Campaign).where(Campaign.id == campaign.id).values(
                hold_until=midnight, updated_at=now, status_detail=(
                    f"held until {midnight:%Y-%m-%d %H:%M} UTC: {detail}")[:500]))
        if not waits:
            _conclude(session, contact, campaign, EndReason.FAILED.value,
                      f"{reason}: {detail}", now)
        session.commit()


__all__ = ["CLAIM_SECONDS", "STATUSES", "CampaignConflict", "CampaignSettings",
           "Claim", "DialTicket", "TickReport", "after_outcome", "campaign_detail",
           "claim_due", "complete_finished", "create_campaign", "dial_placed", "dial_refused",
           "interrupt_ringing", "list_campaigns", "new_owner", "recover", "release_claim",
           "set_status", "settle", "start_dial", "tick"]
