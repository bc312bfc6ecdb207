"""The campaign runner on the database queue, driven tick by tick on a test clock:
who is called, when, how often, and what happens on pause, refusal and restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from agentplatform.campaigns import store
from agentplatform.campaigns.contacts_csv import ContactRow
from agentplatform.campaigns.runner import CampaignRunner
from agentplatform.campaigns.store import CampaignSettings
from agentplatform.storage.models import CampaignContact

from .callees import Callees

T0 = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # 09:00 in Los Angeles, 12:00 in New York


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()


def _numbers(n: int, first: int = 100) -> list[str]:
    return [f"+1415555{first + i:04d}" for i in range(n)]


def _campaign(engine: Engine, numbers: list[str], clock: Clock, *, zone: str = "UTC",
              **settings: object) -> str:
    spec = CampaignSettings(**{"name": "reminders", "agent": "front-desk", "carrier": "sip",
                               "from_number": "+15555550100", "hours_start": "00:00",
                               "hours_end": "00:00", "calls_per_second": 100.0,
                               "max_concurrent": 100, **settings})  # type: ignore[arg-type]
    rows = [ContactRow(i + 2, n, {"name": f"n{i}"}, zone) for i, n in enumerate(numbers)]
    return store.create_campaign(engine, spec, rows, now=clock())


async def _round(runner: CampaignRunner) -> list[str | None]:
    """One tick and every dial it claimed (pacing delays are the queue's business)."""
    return [await runner.dial_contact(c.contact_id, c.token) for c in await runner.tick()]


def _status(engine: Engine, campaign_id: str) -> str:
    detail = store.campaign_detail(engine, campaign_id)
    assert detail is not None
    return detail["status"]


def _contacts(engine: Engine) -> dict[str, CampaignContact]:
    with Session(engine) as session:
        return {c.number: c for c in session.exec(select(CampaignContact)).all()}


async def test_every_number_is_called_once_and_the_campaign_completes(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock)
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    campaign = _campaign(sqlite_engine, _numbers(5), clock)
    await _round(runner)
    await _round(runner)  # records the outcomes, then completes
    assert sorted(callees.dialed) == _numbers(5)
    assert _status(sqlite_engine, campaign) == "completed"
    detail = store.campaign_detail(sqlite_engine, campaign)
    assert detail is not None
    assert detail["outcomes"] == {"completed": 5} and detail["progress"] == 1.0
    assert callees.tickets[0].params == {"name": "n0"}


async def test_busy_and_no_answer_are_retried_with_growing_waits_until_max_attempts(
        sqlite_engine: Engine, clock: Clock) -> None:
    busy, silent = _numbers(2)
    callees = Callees(sqlite_engine, clock=clock, script={busy: ["busy", "completed"],
                                      silent: ["no_answer", "no_answer", "no_answer"]})
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    campaign = _campaign(sqlite_engine, [busy, silent], clock, max_attempts=3,
                         retry_backoff_seconds=60)
    await _round(runner)
    await _round(runner)
    assert callees.times_dialed() == {busy: 1, silent: 1}  # both wait a minute
    clock.advance(59)
    await _round(runner)
    assert len(callees.dialed) == 2
    clock.advance(1)
    await _round(runner)  # the second attempts, ended at T0+60
    assert callees.times_dialed() == {busy: 2, silent: 2}
    clock.advance(119)
    await _round(runner)
    assert callees.times_dialed() == {busy: 2, silent: 2}  # the second wait is twice as long
    clock.advance(1)
    await _round(runner)
    await _round(runner)
    assert callees.times_dialed() == {busy: 2, silent: 3}
    contacts = _contacts(sqlite_engine)
    assert (contacts[busy].status, contacts[busy].last_outcome) == ("done", "completed")
    assert (contacts[silent].status, contacts[silent].attempts) == ("failed", 3)
    assert contacts[silent].last_outcome == "no_answer"
    assert _status(sqlite_engine, campaign) == "completed"


async def test_a_failed_dial_is_not_tried_again(sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock, script={_numbers(1)[0]: ["failed"]})
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    _campaign(sqlite_engine, _numbers(1), clock, max_attempts=5, retry_backoff_seconds=1)
    for _ in range(4):
        await _round(runner)
        clock.advance(10)
    assert len(callees.dialed) == 1
    assert _contacts(sqlite_engine)[_numbers(1)[0]].status == "failed"


async def test_no_more_calls_are_live_than_the_campaign_allows(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, hold=True, clock=clock)
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    _campaign(sqlite_engine, _numbers(7), clock, max_concurrent=3)
    await _round(runner)
    await _round(runner)
    assert len(callees.dialed) == 3
    await callees.hang_up_all()
    await _round(runner)
    assert len(callees.dialed) == 6


async def test_the_agents_concurrency_limit_counts_its_other_calls_too(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, hold=True, clock=clock)
    runner = CampaignRunner(sqlite_engine, callees, clock=clock,
                            agent_limits=lambda: {"front-desk": 4})
    _campaign(sqlite_engine, _numbers(5), clock, max_concurrent=10)
    _campaign(sqlite_engine, _numbers(5, first=200), clock, max_concurrent=10)
    await _round(runner)
    await _round(runner)
    assert len(callees.dialed) == 4  # across both of the agent's campaigns


async def test_calls_go_out_at_the_campaigns_rate(sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock)
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    _campaign(sqlite_engine, _numbers(10), clock, calls_per_second=2.0)
    placed = []
    for _ in range(4):
        placed.append(len(await _round(runner)))
        clock.advance(0.5)
    assert placed == [2, 1, 1, 1]


async def test_nobody_is_called_outside_their_own_calling_hours(
        sqlite_engine: Engine, clock: Clock) -> None:
    clock.now = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)  # 10:00 New York, 07:00 Los Angeles
    callees = Callees(sqlite_engine, clock=clock)
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    east, west = "+12125550100", "+14155550100"
    spec = CampaignSettings(name="c", agent="front-desk", carrier="sip",
                            hours_start="09:00", hours_end="20:00", calls_per_second=10,
                            max_concurrent=10)
    store.create_campaign(sqlite_engine, spec, [
        ContactRow(2, east, {}, "America/New_York"),
        ContactRow(3, west, {}, "America/Los_Angeles")], now=clock())
    await _round(runner)
    assert callees.dialed == [east]
    assert _contacts(sqlite_engine)[west].next_attempt_at == \
        datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
    clock.now = datetime(2026, 6, 1, 15, 59, tzinfo=UTC)
    await _round(runner)
    assert callees.dialed == [east]
    clock.now = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
    await _round(runner)
    assert callees.dialed == [east, west]


