"""Cut streaming model text into pieces worth speaking.

The cascade speaks sentence by sentence as the text streams, so the caller hears the
first words while the rest of the answer is still being written. A piece ends at a
sentence end (``.``, ``!``, ``?``, or a line break); the first piece of an answer may
also end at a clause break (``,``, ``;``, ``:``) once it is long enough, because the
first audio is what the caller waits for. Abbreviations and decimals ("Dr.", "e.g.",
"3.5") do not end a sentence.
"""

from __future__ import annotations

import re

# A sentence end: terminal punctuation (and closing quotes/brackets) followed by space.
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)|\n+")
_CLAUSE_END = re.compile(r"[,;:—](?=\s)")
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e",
    "a.m", "p.m", "no", "inc", "ltd", "co", "approx", "dept", "ave", "blvd",
})
# The first piece may stop at a clause break once it has this many characters: a few
# words ("Sure, ..." is too short to sound like speech; "We are open today," is not).
FIRST_CLAUSE_MIN_CHARS = 12


class SentenceBuffer:
    """Feed text deltas in; take speakable pieces out, in order, each exactly once."""

    def __init__(self, first_clause_min_chars: int = FIRST_CLAUSE_MIN_CHARS) -> None:
        self._text = ""
        self._pieces_out = 0
        self._first_clause_min = first_clause_min_chars

    def feed(self, delta: str) -> list[str]:
        self._text += delta
        pieces: list[str] = []
        while (cut := self._next_cut()) is not None:
            piece, self._text = self._text[:cut].strip(), self._text[cut:]
            if piece:
                pieces.append(piece)
                self._pieces_out += 1
        return pieces

    def flush(self) -> str:
        """Whatever is left once the answer is complete."""
        rest, self._text = self._text.strip(), ""
        if rest:
            self._pieces_out += 1
        return rest

    def _next_cut(self) -> int | None:
        for match in _SENTENCE_END.finditer(self._text):
            if match.group().startswith("\n") or not self._is_abbreviation(match.start()):
                return match.end()
        if self._pieces_out == 0:
            for match in _CLAUSE_END.finditer(self._text):
                if match.end() >= self._first_clause_min:
                    return match.end()
        return None

    def _is_abbreviation(self, dot: int) -> bool:
        if self._text[dot] != ".":
            return False
        word = re.search(r"([A-Za-z][A-Za-z.]*)$", self._text[:dot])
        return bool(word) and word.group(1).lower() in _ABBREVIATIONS
