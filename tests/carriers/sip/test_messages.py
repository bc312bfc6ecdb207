"""SIP message parsing and building (RFC 3261), on messages shaped like the ones
real trunks and PBXes send."""

from __future__ import annotations

import pytest

from agentplatform.carriers.sip.messages import (
    BRANCH_MAGIC, Headers, MalformedKind, MalformedSip, NameAddr, SipRequest, SipResponse, SipUri,
    Via, build_message, cseq, format_name_addr, format_uri, format_via, is_keepalive, new_branch,
    new_call_id, new_tag, parse_message, parse_name_addr, parse_uri, parse_via, response_address,
    response_to, stamp_via, top_via,
)

SDP = (b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n"
       b"m=audio 18000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")


def datagram(head: str, body: bytes = b"", *, eol: str = "\r\n") -> bytes:
    lines = head.strip("\n").split("\n")
    return (eol.join(lines) + eol + eol).encode() + body


ASTERISK_INVITE = datagram(f"""\
INVITE sip:+15550001111@198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP 203.0.113.10:5060;rport;branch=z9hG4bKPj5c1ae6d1-8d2b-4a4e-9a4e-1e0c5a3b9f00
From: "Front Desk" <sip:2001@203.0.113.10>;tag=6f1ad7b3-2f5c-4b0e-8f0e-6c4a1f0b3d21
To: <sip:+15550001111@198.51.100.7>
Contact: <sip:asterisk@203.0.113.10:5060>
Call-ID: 0f2a6e34-9c3b-4a0d-b6c1-5f8e7d2a1b90
CSeq: 20861 INVITE
Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, MESSAGE, REFER
Supported: 100rel, timer, replaces, norefersub
Session-Expires: 1800
Min-SE: 90
Max-Forwards: 70
User-Agent: Asterisk PBX 20.5.0
Content-Type: application/sdp
Content-Length: {len(SDP)}
""", SDP)

# FreeSWITCH: Record-Route-free, P-Asserted-Identity with a display name holding a comma.
FREESWITCH_INVITE = datagram(f"""\
INVITE sip:15550001111@198.51.100.7 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20;rport;branch=z9hG4bKQ7vS2ey0Bm6pQ
Max-Forwards: 69
From: "Smith, John" <sip:+15557654321@192.0.2.20>;tag=4F8e5v9Npp7Sj
To: <sip:15550001111@198.51.100.7>
Call-ID: 5d0a3cb0-7f43-123d-a1c3-0242ac120002
CSeq: 128735 INVITE
Contact: <sip:mod_sofia@192.0.2.20:5080>
User-Agent: FreeSWITCH-mod_sofia/1.10.11-release~64bit
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY
Supported: timer, path, replaces
Allow-Events: talk, hold, conference, refer
Content-Type: application/sdp
Content-Disposition: session
Content-Length: {len(SDP)}
X-FS-Support: update_display,send_info
Remote-Party-ID: "Smith, John" <sip:+15557654321@192.0.2.20>;party=calling;screen=yes;privacy=off
""", SDP)

# Twilio Elastic SIP Trunking: two Record-Routes, E.164 user, Twilio's X- headers.
TWILIO_INVITE = datagram(f"""\
INVITE sip:+15550001111@trunk.example.com:5060;transport=udp SIP/2.0
Record-Route: <sip:54.172.60.0:5060;lr;ftag=89a4c5e1d2>,<sip:54.172.60.1:5060;lr;r2=on>
Via: SIP/2.0/UDP 54.172.60.0:5060;branch=z9hG4bK1c3e.8b3b1a4e1c7f2d9e5a4b3c2d1e0f9a8b.0
Via: SIP/2.0/UDP 172.18.10.5:5060;rport=5060;branch=z9hG4bKa1b2c3d4e5
From: <sip:+15557654321@twilio.com>;tag=89a4c5e1d2
To: <sip:+15550001111@trunk.example.com>
Call-ID: 3c2d1f0e9b8a7c6d5e4f3a2b1c0d9e8f@0.0.0.0
CSeq: 1 INVITE
Max-Forwards: 68
Contact: <sip:+15557654321@172.18.10.5:5060;transport=udp>
Content-Type: application/sdp
X-Twilio-AccountSid: AC00000000000000000000000000000000
X-Twilio-CallSid: CA11111111111111111111111111111111
Content-Length: {len(SDP)}
""", SDP)

