"""Fuzzing the SIP parser and the SDP answerer (see ``testing/sip_fuzz_datagrams.py``):
no datagram raises anything but ``MalformedSip``, what parses builds back into the
same message, valid messages parse with the values they were written with, and no
offer raises anything but a 400 or 488 ``SdpError``.

CI runs a fixed few thousand cases here; ``make fuzz`` runs 100,000 datagrams.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings

from agentplatform.carriers.sip.messages import MalformedKind
from agentplatform.testing import fuzz_carriers  # also registers the carriers-ci profile
from agentplatform.testing import sip_fuzz_datagrams as fuzz

CI = settings.get_profile("carriers-ci")
CI_WRITTEN = 800
CI_DATAGRAMS = 2000
CI_OFFERS = 1000


@settings(CI, max_examples=CI_WRITTEN)
@given(fuzz.written)
def test_valid_messages_in_any_spelling_parse_as_written_and_round_trip(case: fuzz.Written) -> None:
    fuzz.check_written(case)


@settings(CI, max_examples=CI_DATAGRAMS)
@given(fuzz.datagrams)
@example(b"")
@example(b"\r\n\r\n")
@example(b"\xff" * 70_000)
@example(fuzz.SEED[0])
@example(fuzz.SEED[1])
@example(fuzz.SEED[0].replace(b"\r\n", b"\r"))
@example(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [::1\r\n\r\n")
def test_any_datagram_parses_and_round_trips_or_is_malformed_by_kind(data: bytes) -> None:
    fuzz.check_datagram(data)


@settings(CI, max_examples=CI_OFFERS)
@given(fuzz.sdp_offers)
@example(fuzz.SDP_SEED)
@example(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4 x\r\nm=audio 1 RTP/AVP 0\r\n")
def test_any_offer_is_answered_or_refused_with_400_or_488(offer: bytes) -> None:
    fuzz.check_offer(offer)


def test_the_checks_catch_a_parser_that_raises_something_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property would be empty if ``check_datagram`` swallowed any error."""
    def broken(data: bytes) -> None:
        raise IndexError("a parser bug")
    monkeypatch.setattr(fuzz, "parse_message", broken)
    with pytest.raises(IndexError):
        fuzz.check_datagram(fuzz.SEED[0])


def test_the_seed_datagrams_are_valid_and_mutations_name_their_kind() -> None:
    assert fuzz.check_datagram(fuzz.SEED[0]) is None and fuzz.check_datagram(fuzz.SEED[1]) is None
    assert fuzz.check_datagram(fuzz.SEED[0][:-5]) is MalformedKind.BAD_CONTENT_LENGTH
    assert fuzz.check_offer(fuzz.SDP_SEED) is None


def test_the_make_fuzz_sip_run_counts_datagrams_offers_and_kinds() -> None:
    tally = fuzz_carriers.fuzz_sip(300, seed=7)
    assert (tally.datagrams, tally.offers, tally.crashes) == (300, 30, 0)
    assert sum(tally.malformed.values()) < 300 and tally.malformed
    assert set(tally.refused_offers) <= {400, 488}


def test_the_make_fuzz_sip_run_counts_a_crash_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> None:
        raise IndexError("a parser bug")
    monkeypatch.setattr(fuzz, "parse_message", broken)
    assert fuzz_carriers.fuzz_sip(5, seed=1).crashes == 5
