"""Touch-tone strings an agent may send (``CallAudio.send_dtmf``): one rule for every carrier.

``0-9``, ``*``, ``#`` and ``A-D`` are the sixteen DTMF keys (RFC 4733 events 0-15);
``w`` is a half-second pause, as in a phone's dial string. The length is bounded so
a model cannot tie up the line with an endless string.
"""

from __future__ import annotations

import re

KEYS = "0123456789*#ABCD"
PAUSE = "w"
PAUSE_MS = 500
MAX_DIGITS = 64
_VALID = re.compile(r"[0-9*#A-Dw]+")


class BadDtmf(ValueError):
    """A digit string we will not send; the text says which character is wrong."""


def validate_dtmf(digits: str) -> str:
    """``digits`` with letters made canonical (``a-d`` → ``A-D``, ``W`` → ``w``),
    or ``BadDtmf`` naming the first bad character."""
    text = "".join("w" if c in "wW" else c.upper() for c in digits.replace(" ", ""))
    if not text:
        raise BadDtmf("no digits to send")
    if len(text) > MAX_DIGITS:
        raise BadDtmf(f"{len(text)} characters; at most {MAX_DIGITS}")
    if not _VALID.fullmatch(text):
        bad = next(c for c in text if c not in KEYS and c != PAUSE)
        raise BadDtmf(f"{bad!r} is not a DTMF key (0-9, *, #, A-D) or w (pause)")
    return text
