"""A campaign's contacts from a CSV upload (or a JSON list), checked row by row.

One column is the number (``number``, international format); an optional
``timezone`` column names the callee's IANA zone; every other column becomes a
``{{params.X}}`` value for that call. Every bad row is reported with its line
number, and **one bad row refuses the whole upload**: nothing is half-created, so
fixing the file and uploading it again can never call the good rows twice.
Numbers repeated in one file are errors too, for the same reason.

Parsing grows with the file: callers run it in a worker thread.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agentplatform.campaigns.hours import is_time_zone, zone_for_number
from agentplatform.outbound.request import MAX_PARAMS, params_problem

NUMBER_COLUMN = "number"
ZONE_COLUMNS = ("timezone", "time_zone")
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_CONTACTS = 10_000
MAX_ERRORS_SHOWN = 100
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_NUMBER_DECORATION = str.maketrans("", "", " -.()\u00a0")


@dataclass(frozen=True, slots=True)
class ContactRow:
    line: int  # where it stood in the upload (1 is the header of a CSV)
    number: str  # E.164
    params: dict[str, str]
    time_zone: str


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # 0: the upload as a whole
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class ContactsInvalid(ValueError):
    """The upload was refused; ``errors`` says where and why, in file order."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} problem(s) in the contacts: {shown}{more}")

    def as_list(self) -> list[dict[str, object]]:
        listed: list[dict[str, object]] = [{"line": e.line, "message": e.message}
                                           for e in self.errors[:MAX_ERRORS_SHOWN]]
        if len(self.errors) > MAX_ERRORS_SHOWN:
            listed.append({"line": 0, "message": f"… and {len(self.errors) - MAX_ERRORS_SHOWN}"
                                                 " more problems"})
        return listed


def normalize_number(raw: str) -> str:
    """``"+1 (415) 555-0100"`` → ``"+14155550100"``; ``ValueError`` saying what is wrong."""
    number = raw.strip().translate(_NUMBER_DECORATION)
    if not number:
        raise ValueError("the number is empty")
    if number.startswith("00"):
        number = "+" + number[2:]
    if not number.startswith("+"):
        raise ValueError(f"{raw.strip()[:40]!r} is not in international format "
                         "(a + and the country code, e.g. +14155550100)")
    if not _E164.match(number):
        raise ValueError(f"{raw.strip()[:40]!r} is not a phone number "
                         "(a + and 7 to 15 digits)")
    return number