# Telnyx: compact-free, but with Diversion and P-Asserted-Identity lists.
TELNYX_INVITE = datagram(f"""\
INVITE sip:+15550001111@198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP 192.76.120.10:5060;branch=z9hG4bK-524287-1---6a4b3e2f1d0c9b8a
Max-Forwards: 70
Contact: <sip:+15557654321@192.76.120.10:5060;transport=udp>
To: <sip:+15550001111@198.51.100.7:5060>
From: <sip:+15557654321@sip.telnyx.com:5060>;tag=ZQ2tH9vX5p
Call-ID: 8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5968
CSeq: 1 INVITE
P-Asserted-Identity: <sip:+15557654321@sip.telnyx.com>, <tel:+15557654321>
Diversion: <sip:+15550002222@sip.telnyx.com>;reason=unconditional
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, UPDATE
Supported: timer
Session-Expires: 1800;refresher=uac
Content-Type: application/sdp
Content-Length: {len(SDP)}
""", SDP)

# A minimal phone using every compact form, bare LF, and a folded header.
COMPACT_INVITE = datagram(f"""\
INVITE sip:bot@198.51.100.7 SIP/2.0
v: SIP/2.0/UDP 192.0.2.30:5062;branch=z9hG4bKcompact1
f: Bob <sip:bob@192.0.2.30>;tag=a1
t: sip:bot@198.51.100.7
i: compact-1@192.0.2.30
CSeq: 7 INVITE
m: <sip:bob@192.0.2.30:5062>
k: timer,
 replaces
c: application/sdp
l: {len(SDP)}
""", SDP, eol="\n")


@pytest.mark.parametrize("raw", [ASTERISK_INVITE, FREESWITCH_INVITE, TWILIO_INVITE, TELNYX_INVITE,
                                 COMPACT_INVITE], ids=["asterisk", "freeswitch", "twilio", "telnyx",
                                                       "compact"])
def test_real_trunk_invites_parse_and_round_trip(raw: bytes) -> None:
    message = parse_message(raw)
    assert isinstance(message, SipRequest) and message.method == "INVITE"
    assert message.body == SDP
    assert cseq(message.headers)[1] == "INVITE"
    assert parse_message(build_message(message)) == message


def test_compact_names_are_read_as_full_names() -> None:
    message = parse_message(COMPACT_INVITE)
    names = [name for name, _ in message.headers.items()]
    assert names[:6] == ["Via", "From", "To", "Call-ID", "CSeq", "Contact"]
    assert message.headers.get("call-id") == "compact-1@192.0.2.30"
    assert message.headers.get("i") == "compact-1@192.0.2.30"
    assert message.headers.get("Content-Type") == "application/sdp"


def test_a_folded_header_is_one_value() -> None:
    message = parse_message(COMPACT_INVITE)
    assert message.headers.get_all("Supported") == ["timer", "replaces"]


def test_bare_lf_line_ends_are_tolerated_and_built_with_crlf() -> None:
    built = build_message(parse_message(COMPACT_INVITE))
    head = built[:built.index(b"\r\n\r\n")]
    assert b"\n" not in head.replace(b"\r\n", b"")


def test_list_headers_split_on_commas_outside_quotes_and_angle_brackets() -> None:
    twilio = parse_message(TWILIO_INVITE)
    assert twilio.headers.get_all("Record-Route") == [
        "<sip:54.172.60.0:5060;lr;ftag=89a4c5e1d2>", "<sip:54.172.60.1:5060;lr;r2=on>"]
    assert len(twilio.headers.get_all("Via")) == 2
    telnyx = parse_message(TELNYX_INVITE)
    assert telnyx.headers.get_all("P-Asserted-Identity") == [
        "<sip:+15557654321@sip.telnyx.com>", "<tel:+15557654321>"]
    contacts = Headers([("Contact", '"Smith, John" <sip:a@b;x=1,2>, <sip:c@d>')])
    assert contacts.get_all("Contact") == ['"Smith, John" <sip:a@b;x=1,2>', "<sip:c@d>"]


def test_headers_that_are_not_lists_keep_their_commas() -> None:
    message = parse_message(FREESWITCH_INVITE)
    assert message.headers.get("From") == '"Smith, John" <sip:+15557654321@192.0.2.20>;tag=4F8e5v9Npp7Sj'
    assert parse_name_addr(message.headers.get("From") or "").display == "Smith, John"


