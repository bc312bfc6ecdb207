"""The UAS dialog (RFC 3261 §12) and session timers (RFC 4028)."""

from __future__ import annotations

import pytest

from agentplatform.carriers.sip.dialog import (
    Dialog, DialogError, DialogState, SessionWatch, mirrored_direction, negotiate_session_timer,
    we_may_send,
)
from agentplatform.carriers.sip.messages import (
    Headers, SipRequest, build_message, parse_message, parse_name_addr, response_to,
)

from .test_transactions import FakeTimers


def invite(*, record_route: list[str] | None = None, cseq: int = 10,
           extra: list[tuple[str, str]] | None = None) -> SipRequest:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")
    for rr in record_route or ():
        h.add("Record-Route", rr)
    h.add("From", '"Alice" <sip:+15550001@carrier.example>;tag=abc')
    h.add("To", "<sip:+15550002@10.0.0.2>")
    h.add("Call-ID", "c1@carrier")
    h.add("CSeq", f"{cseq} INVITE")
    h.add("Contact", "<sip:alice@10.0.0.9:5070;transport=udp>")
    for name, value in extra or ():
        h.add(name, value)
    return SipRequest("INVITE", "sip:+15550002@10.0.0.2", h)


def in_dialog(method: str, cseq: int, *, contact: str | None = None) -> SipRequest:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2")
    h.add("From", "<sip:+15550001@carrier.example>;tag=abc")
    h.add("To", "<sip:+15550002@10.0.0.2>;tag=ours")
    h.add("Call-ID", "c1@carrier")
    h.add("CSeq", f"{cseq} {method}")
    if contact:
        h.add("Contact", contact)
    return SipRequest(method, "sip:us@10.0.0.2", h)


def make(**kw) -> Dialog:
    return Dialog.from_invite(invite(**kw), local_tag="ours", local_contact="<sip:us@10.0.0.2:5080>")


def test_dialog_takes_tags_target_and_cseq_from_the_invite():
    d = make()
    assert (d.call_id, d.local_tag, d.remote_tag) == ("c1@carrier", "ours", "abc")
    assert d.remote_target.host == "10.0.0.9" and d.remote_target.port == 5070
    assert d.remote_cseq == 10 and d.state is DialogState.EARLY
    d.confirm()
    assert d.state is DialogState.CONFIRMED


def test_bye_goes_to_the_contact_with_our_tags_and_a_rising_cseq():
    d = make()
    first = d.new_request("BYE", via_host="10.0.0.2", via_port=5080)
    second = d.new_request("REFER", via_host="10.0.0.2", via_port=5080)
    parsed = parse_message(build_message(first))
    assert parsed.uri == "sip:alice@10.0.0.9:5070;transport=udp"
    assert parse_name_addr(parsed.headers.get("From")).tag == "ours"
    assert parse_name_addr(parsed.headers.get("To")).tag == "abc"
    assert parsed.headers.get("Call-ID") == "c1@carrier"
    n1 = int(first.headers.get("CSeq").split()[0])
    assert second.headers.get("CSeq") == f"{n1 + 1} REFER"
    assert d.next_hop() == ("10.0.0.9", 5070)


def test_requests_follow_the_record_route_set_in_order():
    d = make(record_route=["<sip:p1.example:5060;lr>", "<sip:p2.example;lr>"])
    bye = d.new_request("BYE", via_host="h", via_port=5080)
    assert bye.headers.get_all("Route") == ["<sip:p1.example:5060;lr>", "<sip:p2.example;lr>"]
    assert bye.uri.startswith("sip:alice@10.0.0.9")
    assert d.next_hop() == ("p1.example", 5060)


def test_strict_first_route_takes_the_request_uri():
    d = make(record_route=["<sip:strict.example>"])
    bye = d.new_request("BYE", via_host="h", via_port=5080)
    assert bye.uri == "sip:strict.example"
    assert bye.headers.get_all("Route")[-1].startswith("<sip:alice@10.0.0.9")


def test_in_dialog_request_with_old_cseq_is_refused_with_500():
    d = make()
    d.accept_remote(in_dialog("BYE", 11))
    with pytest.raises(DialogError) as err:
        d.accept_remote(in_dialog("INFO", 11))
    assert err.value.status == 500