def parse_csv(data: bytes, default_zone: str, *, max_bytes: int = MAX_UPLOAD_BYTES,
              max_rows: int = MAX_CONTACTS) -> list[ContactRow]:
    """The contacts of a CSV file with a header row; ``ContactsInvalid`` listing every
    problem (with its line) when there is any."""
    if len(data) > max_bytes:
        raise ContactsInvalid([RowError(0, f"the file is {len(data)} bytes; at most "
                                           f"{max_bytes} are taken")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ContactsInvalid([RowError(0, f"the file is not UTF-8 text (byte {exc.start}); "
                                           "save it as CSV UTF-8")]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ContactsInvalid([RowError(1, f"the header is not CSV: {exc}")]) from None
    if header is None or not any(h.strip() for h in header):
        raise ContactsInvalid([RowError(0, "the file is empty; the first line must name "
                                           f"the columns, one of them {NUMBER_COLUMN!r}")])
    columns = [h.strip() for h in header]
    problems = _header_problems(columns)
    if problems:
        raise ContactsInvalid([RowError(1, p) for p in problems])
    records: list[tuple[int, dict[str, str]]] = []
    errors: list[RowError] = []
    line = reader.line_num
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(start, f"not CSV: {exc}"))
            break  # the reader cannot find the next row reliably after this
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) != len(columns):
            errors.append(RowError(start, f"{len(fields)} fields, the header has "
                                          f"{len(columns)}"))
            continue
        records.append((start, dict(zip(columns, fields, strict=True))))
        if len(records) > max_rows:
            raise ContactsInvalid([RowError(start, f"more than {max_rows} contacts; split "
                                                   "the list into several campaigns")])
    rows = _checked(records, default_zone, errors)
    return rows


def parse_items(items: object, default_zone: str, *,
                max_rows: int = MAX_CONTACTS) -> list[ContactRow]:
    """Contacts given as JSON: ``[{"number": "+1…", "params": {…}, "timezone"?: …}]``;
    an item's "line" is its position from 1."""
    if not isinstance(items, list) or not items:
        raise ContactsInvalid([RowError(0, "contacts must be a non-empty list of "
                                           '{"number": ..., "params": {...}} objects')])
    if len(items) > max_rows:
        raise ContactsInvalid([RowError(0, f"{len(items)} contacts; at most {max_rows}")])
    records: list[tuple[int, dict[str, str]]] = []
    errors: list[RowError] = []
    for line, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            errors.append(RowError(line, "not an object"))
            continue
        params = item.get("params", {})
        extra = set(item) - {NUMBER_COLUMN, "params", *ZONE_COLUMNS}
        if extra:
            errors.append(RowError(line, f"unknown keys {sorted(extra)}"))
            continue
        if not isinstance(params, Mapping) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool)
                for v in params.values()):
            errors.append(RowError(line, "params must be an object of text values"))
            continue
        names = [str(k) for k in params]
        bad_names = [p for p in _header_problems([NUMBER_COLUMN, *names])]
        if bad_names:
            errors.extend(RowError(line, p) for p in bad_names)
            continue
        record = {str(k): str(v) for k, v in params.items()}
        record[NUMBER_COLUMN] = str(item.get(NUMBER_COLUMN, ""))
        for key in ZONE_COLUMNS:
            if key in item:
                record[key] = str(item[key])
        records.append((line, record))
    return _checked(records, default_zone, errors)


def _header_problems(columns: list[str]) -> list[str]:
    problems: list[str] = []
    if NUMBER_COLUMN not in columns:
        problems.append(f"no {NUMBER_COLUMN!r} column (the columns are "
                        f"{', '.join(repr(c) for c in columns[:10])})")
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            problems.append(f"the column {name!r} appears twice")
        seen.add(name)
        if name not in (NUMBER_COLUMN, *ZONE_COLUMNS) and not _PARAM_NAME.match(name):
            problems.append(f"the column {name[:40]!r} cannot be a parameter name (letters, "
                            "digits and _, not starting with a digit)")
    if len([c for c in columns if c not in (NUMBER_COLUMN, *ZONE_COLUMNS)]) > MAX_PARAMS:
        problems.append(f"more than {MAX_PARAMS} parameter columns")
    return problems


def _checked(records: Iterable[tuple[int, dict[str, str]]], default_zone: str,
             errors: list[RowError]) -> list[ContactRow]:
    rows: list[ContactRow] = []
    first_line: dict[str, int] = {}
    for line, record in records:
        try:
            number = normalize_number(record[NUMBER_COLUMN])
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        if number in first_line:
            errors.append(RowError(line, f"{number} is already on line {first_line[number]}"))
            continue
        first_line[number] = line
        zone_name = next((record[k].strip() for k in ZONE_COLUMNS if record.get(k, "").strip()),
                         "")
        if zone_name and not is_time_zone(zone_name):
            errors.append(RowError(line, f"{zone_name[:60]!r} is not an IANA time zone "
                                         "(e.g. America/New_York)"))
            continue
        params = {k: v.strip() for k, v in record.items()
                  if k not in (NUMBER_COLUMN, *ZONE_COLUMNS)}
        problem = params_problem(params)  # what a call may carry (``outbound/request.py``)
        if problem is not None:
            errors.append(RowError(line, problem))
            continue
        rows.append(ContactRow(line, number, params,
                               zone_name or zone_for_number(number, default_zone)))
    if errors:
        raise ContactsInvalid(sorted(errors, key=lambda e: e.line))
    if not rows:
        raise ContactsInvalid([RowError(0, "no contacts: the file has a header but no rows")])
    return rows
