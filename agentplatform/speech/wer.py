"""Word error rate, for the recognition table in ``make bench``.

WER = (substitutions + deletions + insertions) / reference words, over word lists
normalized the same way on both sides: lower case, no punctuation, digits spelt out,
common contractions expanded ("what's" = "what is"), so a recognizer is not charged
for writing "8" or "I'd" where the reference has words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            "ten", "eleven", "twelve")
_CONTRACTIONS = {
    "what's": "what is", "where's": "where is", "it's": "it is", "that's": "that is",
    "i'm": "i am", "i'd": "i would", "i've": "i have", "i'll": "i will", "can't": "cannot",
    "don't": "do not", "doesn't": "does not", "isn't": "is not", "you're": "you are",
    "we're": "we are", "there's": "there is", "let's": "let us", "won't": "will not",
}
_COMPOUNDS = {"checkup": "check up", "check-up": "check up", "goodbye": "goodbye",
              "good-bye": "goodbye", "toothache": "toothache", "tooth-ache": "toothache"}


def normalize(text: str) -> list[str]:
    """``text`` as the list of words a WER compares."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"\b\d{1,2}\b", lambda m: f" {_spell(int(m.group()))} ", text)
    words: list[str] = []
    for word in re.findall(r"[a-z][a-z'-]*", text):
        word = word.strip("'-")
        word = _COMPOUNDS.get(word, word)
        words.extend(_CONTRACTIONS.get(word, word).split())
    return words


def _spell(number: int) -> str:
    return _NUMBERS[number] if number < len(_NUMBERS) else str(number)


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, deletions, insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """The corpus WER of (reference, hypothesis) pairs: total errors / total reference words."""
    errors = words = 0
    for reference, hypothesis in pairs:
        ref = normalize(reference)
        errors += edit_distance(ref, normalize(hypothesis))
        words += len(ref)
    return errors / words if words else 0.0