def test_via_values_joined_by_comma_are_each_a_via() -> None:
    raw = TWILIO_INVITE.replace(
        b"Via: SIP/2.0/UDP 54.172.60.0:5060;branch=z9hG4bK1c3e.8b3b1a4e1c7f2d9e5a4b3c2d1e0f9a8b.0\r\n"
        b"Via: SIP/2.0/UDP 172.18.10.5:5060;rport=5060;branch=z9hG4bKa1b2c3d4e5\r\n",
        b"Via: SIP/2.0/UDP 54.172.60.0:5060;branch=z9hG4bK1, SIP/2.0/UDP 172.18.10.5;branch=z9hG4bK2\r\n")
    message = parse_message(raw)
    assert [parse_via(v).host for v in message.headers.get_all("Via")] == ["54.172.60.0", "172.18.10.5"]
    assert top_via(message).branch == "z9hG4bK1"
    assert message.headers.get("Via") == "SIP/2.0/UDP 54.172.60.0:5060;branch=z9hG4bK1"


def test_a_response_parses() -> None:
    raw = datagram("""\
SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKout1;received=198.51.100.7
From: <sip:bot@198.51.100.7>;tag=ours
To: <sip:+15557654321@sip.telnyx.com>;tag=theirs
Call-ID: out-1@198.51.100.7
CSeq: 2 BYE
Content-Length: 0
""")
    message = parse_message(raw)
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason) == (180, "Ringing")


def test_leading_crlf_before_the_start_line_is_ignored() -> None:
    assert parse_message(b"\r\n\r\n" + ASTERISK_INVITE).method == "INVITE"  # type: ignore[union-attr]


def test_a_keepalive_is_recognised_and_not_parsed() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"")
    assert not is_keepalive(ASTERISK_INVITE)
    with pytest.raises(MalformedSip) as caught:
        parse_message(b"\r\n\r\n")
    assert caught.value.kind is MalformedKind.EMPTY


# ------------------------------------------------------------------ bad datagrams


def kind_of(raw: bytes) -> MalformedKind:
    with pytest.raises(MalformedSip) as caught:
        parse_message(raw)
    return caught.value.kind


def test_a_body_shorter_than_content_length_is_malformed() -> None:
    assert kind_of(ASTERISK_INVITE[:-10]) is MalformedKind.BAD_CONTENT_LENGTH


def test_bytes_past_content_length_are_dropped() -> None:
    assert parse_message(ASTERISK_INVITE + b"garbage").body == SDP


def test_without_content_length_the_body_is_the_rest_of_the_datagram() -> None:
    raw = TELNYX_INVITE.replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_message(raw).body == SDP


def test_a_content_length_that_is_no_number_is_malformed() -> None:
    raw = TELNYX_INVITE.replace(f"Content-Length: {len(SDP)}".encode(), b"Content-Length: -1")
    assert kind_of(raw) is MalformedKind.BAD_CONTENT_LENGTH


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_each_mandatory_header_is_required(header: str) -> None:
    lines = [line for line in ASTERISK_INVITE.split(b"\r\n")
             if not line.lower().startswith(header.lower().encode() + b":")]
    assert kind_of(b"\r\n".join(lines)) is MalformedKind.MISSING_HEADER


def test_a_missing_max_forwards_is_tolerated() -> None:
    raw = ASTERISK_INVITE.replace(b"Max-Forwards: 70\r\n", b"")
    assert parse_message(raw).headers.get("Max-Forwards") is None


@pytest.mark.parametrize("value", [b"-1", b"256", b"seventy", b""])
def test_a_bad_max_forwards_is_malformed(value: bytes) -> None:
    raw = ASTERISK_INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: " + value)
    assert kind_of(raw) is MalformedKind.BAD_MAX_FORWARDS


def test_the_cseq_method_must_be_the_request_method() -> None:
    assert kind_of(ASTERISK_INVITE.replace(b"CSeq: 20861 INVITE", b"CSeq: 20861 BYE")) is MalformedKind.BAD_CSEQ


@pytest.mark.parametrize("value", [b"INVITE", b"x INVITE", b"2147483648 INVITE", b"1"])
def test_a_cseq_that_is_not_number_and_method_is_malformed(value: bytes) -> None:
    assert kind_of(ASTERISK_INVITE.replace(b"CSeq: 20861 INVITE", b"CSeq: " + value)) is MalformedKind.BAD_CSEQ


def test_a_single_header_sent_twice_is_malformed() -> None:
    raw = ASTERISK_INVITE.replace(b"CSeq: 20861 INVITE\r\n", b"CSeq: 20861 INVITE\r\nCSeq: 20862 INVITE\r\n")
    assert kind_of(raw) is MalformedKind.BAD_HEADER


@pytest.mark.parametrize("line", [b"INVITE sip:a@b", b"INVITE sip:a@b SIP/3.0", b"SIP/2.0 99 Low",
                                  b"SIP/2.0 2000 OK", b"HELLO", b"INVITE  sip:a@b SIP/2.0"])
