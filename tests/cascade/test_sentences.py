from __future__ import annotations

from agentplatform.cascade.sentences import SentenceBuffer


def _feed_all(buffer: SentenceBuffer, deltas: list[str]) -> list[str]:
    pieces: list[str] = []
    for delta in deltas:
        pieces += buffer.feed(delta)
    if rest := buffer.flush():
        pieces.append(rest)
    return pieces


def test_sentences_come_out_as_soon_as_they_end() -> None:
    buffer = SentenceBuffer()
    assert buffer.feed("We are open") == []
    assert buffer.feed(" nine to five. We") == ["We are open nine to five."]
    assert buffer.feed(" close on Sundays!") == []
    assert buffer.flush() == "We close on Sundays!"


def test_abbreviations_and_decimals_do_not_end_a_sentence() -> None:
    pieces = _feed_all(SentenceBuffer(), ["Dr. Smith sees ", "patients at 3.5 ", "hours e.g. ",
                                          "today. ", "Bye."])
    assert pieces == ["Dr. Smith sees patients at 3.5 hours e.g. today.", "Bye."]


def test_a_long_first_sentence_is_cut_at_a_clause_to_start_speaking_sooner() -> None:
    text = "Thanks for waiting, I checked the calendar for you, and Tuesday at ten is free. Ok."
    pieces = _feed_all(SentenceBuffer(first_clause_min_chars=40),
                       [w + " " for w in text.split(" ")])
    assert pieces[0] == "Thanks for waiting, I checked the calendar for you,"
    assert pieces[1] == "and Tuesday at ten is free."
    assert " ".join(pieces) == text


def test_line_breaks_end_a_piece_and_nothing_is_lost() -> None:
    text = "First line\nSecond line? Yes: third."
    pieces = _feed_all(SentenceBuffer(), list(text))
    assert pieces == ["First line", "Second line?", "Yes: third."]


def test_the_first_piece_is_a_short_phrase_up_to_its_first_comma() -> None:
    text = "I'm sorry to hear that, let me put you through to our staff right away."
    pieces = _feed_all(SentenceBuffer(), [w + " " for w in text.split(" ")])
    assert pieces == ["I'm sorry to hear that,",
                      "let me put you through to our staff right away."]


def test_a_comma_after_a_word_or_two_does_not_make_a_piece_too_short_to_speak() -> None:
    text = "Of course, I'll have our staff call you back today, to find a time."
    pieces = _feed_all(SentenceBuffer(), [w + " " for w in text.split(" ")])
    assert pieces[0] == "Of course, I'll have our staff call you back today,"
