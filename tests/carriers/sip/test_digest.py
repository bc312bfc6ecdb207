"""Digest authentication against the worked examples of RFC 2617 §3.5 and RFC 7616 §3.9.1."""

from __future__ import annotations

import pytest

from agentplatform.carriers.sip.digest import (
    Challenge, DigestError, authorization, choose_challenge, digest_response, parse_challenge,
)

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def rfc7616_challenge(algorithm: str) -> str:
    return (f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
            f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"')


def test_rfc2617_example_response_with_qop_auth():
    challenge = parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                                'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    response = digest_response(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                               password="Circle Of Life", cnonce="0a4f113b", nc=1)
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_example_responses_for_md5_and_sha256(algorithm, expected):
    challenge = parse_challenge(rfc7616_challenge(algorithm))
    response = digest_response(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                               password="Circle of Life", cnonce=RFC7616_CNONCE, nc=1)
    assert response == expected


def test_authorization_header_carries_every_field_the_server_checks():
    challenge = parse_challenge(rfc7616_challenge("SHA-256"))
    value = authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                          password="Circle of Life", cnonce=RFC7616_CNONCE, nc=1)
    assert value.startswith("Digest ")
    for part in ('username="Mufasa"', 'realm="http-auth@example.org"', f'nonce="{RFC7616_NONCE}"',
                 'uri="/dir/index.html"', "algorithm=SHA-256", f'cnonce="{RFC7616_CNONCE}"',
                 f'opaque="{RFC7616_OPAQUE}"', "qop=auth", "nc=00000001",
                 'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"'):
        assert part in value


def test_challenge_without_qop_is_answered_in_the_rfc2069_form():
    challenge = Challenge(realm="trunk", nonce="abc")
    value = authorization(challenge, method="INVITE", uri="sip:1@trunk", username="u", password="p")
    assert "qop=" not in value and "cnonce=" not in value and "nc=" not in value


def test_a_fresh_cnonce_each_time_when_qop_is_auth():
    challenge = Challenge(realm="trunk", nonce="abc", qop=("auth",))
    first = authorization(challenge, method="INVITE", uri="sip:1@trunk", username="u", password="p")
    second = authorization(challenge, method="INVITE", uri="sip:1@trunk", username="u", password="p")
    assert first != second


@pytest.mark.parametrize(("header", "why"), [
    ('Digest realm="r", nonce="n", qop="auth-int"', "auth-int"),
    ('Digest realm="r", nonce="n", algorithm=SHA-512-256', "SHA-512-256"),
    ('Digest realm="r"', "nonce"),
    ('Basic realm="r"', "Basic"),
])
def test_challenges_we_cannot_answer_are_refused_with_the_reason(header, why):
    with pytest.raises(DigestError, match=why):
        parse_challenge(header)


def test_the_strongest_usable_challenge_is_chosen():
    chosen = choose_challenge(['Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
                               'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
                               'Digest realm="r", nonce="n3", algorithm=SHA-512-256, qop="auth"'])
    assert chosen.algorithm == "SHA-256" and chosen.nonce == "n2"


def test_no_usable_challenge_names_every_refusal():
    with pytest.raises(DigestError, match="auth-int.*Basic|Basic.*auth-int"):
        choose_challenge(['Digest realm="r", nonce="n", qop="auth-int"', 'Basic realm="r"'])
