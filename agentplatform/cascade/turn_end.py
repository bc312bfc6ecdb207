"""Is the caller done? A verdict on the words heard so far, and the hangover it earns.

The detector's silence is the biggest part of a cascade's answer time: wait 400 ms
after every stop and each answer starts 400 ms late; wait less and a caller who
pauses mid-sentence ("I'd like to book… an appointment for Tuesday") is answered in
the pause. The cascade transcribes during the first ~100 ms of every pause anyway
(``SpeechPause``), so the words are there to judge: a finished sentence earns a short
hangover, an unfinished one a long one, and a pause with no words the agent's own
``silence_duration_ms``. Until the verdict is in, the pause may last as long as an
unfinished one: the turn cannot be answered before its words are known anyway, so
waiting for them costs nothing, and ending it on the clock instead would answer a
caller mid-sentence whenever the machine is busy.

The judge is a text heuristic, not a model: no turn-end model ships its weights in a
light PyPI package (LiveKit's and Smart Turn's plugins download theirs; pipecat-ai
bundles Smart Turn but brings numba and a framework with it). It reads two cues
Whisper gives for free: the punctuation it writes (a cut-off phrase tends to end in
"," "..." or nothing) and the last word (a sentence does not end on "to", "the", "my",
"and", "um"). Words and hangovers are data (below), not if-chains.

``turn_detection.type: semantic_vad`` turns the judge on; ``eagerness`` picks the
hangovers, as it does for realtime models' semantic detection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    EMPTY = "empty"  # nothing recognizable: noise, a cough


@dataclass(frozen=True, slots=True)
class Hangovers:
    """Silence (ms) that ends a turn judged complete, and one judged unfinished."""

    complete_ms: int
    incomplete_ms: int


# By semantic_vad eagerness. The unfinished hangover must outlast a thinking pause
# (300–700 ms in the bench's pause set); the complete one is the answer's head start.
HANGOVERS: dict[str, Hangovers] = {
    "high": Hangovers(complete_ms=150, incomplete_ms=700),
    "auto": Hangovers(complete_ms=200, incomplete_ms=900),
    "medium": Hangovers(complete_ms=200, incomplete_ms=900),
    "low": Hangovers(complete_ms=300, incomplete_ms=1200),
}

# Words a finished English sentence does not end on: articles, prepositions,
# conjunctions, possessives, auxiliaries, fillers, and verbs that want an object.
_DANGLING = frozenset("""
a an the to for of with at on in into from by about like as than and or but so because
if when while that which who whose where my your our their his her its this these those
some any no every is are was were am be been being do does did have has had can could
would should will shall may might must i i'm i'd i'll we they he she it's
um uh er erm hmm well and-uh want need wanted needed wondering think
book make get schedule cancel reschedule ask tell bring find
""".split())
# A turn made only of a greeting ("Hi.", "Hello there,") is, on a phone line, nearly
# always the start of the caller's reason: "Hi, I have a terrible toothache." Whisper
# writes the pause after "Hi," as a full stop, so the words alone would end the turn.
_GREETING_ONLY = frozenset("""
hi hello hey hiya yo there good morning afternoon evening oh
""".split())
_TRAILING_CUT = re.compile(r"(,|;|:|-|—|…|\.\.\.)\s*$")
_SENTENCE_END = re.compile(r"[.?!]\s*$")
_WORD = re.compile(r"[a-z']+")


def judge(text: str) -> Verdict:
    """Whether ``text`` (a transcript of the turn so far) reads as a finished turn."""
    stripped = text.strip()
    words = _WORD.findall(stripped.lower())
    if not words:
        return Verdict.EMPTY
    if _TRAILING_CUT.search(stripped) or words[-1] in _DANGLING:
        return Verdict.INCOMPLETE
    if all(word in _GREETING_ONLY for word in words):
        return Verdict.INCOMPLETE
    if _SENTENCE_END.search(stripped):
        return Verdict.COMPLETE
    # No punctuation at all: Whisper leaves it off more often on cut phrases; a lone
    # word or two ("yes", "thank you") is still a whole answer on the phone.
    return Verdict.COMPLETE if len(words) <= 2 else Verdict.INCOMPLETE


@dataclass(frozen=True, slots=True)
class TurnEndPolicy:
    """One agent's turn ends: the hangovers its eagerness gives, and its own silence
    for a pause whose words are nothing (noise)."""

    hangovers: Hangovers
    silence_ms: int

    @property
    def undecided_ms(self) -> int:
        """How long the detector lets a pause last before its verdict is in."""
        return max(self.silence_ms, self.hangovers.incomplete_ms)

    def hangover_ms(self, verdict: Verdict) -> int:
        """The silence that ends a turn with this verdict."""
        if verdict is Verdict.COMPLETE:
            return self.hangovers.complete_ms
        if verdict is Verdict.INCOMPLETE:
            return self.hangovers.incomplete_ms
        return self.silence_ms