def test_a_bad_start_line_is_malformed(line: bytes) -> None:
    raw = line + ASTERISK_INVITE[ASTERISK_INVITE.index(b"\r\n"):]
    assert kind_of(raw) is MalformedKind.BAD_START_LINE


def test_a_bad_request_uri_is_malformed() -> None:
    raw = ASTERISK_INVITE.replace(b"INVITE sip:+15550001111@198.51.100.7:5060", b"INVITE sip:+1555@host:99999", 1)
    assert kind_of(raw) is MalformedKind.BAD_URI


def test_a_line_that_is_no_header_is_malformed() -> None:
    assert kind_of(ASTERISK_INVITE.replace(b"Min-SE: 90", b"Min-SE 90")) is MalformedKind.BAD_HEADER


def test_a_continuation_line_first_is_malformed() -> None:
    raw = ASTERISK_INVITE.replace(b"\r\nVia:", b"\r\n folded\r\nVia:", 1)
    assert kind_of(raw) is MalformedKind.BAD_HEADER


def test_a_head_that_is_not_utf8_is_malformed() -> None:
    assert kind_of(ASTERISK_INVITE.replace(b"Front Desk", b"Front \xff Desk")) is MalformedKind.BAD_ENCODING


def test_control_characters_in_the_head_are_malformed() -> None:
    assert kind_of(ASTERISK_INVITE.replace(b"Front Desk", b"Front\x00Desk")) is MalformedKind.BAD_ENCODING
    assert kind_of(ASTERISK_INVITE.replace(b"Front Desk", b"Front\rDesk")) is MalformedKind.BAD_ENCODING


def test_a_non_utf8_body_is_kept_as_bytes() -> None:
    raw = TELNYX_INVITE.replace(f"Content-Length: {len(SDP)}".encode(), b"Content-Length: 3")[:-len(SDP)]
    assert parse_message(raw + b"\xff\xfe\x00").body == b"\xff\xfe\x00"


def test_a_datagram_over_64_kb_is_oversize() -> None:
    assert kind_of(ASTERISK_INVITE + b"x" * 65_536) is MalformedKind.OVERSIZE


def test_a_bad_via_is_malformed() -> None:
    raw = ASTERISK_INVITE.replace(b"Via: SIP/2.0/UDP 203.0.113.10:5060", b"Via: SIP/2.0 203.0.113.10:5060")
    assert kind_of(raw) is MalformedKind.BAD_VIA


@pytest.mark.parametrize("old,new", [(b"To: <sip:+15550001111@198.51.100.7>", b"To: <sip:+15550001111@>"),
                                     (b'From: "Front Desk" <sip', b'From: "Front Desk <sip'),
                                     (b"Contact: <sip:asterisk@203.0.113.10:5060>", b"Contact: <http://x>")])
def test_a_bad_from_to_or_contact_is_malformed(old: bytes, new: bytes) -> None:
    assert kind_of(ASTERISK_INVITE.replace(old, new)) is MalformedKind.BAD_ADDRESS


# ------------------------------------------------------------------ building and answering


def test_build_sets_a_true_content_length_and_crlf() -> None:
    request = SipRequest("OPTIONS", "sip:bot@198.51.100.7", Headers([("Content-Length", "999")]), b"abc")
    built = build_message(request)
    assert built.startswith(b"OPTIONS sip:bot@198.51.100.7 SIP/2.0\r\n")
    assert b"Content-Length: 3\r\n\r\nabc" in built
    assert built.count(b"Content-Length") == 1


def test_build_refuses_a_header_value_with_a_line_end() -> None:
    with pytest.raises(ValueError):
        build_message(SipResponse(200, "OK", Headers([("Subject", "hi\r\nVia: forged")])))


def test_response_to_copies_what_rfc3261_says() -> None:
    request = parse_message(TWILIO_INVITE)
    assert isinstance(request, SipRequest)
    response = response_to(request, 200, to_tag="ourtag", body=b"v=0\r\n", content_type="application/sdp")
    again = parse_message(build_message(response))
    assert isinstance(again, SipResponse) and (again.status, again.reason) == (200, "OK")
    assert again.headers.get_all("Via") == request.headers.get_all("Via")
    assert again.headers.get("From") == request.headers.get("From")
    assert again.headers.get("To") == "<sip:+15550001111@trunk.example.com>;tag=ourtag"
    assert again.headers.get("Call-ID") == request.headers.get("Call-ID")
    assert again.headers.get("CSeq") == "1 INVITE"
    assert again.headers.get_all("Record-Route") == request.headers.get_all("Record-Route")
    assert again.headers.get("Content-Type") == "application/sdp" and again.body == b"v=0\r\n"


