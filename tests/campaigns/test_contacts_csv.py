"""Reading a campaign's contacts: every bad row is named with its line, and one bad
row refuses the upload."""

from __future__ import annotations

import pytest

from agentplatform.campaigns.contacts_csv import (
    ContactsInvalid,
    normalize_number,
    parse_csv,
    parse_items,
)


def _errors(data: bytes, **kwargs: int) -> list[tuple[int, str]]:
    with pytest.raises(ContactsInvalid) as caught:
        parse_csv(data, "UTC", **kwargs)
    return [(e.line, e.message) for e in caught.value.errors]


def test_rows_become_contacts_with_their_params_and_line() -> None:
    rows = parse_csv(b"number,name,appointment\n+1 (415) 555-0100,Ada,Tuesday 3pm\n"
                     b"\n+442071234567,Bob,Friday\n", "UTC")
    assert [(r.line, r.number, r.params) for r in rows] == [
        (2, "+14155550100", {"name": "Ada", "appointment": "Tuesday 3pm"}),
        (4, "+442071234567", {"name": "Bob", "appointment": "Friday"}),
    ]


def test_the_time_zone_comes_from_the_column_else_the_number_else_the_default() -> None:
    rows = parse_csv(b"number,timezone\n+14155550100,America/Chicago\n+14155550101,\n"
                     b"+18005550100,\n", "Europe/Paris")
    # A given zone wins; a San Francisco number maps to one zone; a toll-free
    # number spans several, so the campaign's default is used.
    assert [r.time_zone for r in rows] == ["America/Chicago", "America/Los_Angeles",
                                           "Europe/Paris"]


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_kept() -> None:
    errors = _errors(b"number,name\n+14155550100,Ada\n4155550101,Bob\n+14155550100,Cy\n"
                     b"+1415,Dee\n+14155550102\n")
    assert [line for line, _ in errors] == [3, 4, 5, 6]
    assert "international format" in errors[0][1]
    assert "already on line 2" in errors[1][1]
    assert "not a phone number" in errors[2][1]
    assert "1 fields, the header has 2" in errors[3][1]


def test_a_bad_time_zone_is_an_error_on_its_line() -> None:
    assert _errors(b"number,timezone\n+14155550100,Mars/Olympus\n")[0][0] == 2


def test_a_file_without_a_number_column_is_refused_at_the_header() -> None:
    errors = _errors(b"phone,name\n+14155550100,Ada\n")
    assert errors[0][0] == 1 and "no 'number' column" in errors[0][1]


def test_a_column_that_cannot_be_a_parameter_name_is_refused() -> None:
    errors = _errors(b"number,first name\n+14155550100,Ada\n")
    assert errors[0][0] == 1 and "parameter name" in errors[0][1]


def test_too_many_rows_or_bytes_are_refused() -> None:
    data = b"number\n" + b"".join(b"+1415555%04d\n" % i for i in range(11))
    assert "more than 10 contacts" in _errors(data, max_rows=10)[0][1]
    assert "at most 20 are taken" in _errors(data, max_bytes=20)[0][1]


def test_text_that_is_not_utf8_is_refused_saying_so() -> None:
    assert "not UTF-8" in _errors(b"number,name\n+14155550100,\xff\xfe\n")[0][1]


def test_a_quoted_field_may_hold_commas_and_a_bom_is_ignored() -> None:
    rows = parse_csv('\ufeffnumber,note\n+14155550100,"late, call after 5"\n'.encode(), "UTC")
    assert rows[0].params == {"note": "late, call after 5"}


def test_json_contacts_are_checked_the_same_way() -> None:
    rows = parse_items([{"number": "+14155550100", "params": {"name": "Ada"}},
                        {"number": "+442071234567", "timezone": "Europe/London"}], "UTC")
    assert [(r.line, r.params, r.time_zone) for r in rows] == [
        (1, {"name": "Ada"}, "America/Los_Angeles"), (2, {}, "Europe/London")]
    with pytest.raises(ContactsInvalid) as caught:
        parse_items([{"number": "+14155550100"}, {"number": "12"}, "x"], "UTC")
    assert [e.line for e in caught.value.errors] == [2, 3]


def test_numbers_are_normalized_to_e164() -> None:
    assert normalize_number(" 0044 20 7123 4567 ") == "+442071234567"
    with pytest.raises(ValueError):
        normalize_number("+0123456789")


def test_a_row_whose_params_a_call_could_not_carry_is_refused() -> None:
    errors = _errors(b"number,note\n+14155550100,ok\n+14155550101," + b"x" * 600 + b"\n")
    assert errors[0][0] == 3 and "params.note is 600 characters" in errors[0][1]
