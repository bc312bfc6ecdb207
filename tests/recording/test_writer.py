"""The recordings writer: a valid stereo WAV at every moment, the transcript offsets,
and the retention sweep."""

from __future__ import annotations

import audioop
import os
import time
import wave
from pathlib import Path

import pytest

from agentplatform.carriers.base import InboundAudio
from agentplatform.recording.files import recording_path, sweep
from agentplatform.recording.writer import RecordingWriter

MS = 8


class _Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def event(self, call_id, kind, detail=None):
        self.events.append((call_id, kind, detail or {}))


def _read(path: Path) -> tuple[int, int, bytes]:
    with wave.open(str(path), "rb") as wav:
        return wav.getnchannels(), wav.getframerate(), wav.readframes(wav.getnframes())


def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def _speak(recording, start_ms: int, ms: int, value: int, t0: float) -> None:
    for ts in range(start_ms, start_ms + ms, 20):
        recording.caller_audio(InboundAudio(bytes([value]) * 160, ts, received_at=t0 + ts / 1000))


@pytest.fixture
def writer(tmp_path):
    w = RecordingWriter(tmp_path / "rec", flush_seconds=0.05)
    w.start()
    yield w
    w.close()


def test_a_call_becomes_a_stereo_wav_with_caller_left_and_agent_right(writer, tmp_path):
    events = _Events()
    t0 = 5000.0
    clock = [t0]
    rec = writer.open("call1", events)
    rec._clock = lambda: clock[0]
    _speak(rec, 0, 1000, 0x20, t0)
    clock[0] = t0 + 1.0
    rec.agent_sent("0:item:500", "item", bytes([0x40]) * 4000)  # 500 ms
    _speak(rec, 1000, 600, 0x20, t0)
    clock[0] = t0 + 1.6
    rec.agent_played("0:item:500")
    rec.turn("assistant", "item")
    rec.close()
    writer.close()
    channels, rate, frames = _read(tmp_path / "rec" / "call1.wav")
    assert (channels, rate) == (2, 8000)
    left = audioop.tomono(frames, 2, 1, 0)
    right = audioop.tomono(frames, 2, 0, 1)
    assert len(left) == 1600 * MS * 2
    # The caller spoke throughout; the agent from 1100 to 1600 ms, silence before.
    assert audioop.rms(right[: 1000 * MS * 2], 2) == 0
    assert audioop.rms(right[1100 * MS * 2: 1600 * MS * 2], 2) > 0
    assert audioop.rms(right[: 1099 * MS * 2], 2) == 0
    assert audioop.rms(left, 2) > 0
    [(call_id, kind, detail)] = events.events
    assert (call_id, kind, detail["file"], detail["turn_offsets_ms"]) == (
        "call1", "recording", "call1.wav", [1100])


def test_the_file_is_a_valid_wav_of_what_was_heard_while_the_call_is_still_going(writer, tmp_path):
    rec = writer.open("live", None)
    _speak(rec, 0, 2000, 0x20, 100.0)
    path = tmp_path / "rec" / "live.wav"
    _wait(lambda: path.exists() and path.stat().st_size >= 44 + 2000 * MS * 4)
    # Read as another process would, mid-call (or after a crash): the header is right.
    channels, rate, frames = _read(path)
    assert (channels, rate, len(frames)) == (2, 8000, 2000 * MS * 4)


def test_stopping_the_writer_closes_open_recordings_with_what_was_heard(tmp_path):
    writer = RecordingWriter(tmp_path, flush_seconds=60)  # nothing written before the stop
    writer.start()
    rec = writer.open("abrupt", None)
    _speak(rec, 0, 700, 0x20, 100.0)
    rec.agent_sent("0:i:100", "i", bytes([0x40]) * 800)
    assert writer.close()  # e.g. the server drains while the call is live
    channels, _, frames = _read(tmp_path / "abrupt.wav")
    assert channels == 2 and len(frames) == 700 * MS * 4
    # The agent's audio never came back as played: it is not in the recording.
    assert audioop.rms(audioop.tomono(frames, 2, 0, 1), 2) == 0


def test_a_discarded_recording_leaves_no_file(writer, tmp_path):
    rec = writer.open("gone", None)
    _speak(rec, 0, 200, 0x20, 100.0)
    rec.discard()
    writer.close()
    assert not (tmp_path / "rec" / "gone.wav").exists()


def test_an_unwritable_directory_costs_the_recording_and_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    writer = RecordingWriter(blocker / "rec", flush_seconds=0.05)
    writer.start()
    events = _Events()
    rec = writer.open("c", events)
    _speak(rec, 0, 200, 0x20, 100.0)
    rec.close()
    writer.close()
    assert writer.stats.failed == 1
    assert [kind for _, kind, _ in events.events] == ["recording_failed"]


def test_a_call_id_that_cannot_be_a_file_name_is_not_recorded(tmp_path):
    assert recording_path(tmp_path, "../../etc/passwd") is None
    assert RecordingWriter(tmp_path).open("../x") is None
    assert recording_path(tmp_path, "abc123") == tmp_path / "abc123.wav"


def test_the_retention_sweep_deletes_only_recordings_older_than_the_limit(tmp_path):
    now = time.time()
    old, new, busy, other = (tmp_path / n for n in ("old.wav", "new.wav", "busy.wav", "old.txt"))
    for path in (old, new, busy, other):
        path.write_bytes(b"x")
    for path in (old, busy, other):
        os.utime(path, (now - 40 * 86400, now - 40 * 86400))
    os.utime(new, (now - 20 * 86400, now - 20 * 86400))
    assert sweep(tmp_path, 30, now=now, keep=frozenset({"busy.wav"})) == 1
    assert not old.exists() and new.exists() and busy.exists() and other.exists()


@pytest.mark.parametrize("days", [None, 0])
def test_no_retention_keeps_every_recording(tmp_path, days):
    path = tmp_path / "ancient.wav"
    path.write_bytes(b"x")
    os.utime(path, (0, 0))
    assert sweep(tmp_path, days) == 0 and path.exists()


def test_the_writer_sweeps_when_it_starts(tmp_path):
    path = tmp_path / "ancient.wav"
    path.write_bytes(b"x")
    os.utime(path, (0, 0))
    writer = RecordingWriter(tmp_path, retention_days=1)
    writer.start()
    _wait(lambda: not path.exists())
    writer.close()
