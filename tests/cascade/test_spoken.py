from __future__ import annotations

from agentplatform.cascade.spoken import SpokenAnswer, SpokenPiece


def _answer() -> SpokenAnswer:
    return SpokenAnswer("item", [SpokenPiece("We are open today.", 1000.0),
                                 SpokenPiece("Our address is 120 Maple Street.", 2000.0)])


def test_pieces_played_in_full_are_kept_whole() -> None:
    assert _answer().heard_text(1000.0) == "We are open today."
    assert _answer().heard_text(5000.0) == _answer().text


def test_the_cut_piece_keeps_the_share_of_words_played() -> None:
    # Half of the second piece's 2 s: 3 of its 6 words.
    assert _answer().heard_text(2000.0) == "We are open today. Our address is"


def test_nothing_heard_keeps_nothing() -> None:
    assert _answer().heard_text(0.0) == ""
    assert _answer().heard_text(100.0) == ""
