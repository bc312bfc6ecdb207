"""What the caller heard of a spoken answer, from how much of its audio was played.

The cascade knows which piece of text each stretch of audio speaks, so a barge-in
that stopped playback after ``heard_ms`` keeps the pieces played in full and the
share of words of the piece that was cut. The model's history then holds only what
the caller actually heard, as with a realtime model's truncate.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SpokenPiece:
    text: str
    audio_ms: float = 0.0


@dataclass(slots=True)
class SpokenAnswer:
    item_id: str
    pieces: list[SpokenPiece] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.pieces if p.text)

    @property
    def audio_ms(self) -> float:
        return sum(p.audio_ms for p in self.pieces)

    def heard_text(self, heard_ms: float) -> str:
        """The words heard in the first ``heard_ms`` of the answer's audio."""
        words: list[str] = []
        remaining = heard_ms
        for piece in self.pieces:
            if remaining >= piece.audio_ms:
                words.append(piece.text)
                remaining -= piece.audio_ms
                continue
            if piece.audio_ms > 0 and remaining > 0:
                piece_words = piece.text.split()
                share = int(len(piece_words) * remaining / piece.audio_ms)
                if share:
                    words.append(" ".join(piece_words[:share]))
            break
        return " ".join(w for w in words if w)