async def test_pausing_stops_new_dials_at_once_and_resume_continues(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock)
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    campaign = _campaign(sqlite_engine, _numbers(6), clock, calls_per_second=3.0)
    claims = await runner.tick()
    assert len(claims) == 3
    await runner.dial_contact(claims[0].contact_id, claims[0].token)
    store.set_status(sqlite_engine, campaign, "pause")
    # Claimed before the pause, not yet dialed: dropped, back to pending, not counted.
    assert [await runner.dial_contact(c.contact_id, c.token) for c in claims[1:]] == \
        [None, None]
    clock.advance(5)
    assert await runner.tick() == []
    assert len(callees.dialed) == 1
    assert _status(sqlite_engine, campaign) == "paused"
    store.set_status(sqlite_engine, campaign, "resume")
    for _ in range(4):
        await _round(runner)
        clock.advance(1)
    assert sorted(callees.dialed) == _numbers(6)
    assert sum(c.attempts for c in _contacts(sqlite_engine).values()) == 6
    assert _status(sqlite_engine, campaign) == "completed"


async def test_a_claim_is_dialed_at_most_once(sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock)
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    _campaign(sqlite_engine, _numbers(1), clock)
    [claim] = await runner.tick()
    assert await runner.dial_contact(claim.contact_id, claim.token) is not None
    assert await runner.dial_contact(claim.contact_id, claim.token) is None  # a job run twice
    assert len(callees.dialed) == 1


