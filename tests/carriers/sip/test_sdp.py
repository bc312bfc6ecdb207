"""SDP offer/answer (RFC 3264/4566) on offers shaped like real trunks' and PBXes'."""

from __future__ import annotations

import pytest

from agentplatform.carriers.sip.sdp import (
    Codec, SdpError, answer_offer, make_offer, parse_sdp, read_answer,
)

LOCAL = {"local_address": "198.51.100.7", "local_port": 20002, "session_id": 4242, "version": 1}


def sdp(text: str) -> bytes:
    return ("\r\n".join(text.strip("\n").split("\n")) + "\r\n").encode()


ASTERISK = sdp("""\
v=0
o=- 1713790512 1713790512 IN IP4 203.0.113.10
s=Asterisk
c=IN IP4 203.0.113.10
t=0 0
m=audio 18000 RTP/AVP 0 8 3 111 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:111 G726-32/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:140
a=sendrecv
""")

# Twilio Elastic SIP Trunking: PCMU first, telephone-event at 101, media-level c=.
TWILIO = sdp("""\
v=0
o=root 1473299946 1473299946 IN IP4 54.172.60.0
s=Twilio Media Gateway
t=0 0
m=audio 13476 RTP/AVP 0 8 101
c=IN IP4 54.172.60.0
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")

# FreeSWITCH with a 30 ms ptime and telephone-event on 96 plus a wideband one on 97.
FREESWITCH = sdp("""\
v=0
o=FreeSWITCH 1713770000 1713770001 IN IP4 192.0.2.20
s=FreeSWITCH
c=IN IP4 192.0.2.20
t=0 0
m=audio 24570 RTP/AVP 9 8 97 96
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 telephone-event/16000
a=fmtp:97 0-16
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
a=ptime:30
""")

# Telnyx: PCMA only (a European number), telephone-event at 126.
TELNYX = sdp("""\
v=0
o=Telnyx 1234 5678 IN IP4 192.76.120.10
s=Telnyx
c=IN IP4 192.76.120.10
t=0 0
m=audio 30722 RTP/AVP 8 126
a=rtpmap:8 PCMA/8000
a=rtpmap:126 telephone-event/8000
a=fmtp:126 0-15
a=ptime:20
a=sendrecv
""")


def lines(answer: bytes) -> list[str]:
    return answer.decode().split("\r\n")[:-1]


def test_asterisk_offer_gets_pcmu_with_its_telephone_event() -> None:
    answer = answer_offer(ASTERISK, **LOCAL)
    assert answer.codec == Codec(0, "PCMU") and answer.dtmf_payload_type == 101
    assert answer.remote_rtp == ("203.0.113.10", 18000) and answer.direction == "sendrecv"
    assert lines(answer.sdp) == [
        "v=0", "o=- 4242 1 IN IP4 198.51.100.7", "s=-", "c=IN IP4 198.51.100.7", "t=0 0",
        "m=audio 20002 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16", "a=ptime:20", "a=sendrecv"]


def test_the_answer_is_valid_sdp_we_can_read_back() -> None:
    answer = answer_offer(TWILIO, **LOCAL)
    read = read_answer(answer.sdp)
    assert read.codec == answer.codec and read.dtmf_payload_type == 101
    assert read.remote_rtp == ("198.51.100.7", 20002)


def test_a_media_level_connection_is_used() -> None:
    assert answer_offer(TWILIO, **LOCAL).remote_rtp == ("54.172.60.0", 13476)


def test_a_media_level_connection_overrides_the_session_one() -> None:
    offer = ASTERISK.replace(b"a=ptime:20", b"c=IN IP4 203.0.113.99\r\na=ptime:20")
    assert answer_offer(offer, **LOCAL).remote_rtp == ("203.0.113.99", 18000)


def test_telephone_event_takes_the_offers_8000_hz_payload_type_never_assumed_101() -> None:
    answer = answer_offer(FREESWITCH, **LOCAL)
    assert answer.dtmf_payload_type == 96
    assert "a=rtpmap:96 telephone-event/8000" in lines(answer.sdp)
    assert "a=fmtp:96 0-16" in lines(answer.sdp)
    assert answer_offer(TELNYX, **LOCAL).dtmf_payload_type == 126


def test_pcma_is_chosen_when_pcmu_is_not_offered() -> None:
    answer = answer_offer(TELNYX, **LOCAL)
    assert answer.codec == Codec(8, "PCMA")
    assert "m=audio 20002 RTP/AVP 8 126" in lines(answer.sdp)


def test_our_preference_order_can_put_pcma_first() -> None:
    assert answer_offer(ASTERISK, **LOCAL, prefer=("PCMA", "PCMU")).codec == Codec(8, "PCMA")


def test_a_dynamic_payload_type_for_pcmu_is_kept() -> None:
    offer = sdp("""\
v=0
o=- 1 1 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 4000 RTP/AVP 98 99
a=rtpmap:98 pcmu/8000
a=rtpmap:99 telephone-event/8000
""")
    answer = answer_offer(offer, **LOCAL)
    assert answer.codec == Codec(98, "PCMU") and "a=rtpmap:98 PCMU/8000" in lines(answer.sdp)


def test_static_payload_types_are_understood_without_rtpmap() -> None:
    offer = sdp("v=0\no=- 1 1 IN IP4 192.0.2.5\ns=-\nc=IN IP4 192.0.2.5\nt=0 0\nm=audio 4000 RTP/AVP 8")
    answer = answer_offer(offer, **LOCAL)
    assert answer.codec == Codec(8, "PCMA") and answer.dtmf_payload_type is None
    assert "telephone-event" not in answer.sdp.decode()


def test_a_static_number_remapped_by_rtpmap_is_taken_by_its_name() -> None:
    offer = sdp("v=0\no=- 1 1 IN IP4 192.0.2.5\ns=-\nc=IN IP4 192.0.2.5\nt=0 0\n"
                "m=audio 4000 RTP/AVP 0\na=rtpmap:0 opus/48000/2")
    with pytest.raises(SdpError) as caught:
        answer_offer(offer, **LOCAL)
    assert caught.value.status == 488


def test_no_common_codec_is_488() -> None:
    offer = ASTERISK.replace(b"RTP/AVP 0 8 3 111 101", b"RTP/AVP 3 111 101")
    with pytest.raises(SdpError) as caught:
        answer_offer(offer, **LOCAL)
    assert caught.value.status == 488


def test_srtp_only_offers_are_488() -> None:
    with pytest.raises(SdpError) as caught:
        answer_offer(ASTERISK.replace(b"RTP/AVP", b"RTP/SAVP"), **LOCAL)
    assert caught.value.status == 488


def test_the_offers_ptime_is_reported_and_we_answer_20() -> None:
    answer = answer_offer(FREESWITCH, **LOCAL)
    assert answer.ptime_ms == 30 and "a=ptime:20" in lines(answer.sdp)
    no_ptime = answer_offer(TWILIO.replace(b"a=ptime:20\r\n", b""), **LOCAL)
    assert no_ptime.ptime_ms == 20


@pytest.mark.parametrize("offered,ours", [("sendrecv", "sendrecv"), ("sendonly", "recvonly"),
                                          ("recvonly", "sendonly"), ("inactive", "inactive")])
def test_our_direction_mirrors_the_offers(offered: str, ours: str) -> None:
    answer = answer_offer(TWILIO.replace(b"a=sendrecv", f"a={offered}".encode()), **LOCAL)
    assert answer.direction == offered and lines(answer.sdp)[-1] == f"a={ours}"


def test_a_session_level_direction_applies_when_the_media_names_none() -> None:
    offer = FREESWITCH.replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    answer = answer_offer(offer, **LOCAL)
    assert answer.direction == "sendonly" and lines(answer.sdp)[-1] == "a=recvonly"


def test_a_media_level_direction_overrides_the_session_one() -> None:
    offer = ASTERISK.replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n")
    assert answer_offer(offer, **LOCAL).direction == "sendrecv"


def test_an_old_style_hold_to_0000_is_hold_never_a_send_target_of_sendrecv() -> None:
    answer = answer_offer(ASTERISK.replace(b"c=IN IP4 203.0.113.10", b"c=IN IP4 0.0.0.0"), **LOCAL)
    assert answer.direction == "sendonly" and lines(answer.sdp)[-1] == "a=recvonly"


def test_other_m_lines_are_declined_with_port_0_in_order() -> None:
    offer = sdp("""\
v=0
o=- 1 1 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=video 5002 RTP/AVP 31 34
a=rtpmap:31 H261/90000
m=audio 0 RTP/AVP 0
m=audio 4000 RTP/AVP 8 0 101
a=rtpmap:101 telephone-event/8000
m=audio 4002 RTP/AVP 0
m=application 5004 UDP/BFCP *
""")
    answer = answer_offer(offer, **LOCAL)
    media = [line for line in lines(answer.sdp) if line.startswith("m=")]
    assert media == ["m=video 0 RTP/AVP 31 34", "m=audio 0 RTP/AVP 0", "m=audio 20002 RTP/AVP 0 101",
                     "m=audio 0 RTP/AVP 0", "m=application 0 UDP/BFCP *"]
    assert answer.remote_rtp == ("192.0.2.5", 4000)


def test_only_port_0_audio_is_488() -> None:
    with pytest.raises(SdpError) as caught:
        answer_offer(TWILIO.replace(b"m=audio 13476", b"m=audio 0"), **LOCAL)
    assert caught.value.status == 488


def test_an_ipv6_offer_and_local_address() -> None:
    offer = TWILIO.replace(b"c=IN IP4 54.172.60.0", b"c=IN IP6 2001:db8::5")
    answer = answer_offer(offer, **{**LOCAL, "local_address": "2001:db8::7"})
    assert answer.remote_rtp == ("2001:db8::5", 13476)
    assert "c=IN IP6 2001:db8::7" in lines(answer.sdp)


def test_bare_lf_and_a_decimal_ptime_are_tolerated() -> None:
    offer = TWILIO.replace(b"\r\n", b"\n").replace(b"a=ptime:20", b"a=ptime:20.0")
    assert answer_offer(offer, **LOCAL).ptime_ms == 20


@pytest.mark.parametrize("offer", [
    b"", b"hello", b"v=1\r\n", b"\xff\xfe", b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
    TWILIO.replace(b"c=IN IP4 54.172.60.0\r\n", b""),
    TWILIO.replace(b"c=IN IP4 54.172.60.0", b"c=IN IP4 not-an-address"),
    TWILIO.replace(b"m=audio 13476", b"m=audio 70000"),
    TWILIO.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 0 8 x"),
    TWILIO.replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:0 PCMU/fast"),
    TWILIO.replace(b"a=ptime:20", b"a=ptime:0"),
    TWILIO.replace(b"t=0 0", b"t 0 0"),
    TWILIO + b"x" * 20_000,
], ids=["empty", "text", "version", "not-utf8", "no-origin", "no-connection", "bad-address",
        "bad-port", "bad-format", "bad-rtpmap", "bad-ptime", "bad-line", "oversize"])
def test_malformed_offers_are_400(offer: bytes) -> None:
    with pytest.raises(SdpError) as caught:
        answer_offer(offer, **LOCAL)
    assert caught.value.status == 400


def test_make_offer_is_answerable_and_keeps_its_order() -> None:
    offer = make_offer(local_address="192.0.2.9", local_port=30000, session_id=7, version=1,
                       codecs=(Codec(8, "PCMA"), Codec(0, "PCMU")), dtmf_payload_type=100)
    parsed = parse_sdp(offer)
    assert parsed.media[0].formats == ["8", "0", "100"]
    answer = answer_offer(offer, **LOCAL, prefer=("PCMA", "PCMU"))
    assert answer.codec == Codec(8, "PCMA") and answer.dtmf_payload_type == 100
    assert answer.remote_rtp == ("192.0.2.9", 30000)


def test_make_offer_refuses_an_unknown_direction() -> None:
    with pytest.raises(ValueError):
        make_offer(local_address="192.0.2.9", local_port=30000, session_id=7, version=1, direction="hold")
