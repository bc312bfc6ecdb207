"""RFC 3261 §17 transactions on a fake clock: exact retransmission schedules."""

from __future__ import annotations

import heapq
import itertools

import pytest

from agentplatform.carriers.sip.messages import (
    Headers, SipRequest, build_message, parse_message, response_to,
)
from agentplatform.carriers.sip.transactions import (
    AnswerRetransmitter, InviteClientTransaction, InviteServerTransaction, NonInviteClientTransaction,
    NonInviteServerTransaction, TransactionError, TransactionTable, TxState, transaction_key,
)


class FakeTimers:
    """``call_later`` on a clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, list]] = []
        self._ids = itertools.count()

    def call_later(self, delay, callback):
        entry = [callback]
        heapq.heappush(self._queue, (self.now + delay, next(self._ids), entry))

        class _Handle:
            def cancel(self_inner) -> None:
                entry[0] = None
        return _Handle()

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            at, _, entry = heapq.heappop(self._queue)
            self.now = at
            if entry[0] is not None:
                entry[0]()
        self.now = end


class Wire:
    """Records what was sent, with the fake time it was sent at."""

    def __init__(self, clock: FakeTimers) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes]] = []

    def __call__(self, data: bytes) -> None:
        self.sent.append((self.clock.now, data))

    def statuses(self) -> list[int]:
        return [parse_message(d).status for _, d in self.sent]

    def times(self) -> list[float]:
        return [t for t, _ in self.sent]


def request(method: str = "INVITE", branch: str = "z9hG4bKabc", cseq: int = 1) -> SipRequest:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP 10.0.0.1:5060;branch={branch};rport")
    h.add("From", "<sip:+15550001@10.0.0.1>;tag=caller")
    h.add("To", "<sip:+15550002@10.0.0.2>")
    h.add("Call-ID", "call-1@10.0.0.1")
    h.add("CSeq", f"{cseq} {method}")
    h.add("Contact", "<sip:+15550001@10.0.0.1:5060>")
    return SipRequest(method, "sip:+15550002@10.0.0.2", h)


@pytest.fixture
def clock() -> FakeTimers:
    return FakeTimers()


def test_invite_server_transaction_sends_100_trying_at_once(clock):
    wire = Wire(clock)
    InviteServerTransaction(request(), wire, clock)
    assert wire.statuses() == [100] and wire.times() == [0.0]


def test_retransmitted_invite_gets_the_last_response_again(clock):
    wire = Wire(clock)
    tx = InviteServerTransaction(request(), wire, clock)
    tx.receive_request(request())
    assert wire.statuses() == [100, 100]
    tx.respond(response_to(request(), 200, to_tag="us"))
    tx.receive_request(request())
    assert wire.statuses() == [100, 100, 200, 200]
    assert wire.sent[-1][1] == wire.sent[-2][1]  # the same bytes, not a new answer


def test_invite_transaction_after_2xx_lingers_64_t1_then_ends(clock):
    ended = []
    tx = InviteServerTransaction(request(), Wire(clock), clock, on_terminated=lambda: ended.append(1))
    tx.respond(response_to(request(), 200, to_tag="us"))
    assert tx.state is TxState.ACCEPTED
    clock.advance(31.9)
    assert not ended
    clock.advance(0.2)
    assert ended and tx.state is TxState.TERMINATED


def test_final_error_is_resent_until_ack_and_ack_stops_it(clock):
    wire = Wire(clock)
    tx = InviteServerTransaction(request(), wire, clock)
    tx.respond(response_to(request(), 486, to_tag="us"))
    clock.advance(1.6)
    assert wire.times() == [0.0, 0.0, 0.5, 1.5]
    tx.receive_request(request("ACK"))
    clock.advance(10)
    assert len(wire.sent) == 4 and tx.state is TxState.TERMINATED


def test_answering_twice_is_refused(clock):
    tx = InviteServerTransaction(request(), Wire(clock), clock)
    tx.respond(response_to(request(), 404))
    with pytest.raises(TransactionError, match="already answered"):
        tx.respond(response_to(request(), 200))


def test_2xx_is_resent_at_t1_doubling_to_t2_until_ack(clock):
    wire = Wire(clock)
    timeouts = []
    AnswerRetransmitter(b"200", wire, clock, on_timeout=lambda: timeouts.append(clock.now))
    clock.advance(20)
    gaps = [round(b - a, 3) for a, b in zip([0.0, *wire.times()], wire.times())]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert not timeouts


def test_ack_stops_the_2xx_retransmissions(clock):
    wire = Wire(clock)
    timeouts = []
    retx = AnswerRetransmitter(b"200", wire, clock, on_timeout=lambda: timeouts.append(1))
    clock.advance(1.6)  # resent at 0.5 and 1.5
    retx.ack()
    clock.advance(60)
    assert wire.times() == [0.5, 1.5] and not timeouts and retx.acked


def test_no_ack_gives_up_at_32_seconds(clock):
    wire = Wire(clock)
    timeouts = []
    AnswerRetransmitter(b"200", wire, clock, on_timeout=lambda: timeouts.append(clock.now))
    clock.advance(60)
    assert timeouts == [32.0]
    assert max(wire.times()) < 32.0


def test_non_invite_server_resends_cached_final_for_32_seconds(clock):
    wire = Wire(clock)
    ended = []
    tx = NonInviteServerTransaction(request("BYE", cseq=2), wire, clock,
                                    on_terminated=lambda: ended.append(clock.now))
    tx.respond(response_to(request("BYE", cseq=2), 200))
    clock.advance(31)
    tx.receive_request(request("BYE", cseq=2))
    assert wire.statuses() == [200, 200] and wire.sent[0][1] == wire.sent[1][1]
    clock.advance(2)
    assert ended == [32.0]


def test_client_transaction_resends_on_timer_e_and_times_out_on_timer_f(clock):
    wire = Wire(clock)
    finals = []
    NonInviteClientTransaction(request("BYE"), wire, clock, on_final=finals.append)
    clock.advance(40)
    gaps = [round(b - a, 3) for a, b in zip(wire.times(), wire.times()[1:])]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert finals == [None]
    assert max(wire.times()) < 32.0


def test_client_transaction_reports_the_final_response_once(clock):
    wire = Wire(clock)
    finals = []
    tx = NonInviteClientTransaction(request("BYE"), wire, clock, on_final=finals.append)
    ok = response_to(request("BYE"), 200)
    tx.receive_response(ok)
    tx.receive_response(ok)  # a retransmitted 200
    clock.advance(40)
    assert [f.status for f in finals] == [200]
    assert len(wire.sent) == 1  # the request, never resent after the answer


def test_client_transaction_after_provisional_resends_every_t2(clock):
    wire = Wire(clock)
    tx = NonInviteClientTransaction(request("REFER"), wire, clock, on_final=lambda r: None)
    tx.receive_response(response_to(request("REFER"), 100))
    clock.advance(12.6)
    assert wire.times() == [0.0, 0.5, 4.5, 8.5, 12.5]


def test_table_matches_retransmission_ack_and_cancel_to_their_invite(clock):
    table = TransactionTable()
    invite = request()
    tx = InviteServerTransaction(invite, Wire(clock), clock)
    table.add_server(transaction_key(invite), tx)
    assert table.find_server(request()) is tx
    assert table.find_server(request("ACK")) is tx
    assert table.find_server(request(branch="z9hG4bKother")) is None
    assert table.invite_for_cancel(request("CANCEL")) is tx


def test_table_matches_responses_to_client_transactions(clock):
    table = TransactionTable()
    bye = request("BYE", branch="z9hG4bKours")
    tx = NonInviteClientTransaction(bye, Wire(clock), clock, on_final=lambda r: None)
    table.add_client(transaction_key(bye), tx)
    answer = parse_message(build_message(response_to(bye, 200)))
    assert table.find_client(answer) is tx
    assert table.find_client(response_to(request("REFER", branch="z9hG4bKours"), 202)) is None


# ------------------------------------------------------------ our INVITE (§17.1.1, RFC 6026)


class InviteOutcome:
    def __init__(self) -> None:
        self.finals: list[int] = []
        self.again: list[int] = []
        self.provisional: list[int] = []
        self.timed_out = False

    def kwargs(self) -> dict:
        return dict(on_final=lambda r: self.finals.append(r.status),
                    on_timeout=lambda: setattr(self, "timed_out", True),
                    on_provisional=lambda r: self.provisional.append(r.status),
                    on_2xx_again=lambda r: self.again.append(r.status))


def test_invite_client_resends_on_timer_a_doubling_and_gives_up_on_timer_b(clock):
    wire, outcome = Wire(clock), InviteOutcome()
    InviteClientTransaction(request(), wire, clock, **outcome.kwargs())
    clock.advance(40)
    assert wire.times() == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A doubles without a cap
    assert outcome.timed_out and outcome.finals == []


def test_a_provisional_response_stops_timer_a_and_timer_b(clock):
    wire, outcome = Wire(clock), InviteOutcome()
    tx = InviteClientTransaction(request(), wire, clock, **outcome.kwargs())
    tx.receive_response(response_to(request(), 180, to_tag="them"))
    clock.advance(120)
    assert len(wire.sent) == 1 and not outcome.timed_out and outcome.provisional == [180]


def test_an_error_final_is_acked_with_the_invite_branch_and_again_for_its_retransmission(clock):
    wire, outcome = Wire(clock), InviteOutcome()
    tx = InviteClientTransaction(request(), wire, clock, **outcome.kwargs())
    busy = response_to(request(), 486, to_tag="them")
    tx.receive_response(busy)
    tx.receive_response(busy)
    acks = [parse_message(d) for _, d in wire.sent[1:]]
    assert [a.method for a in acks] == ["ACK", "ACK"] and outcome.finals == [486]
    ack = acks[0]
    assert transaction_key(ack)[0] == "z9hG4bKabc" and ack.headers.get("CSeq") == "1 ACK"
    assert "tag=them" in ack.headers.get("To") and ack.uri == request().uri


def test_a_2xx_goes_to_the_dialog_and_its_retransmissions_too_for_64_t1(clock):
    wire, outcome = Wire(clock), InviteOutcome()
    tx = InviteClientTransaction(request(), wire, clock, **outcome.kwargs())
    ok = response_to(request(), 200, to_tag="them")
    tx.receive_response(ok)
    tx.receive_response(ok)
    assert outcome.finals == [200] and outcome.again == [200]
    assert len(wire.sent) == 1  # the ACK of a 2xx is the dialog's, not the transaction's
    clock.advance(32.1)
    assert tx.state is TxState.TERMINATED