async def test_a_refusal_by_the_platform_is_no_attempt_and_waits(
        sqlite_engine: Engine, clock: Clock) -> None:
    number = _numbers(1)[0]
    callees = Callees(sqlite_engine, clock=clock, refuse={number: "busy"})
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    _campaign(sqlite_engine, [number], clock, max_attempts=1)
    await _round(runner)
    contact = _contacts(sqlite_engine)[number]
    assert (contact.status, contact.attempts, contact.last_outcome) == ("pending", 0, "busy")
    del callees.refuse[number]
    clock.advance(store.PLATFORM_RETRY.total_seconds())
    await _round(runner)
    assert callees.dialed == [number]


async def test_a_bad_request_refused_by_the_dialer_fails_the_contact(
        sqlite_engine: Engine, clock: Clock) -> None:
    number = _numbers(1)[0]
    callees = Callees(sqlite_engine, clock=clock, refuse={number: "invalid"})
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    campaign = _campaign(sqlite_engine, [number], clock)
    await _round(runner)
    await _round(runner)
    contact = _contacts(sqlite_engine)[number]
    assert (contact.status, contact.last_outcome) == ("failed", "failed")
    assert "invalid" in contact.last_detail
    assert _status(sqlite_engine, campaign) == "completed"


async def test_claims_left_by_a_dead_process_are_taken_back(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock)
    dead = CampaignRunner(sqlite_engine, callees, clock=clock, owner="dead-process")
    _campaign(sqlite_engine, _numbers(2), clock)
    first, second = await dead.tick()
    # It started dialing the first (and died before learning the call id); the
    # second it never reached.
    assert store.start_dial(sqlite_engine, first.contact_id, first.token, clock()) is not None
    alive = CampaignRunner(sqlite_engine, callees, clock=clock, owner="new-process")
    assert await alive.tick() == []  # the claims are still within their lease
    clock.advance(store.CLAIM_SECONDS + 1)
    claims = await alive.tick()
    contacts = {c.id: c for c in _contacts(sqlite_engine).values()}
    assert [c.contact_id for c in claims] == [second.contact_id]  # never dialed: as new
    interrupted = contacts[first.contact_id]
    assert (interrupted.status, interrupted.attempts, interrupted.last_outcome) == \
        ("pending", 1, "interrupted")  # counted, and waits its back-off


async def test_a_single_process_queue_takes_back_old_undialed_claims_at_start(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock)
    _campaign(sqlite_engine, _numbers(4), clock)
    claims = await CampaignRunner(sqlite_engine, callees, clock=clock,
                                  owner="before-restart").tick()
    # One of them was being dialed when the process stopped: perhaps it is still
    # alive and placing that call, so only its lease running out gives it back.
    mid_dial = claims[0]
    assert store.start_dial(sqlite_engine, mid_dial.contact_id, mid_dial.token, clock())
    restarted = CampaignRunner(sqlite_engine, callees, clock=clock, owner="after-restart")
    assert await restarted.recover_all_but_mine() == 3
    await _round(restarted)
    assert sorted(callees.dialed) == _numbers(4)[1:]
    clock.advance(store.CLAIM_SECONDS + 1)
    await _round(restarted)  # the lease ran out: an interrupted attempt, waiting
    contact = next(c for c in _contacts(sqlite_engine).values() if c.id == mid_dial.contact_id)
    assert (contact.status, contact.attempts, contact.last_outcome) == \
        ("pending", 1, "interrupted")


async def test_a_call_still_ringing_at_restart_is_settled_from_its_record(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock, script={_numbers(1)[0]: ["voicemail_left"]},
                      hold=True)
    campaign = _campaign(sqlite_engine, _numbers(1), clock)
    await _round(CampaignRunner(sqlite_engine, callees, clock=clock, owner="before"))
    restarted = CampaignRunner(sqlite_engine, callees, clock=clock, owner="after")
    assert await restarted.recover_all_but_mine() == 0  # it has a call: the record decides
    await callees.hang_up_all()
    await _round(restarted)
    await _round(restarted)
    assert callees.dialed == _numbers(1)
    detail = store.campaign_detail(sqlite_engine, campaign)
    assert detail is not None and detail["outcomes"] == {"voicemail_left": 1}
    assert detail["status"] == "completed"