def test_reinvite_with_contact_moves_the_remote_target():
    d = make()
    d.accept_remote(in_dialog("INVITE", 11, contact="<sip:alice@10.0.0.77:5090>"))
    assert d.next_hop() == ("10.0.0.77", 5090)


def test_matches_only_requests_with_both_tags_and_the_call_id():
    d = make()
    assert d.matches(in_dialog("BYE", 11))
    other = in_dialog("BYE", 11)
    other.headers.set("To", "<sip:+15550002@10.0.0.2>;tag=someone-else")
    assert not d.matches(other)


def test_dialog_without_contact_is_a_bad_request():
    req = invite()
    req.headers.remove("Contact")
    with pytest.raises(DialogError) as err:
        Dialog.from_invite(req, local_tag="t", local_contact="<sip:us@h>")
    assert err.value.status == 400


def test_session_expires_is_echoed_with_refresher_uac():
    offer = negotiate_session_timer(invite(extra=[("Session-Expires", "1800;refresher=uas"),
                                                  ("Supported", "timer, replaces")]))
    assert offer is not None
    assert offer.headers() == [("Session-Expires", "1800;refresher=uac"), ("Require", "timer")]


def test_no_session_expires_no_session_timer():
    assert negotiate_session_timer(invite()) is None


def test_session_interval_under_min_se_is_refused_with_422():
    with pytest.raises(DialogError) as err:
        negotiate_session_timer(invite(extra=[("Session-Expires", "60")]))
    assert err.value.status == 422


def test_missed_refresh_expires_the_session_before_the_interval_ends():
    clock = FakeTimers()
    expired = []
    watch = SessionWatch(clock, lambda: expired.append(clock.now))
    offer = negotiate_session_timer(invite(extra=[("Session-Expires", "90")]))
    watch.refreshed(offer)
    clock.advance(50)
    watch.refreshed(offer)  # the caller refreshed at 50 s
    clock.advance(59)
    assert not expired
    clock.advance(2)
    assert expired == [110.0]  # 50 + 90 − min(32, 30)


def test_hold_is_answered_with_the_mirrored_direction():
    assert mirrored_direction("sendonly") == "recvonly"
    assert mirrored_direction("inactive") == "inactive"
    assert mirrored_direction("sendrecv") == "sendrecv"
    assert not we_may_send("sendonly") and not we_may_send("inactive")
    assert we_may_send("sendrecv")


# ------------------------------------------------------------ the dialog of a call we placed


def placed_dialog() -> tuple[SipRequest, Dialog]:
    ours = invite(cseq=2)
    ours.headers.set("From", "<sip:+15550099@10.0.0.2>;tag=ours")
    ours.headers.set("To", "<sip:+15550001@trunk.example>")
    ours.headers.set("Contact", "<sip:+15550099@10.0.0.2:5080>")
    ok = response_to(ours, 200, to_tag="them")
    ok.headers.add("Record-Route", "<sip:p1.example;lr>")
    ok.headers.add("Record-Route", "<sip:p2.example;lr>")
    ok.headers.add("Contact", "<sip:callee@10.0.0.7:5062>")
    return ours, Dialog.from_2xx(ours, ok)


def test_a_placed_calls_dialog_follows_the_2xx_contact_and_its_record_route_reversed():
    _, d = placed_dialog()
    assert (d.local_tag, d.remote_tag, d.local_cseq) == ("ours", "them", 2)
    assert d.remote_target.host == "10.0.0.7"
    assert d.route_set == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert d.next_hop() == ("p2.example", 5060)


def test_the_ack_of_a_2xx_keeps_the_invite_cseq_and_the_bye_takes_the_next():
    _, d = placed_dialog()
    ack = d.new_request("ACK", via_host="10.0.0.2", via_port=5080)
    bye = d.new_request("BYE", via_host="10.0.0.2", via_port=5080)
    assert ack.headers.get("CSeq") == "2 ACK" and bye.headers.get("CSeq") == "3 BYE"
    assert "tag=ours" in bye.headers.get("From") and "tag=them" in bye.headers.get("To")
    assert bye.uri == "sip:callee@10.0.0.7:5062"


def test_a_2xx_without_contact_cannot_make_a_dialog():
    ours, _ = placed_dialog()
    with pytest.raises(DialogError):
        Dialog.from_2xx(ours, response_to(ours, 200, to_tag="them"))