def test_response_to_keeps_an_existing_to_tag() -> None:
    request = parse_message(ASTERISK_INVITE.replace(b"To: <sip:+15550001111@198.51.100.7>",
                                                    b"To: <sip:+15550001111@198.51.100.7>;tag=first"))
    assert isinstance(request, SipRequest)
    assert response_to(request, 200, to_tag="second").headers.get("To") == "<sip:+15550001111@198.51.100.7>;tag=first"


def test_a_100_trying_has_no_record_route_and_echoes_timestamp() -> None:
    request = parse_message(TWILIO_INVITE.replace(b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\r\nTimestamp: 54\r\n"))
    assert isinstance(request, SipRequest)
    trying = response_to(request, 100)
    assert trying.reason == "Trying" and trying.headers.get("Record-Route") is None
    assert trying.headers.get("Timestamp") == "54"
    assert response_to(request, 487).headers.get("Record-Route") is None


# ------------------------------------------------------------------ URIs, addresses, Via


def test_uris_parse_with_user_password_port_params_and_headers() -> None:
    uri = parse_uri("sip:+15550001111;npdi@trunk.example.com:5080;transport=UDP;lr?Subject=hi")
    assert uri == SipUri("sip", "+15550001111;npdi", "trunk.example.com", 5080,
                         {"transport": "UDP", "lr": None}, "", "Subject=hi")
    assert parse_uri(format_uri(uri)) == uri
    assert parse_uri("sips:alice:secret@[2001:db8::1]:5061").host == "[2001:db8::1]"
    assert parse_uri("tel:+15557654321;phone-context=example.com").user == "+15557654321"


@pytest.mark.parametrize("text", ["http://example.com", "sip:", "sip:a@", "sip:a@b:x", "sip:a@b:70000",
                                  "sip:a b@c", "sip:a@[::1", "sip:a@b;;x"])
def test_bad_uris_are_refused(text: str) -> None:
    with pytest.raises(MalformedSip):
        parse_uri(text)


def test_name_addr_forms() -> None:
    quoted = parse_name_addr('"Smith, \\"JJ\\"" <sip:jj@example.com;transport=udp>;tag=9;expires=60')
    assert quoted.display == 'Smith, "JJ"' and quoted.tag == "9"
    assert quoted.uri.params == {"transport": "udp"} and quoted.params == {"tag": "9", "expires": "60"}
    assert parse_name_addr(format_name_addr(quoted)) == quoted
    bare = parse_name_addr("sip:bot@198.51.100.7;tag=x")  # params of a bare URI are the header's
    assert bare == NameAddr("", parse_uri("sip:bot@198.51.100.7"), {"tag": "x"})
    assert parse_name_addr("Bob <sip:bob@example.com>").display == "Bob"


def test_via_parses_with_spaces_ipv6_and_params() -> None:
    via = parse_via("SIP / 2.0 / udp [2001:db8::9]:5062;branch=z9hG4bKx;rport;received=192.0.2.1")
    assert via == Via("UDP", "[2001:db8::9]", 5062, {"branch": "z9hG4bKx", "rport": None, "received": "192.0.2.1"})
    assert parse_via(format_via(via)) == via


def test_responses_go_to_the_source_port_when_rport_is_asked() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKa")
    assert response_address(via, ("203.0.113.9", 40123)) == ("203.0.113.9", 40123)


def test_responses_go_to_the_sent_by_port_of_the_source_host_without_rport() -> None:
    assert response_address(parse_via("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKa"),
                            ("203.0.113.9", 40123)) == ("203.0.113.9", 5070)
    assert response_address(parse_via("SIP/2.0/UDP pbx.example.com;branch=z9hG4bKa"),
                            ("203.0.113.9", 40123)) == ("203.0.113.9", 5060)


def test_a_received_or_maddr_the_sender_wrote_cannot_redirect_responses() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;received=192.0.2.66;maddr=192.0.2.67")
    assert response_address(via, ("203.0.113.9", 5060)) == ("203.0.113.9", 5060)


def test_stamp_via_records_received_and_fills_rport() -> None:
    stamped = stamp_via(parse_via("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKa"), ("203.0.113.9", 40123))
    assert stamped.params == {"rport": "40123", "branch": "z9hG4bKa", "received": "203.0.113.9"}
    plain = stamp_via(parse_via("SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa"), ("203.0.113.9", 40123))
    assert "rport" not in plain.params


def test_identifiers_are_fresh_and_branches_carry_the_magic_cookie() -> None:
    assert new_branch().startswith(BRANCH_MAGIC) and new_branch() != new_branch()
    assert new_tag() != new_tag()
    assert new_call_id("198.51.100.7").endswith("@198.51.100.7")