def test_status_changes_follow_the_campaigns_life(sqlite_engine: Engine) -> None:
    clock = Clock()
    campaign = _campaign(sqlite_engine, _numbers(1), clock, start=False)
    assert _status(sqlite_engine, campaign) == "draft"
    with pytest.raises(store.CampaignConflict, match="cannot pause a campaign that is draft"):
        store.set_status(sqlite_engine, campaign, "pause")
    assert store.set_status(sqlite_engine, campaign, "resume") == "running"
    assert store.set_status(sqlite_engine, campaign, "cancel") == "cancelled"
    with pytest.raises(store.CampaignConflict):
        store.set_status(sqlite_engine, campaign, "resume")
    with pytest.raises(KeyError):
        store.set_status(sqlite_engine, "nope", "pause")


async def test_processes_claiming_one_campaign_at_once_never_claim_a_contact_twice(
        postgres_engine: Engine) -> None:
    import asyncio
    clock = Clock()
    campaign = _campaign(postgres_engine, _numbers(40), clock, calls_per_second=50,
                         max_concurrent=25)

    def claim(owner: str) -> list[int]:
        return [c.contact_id for c in store.claim_due(postgres_engine, campaign, clock(),
                                                      owner=owner, agent_limits={})]

    claimed = await asyncio.gather(*(asyncio.to_thread(claim, f"process-{i}")
                                     for i in range(6)))
    every = [contact for batch in claimed for contact in batch]
    assert len(every) == len(set(every)) == 25  # the campaign's concurrency, once each
    with Session(postgres_engine) as session:
        owners = {c.id: c.claimed_by for c in session.exec(select(CampaignContact)).all()
                  if c.status == "dialing"}
    assert sorted(owners) == sorted(every)


async def test_a_draining_process_dials_nothing_more_and_gives_its_claims_back(
        sqlite_engine: Engine, clock: Clock) -> None:
    callees = Callees(sqlite_engine, clock=clock)
    draining = False
    runner = CampaignRunner(sqlite_engine, callees, clock=clock, accepting=lambda: not draining)
    _campaign(sqlite_engine, _numbers(4), clock, calls_per_second=2.0)
    claims = await runner.tick()
    draining = True
    assert [await runner.dial_contact(c.contact_id, c.token) for c in claims] == [None, None]
    clock.advance(5)
    assert await runner.tick() == []
    assert callees.dialed == []
    contacts = _contacts(sqlite_engine).values()
    assert {(c.status, c.attempts) for c in contacts} == {("pending", 0)}
    other = CampaignRunner(sqlite_engine, callees, clock=clock, owner="another-process")
    await _round(other)
    assert len(callees.dialed) == 2  # what it gave back, another process dials


async def test_a_stopping_queue_leaves_no_claim_behind(sqlite_engine: Engine) -> None:
    import asyncio

    from agentplatform.campaigns.local_queue import LocalQueue

    callees = Callees(sqlite_engine, hold=True)
    clock = Clock()
    clock.now = datetime.now(UTC)
    _campaign(sqlite_engine, _numbers(6), clock, calls_per_second=3.0)
    queue = LocalQueue(CampaignRunner(sqlite_engine, callees))
    await queue.start()
    async with asyncio.timeout(10):
        while not callees.dialed:
            await asyncio.sleep(0.01)
    await queue.stop()
    contacts = _contacts(sqlite_engine)
    # The calls placed still ring: tried again later, as interrupted attempts; the
    # claims waiting for their slot are pending again, not counted.
    assert {(c.status, c.attempts, c.last_outcome, c.claim_token) for n, c in contacts.items()
            if n in callees.dialed} == {("pending", 1, "interrupted", None)}
    assert {(c.status, c.attempts, c.claim_token) for n, c in contacts.items()
            if n not in callees.dialed} == {("pending", 0, None)}


