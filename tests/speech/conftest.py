"""Shared audio for the speech tests: real speech from the local voice, made once."""

from __future__ import annotations

import re

SENTENCE = "My order number is four five two and I want to change the delivery address."
KEY_WORDS = ("order", "number", "four", "five", "two", "change", "delivery", "address")
_DIGITS = dict(zip("0123456789", ("zero", "one", "two", "three", "four", "five", "six",
                                  "seven", "eight", "nine"), strict=True))


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, digits spelt out one by one ("452" → four five two)."""
    spelt = re.sub(r"\d", lambda m: f" {_DIGITS[m.group()]} ", text.lower())
    return re.findall(r"[a-z']+", spelt)