async def test_a_refusal_about_the_campaign_pauses_it_and_costs_no_attempt(
        sqlite_engine: Engine, clock: Clock) -> None:
    numbers = _numbers(3)
    callees = Callees(sqlite_engine, clock=clock,
                      refuse=dict.fromkeys(numbers, "unknown_agent"))
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    campaign = _campaign(sqlite_engine, numbers, clock, calls_per_second=1.0)
    await _round(runner)
    detail = store.campaign_detail(sqlite_engine, campaign)
    assert detail is not None and detail["status"] == "paused"
    assert detail["status_detail"] == "paused: refused by the simulated platform"
    assert {(c.status, c.attempts) for c in _contacts(sqlite_engine).values()} == \
        {("pending", 0)}
    callees.refuse.clear()
    store.set_status(sqlite_engine, campaign, "resume", now=clock())
    for _ in range(5):
        clock.advance(10)
        await _round(runner)
    assert sorted(callees.dialed) == numbers
    assert store.campaign_detail(sqlite_engine, campaign)["status_detail"] == ""  # type: ignore[index]


async def test_a_spent_budget_holds_the_campaign_until_the_next_utc_day(
        sqlite_engine: Engine, clock: Clock) -> None:
    numbers = _numbers(2)
    callees = Callees(sqlite_engine, clock=clock, refuse=dict.fromkeys(numbers, "over_budget"))
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    campaign = _campaign(sqlite_engine, numbers, clock, calls_per_second=1.0)
    await _round(runner)
    callees.refuse.clear()
    clock.advance(3600)
    await _round(runner)
    assert callees.dialed == []
    detail = store.campaign_detail(sqlite_engine, campaign)
    assert detail is not None and detail["status"] == "running"
    assert detail["status_detail"].startswith("held until 2026-06-02 00:00 UTC")
    clock.now = datetime(2026, 6, 2, 0, 0, tzinfo=UTC)
    await _round(runner)
    clock.advance(1)
    await _round(runner)
    assert sorted(callees.dialed) == numbers


async def test_numbers_still_ringing_when_the_server_stops_are_tried_again(
        sqlite_engine: Engine, clock: Clock) -> None:
    ringing, talking = _numbers(2)
    callees = Callees(sqlite_engine, hold=True, clock=clock,
                      script={ringing: ["failed"], talking: ["server_shutdown"]})
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    _campaign(sqlite_engine, [talking], clock, retry_backoff_seconds=60)
    await _round(runner)
    await callees.answer_all()  # this one is a conversation by now
    _campaign(sqlite_engine, [ringing], clock, retry_backoff_seconds=60)
    await _round(runner)
    await runner.let_ringing_go()
    # The carrier then cancels the ringing call (recorded failed) and the server
    # ends the conversation (server_shutdown).
    await callees.hang_up_all()
    restarted = CampaignRunner(sqlite_engine, callees, clock=clock)
    await _round(restarted)
    contacts = _contacts(sqlite_engine)
    assert (contacts[ringing].status, contacts[ringing].attempts,
            contacts[ringing].last_outcome) == ("pending", 1, "interrupted")
    assert (contacts[talking].status, contacts[talking].last_outcome) == \
        ("done", "server_shutdown")  # reached: never called again
    clock.advance(60)
    await _round(restarted)
    assert callees.times_dialed() == {ringing: 2, talking: 1}


async def test_a_call_lost_with_its_server_before_anyone_answered_is_tried_again(
        sqlite_engine: Engine, clock: Clock) -> None:
    number = _numbers(1)[0]
    callees = Callees(sqlite_engine, clock=clock, script={number: ["server_lost"]})
    runner = CampaignRunner(sqlite_engine, callees, clock=clock)
    _campaign(sqlite_engine, [number], clock, retry_backoff_seconds=60)
    await _round(runner)
    await _round(runner)
    contact = _contacts(sqlite_engine)[number]
    assert (contact.status, contact.last_outcome) == ("pending", "interrupted")
