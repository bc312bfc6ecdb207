"""The recordings writer: one thread places every call's audio and writes the WAVs.

The bridge only puts notes on a queue (``call.py``); this thread takes them in
order, keeps a ``Timeline`` per call, and every ``flush_seconds`` appends what both
tracks have settled to the call's file. ``wave`` rewrites the header's sizes on
every append, so the file on disk is a valid WAV of everything heard so far at any
moment: a call that ends abruptly (the provider fails, the server drains, the task
is cancelled, even the process is killed) leaves a playable file.

The same thread sweeps old recordings (``RECORDING_RETENTION_DAYS``) once an hour.
A failing disk costs the recording, never the call: errors are logged and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentplatform.recording.announce import Announcements
from agentplatform.recording.call import CallRecording
from agentplatform.recording.files import recording_path, sweep
from agentplatform.recording.timeline import SAMPLES_PER_MS, Timeline
from agentplatform.records import CallRecorder

log = logging.getLogger(__name__)

RATE = 8000
SWEEP_SECONDS = 3600.0
_STOP = object()


@dataclass(slots=True)
class RecorderStats:
    open: int = 0
    finished: int = 0
    failed: int = 0
    seconds_written: float = 0.0


@dataclass(slots=True)
class _Open:
    path: Path
    recorder: CallRecorder | None
    timeline: Timeline = field(default_factory=Timeline)
    file: Any = None  # the open file, flushed after every append
    wav: Any = None  # wave.Wave_write over it
    failed: bool = False


class RecordingWriter:
    """Writes call recordings to ``directory`` from one background thread."""

    def __init__(self, directory: Path, *, retention_days: float | None = None,
                 flush_seconds: float = 0.5, sweep_seconds: float = SWEEP_SECONDS,
                 announcements: Announcements | None = None) -> None:
        self.directory = Path(directory)
        # The announcements' rendered audio, shared by every call (used on the loop).
        self.announcements = announcements or Announcements()
        self.retention_days = retention_days
        self.flush_seconds = flush_seconds
        self.sweep_seconds = sweep_seconds
        self.stats = RecorderStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._open: dict[CallRecording, _Open] = {}
        self._next_sweep = 0.0
        self._handlers = {
            "open": self._on_open, "caller": self._on_caller, "sent": self._on_sent,
            "played": self._on_played, "cut": self._on_cut, "close": self._on_close,
            "discard": self._on_discard,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("RecordingWriter already started")
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = 10.0) -> bool:
        """Write everything queued, close every open file (what was heard so far), end
        the thread. False if that took longer than ``timeout``."""
        if self._thread is None:
            return True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def open(self, call_id: str, recorder: CallRecorder | None = None, *,
             mark_lead_ms: float = 0.0) -> CallRecording | None:
        """A recording for ``call_id``; None if the id cannot name a file. ``recorder``
        is told where the recording is and where each transcript line starts in it;
        ``mark_lead_ms`` is the carrier's (``CallAudio.mark_lead_ms``)."""
        path = recording_path(self.directory, call_id)
        if path is None:
            log.warning("call %s: not recorded: the id cannot name a file", call_id[:64])
            return None
        recording = CallRecording(call_id, self._put, mark_lead_ms=mark_lead_ms)
        self._put(recording, ("open", path, recorder))
        return recording

    def _put(self, recording: CallRecording, note: tuple[Any, ...]) -> None:
        self._queue.put((recording, note))

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_seconds
        while True:
            now = time.monotonic()
            if now >= self._next_sweep:
                self._sweep()
                self._next_sweep = now + self.sweep_seconds
            try:
                item = self._queue.get(timeout=max(0.0, next_flush - now))
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                recording, note = item
                self._apply(recording, note)
            if time.monotonic() >= next_flush:
                for recording, state in list(self._open.items()):
                    self._write(recording, state, state.timeline.take())
                next_flush = time.monotonic() + self.flush_seconds
        # Everything queued before the stop, then every file closed as it stands.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._apply(*item)
        for recording in list(self._open):
            self._on_close(recording, [])

    def _apply(self, recording: CallRecording, note: tuple[Any, ...]) -> None:
        try:
            self._handlers[note[0]](recording, *note[1:])
        except Exception:  # a bad note costs that recording's note, never the thread
            log.exception("call %s: recording note %s failed", recording.call_id, note[0])

    def _sweep(self) -> None:
        keep = frozenset(state.path.name for state in self._open.values())
        try:
            sweep(self.directory, self.retention_days, keep=keep)
        except Exception:
            log.exception("recordings: retention sweep failed")

    # ------------------------------------------------------------------ notes

    def _on_open(self, recording: CallRecording, path: Path, recorder: CallRecorder | None) -> None:
        state = _Open(path, recorder)
        self._open[recording] = state
        self.stats.open += 1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            state.file = open(path, "wb")  # noqa: SIM115 - closed in _on_close
            wav = wave.open(state.file, "wb")
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(b"")  # the header is on disk from the start
            state.wav = wav
        except OSError as exc:
            self._fail(recording, state, exc)

    def _state(self, recording: CallRecording) -> _Open | None:
        state = self._open.get(recording)
        return None if state is None or state.failed else state

    def _on_caller(self, recording: CallRecording, position: int, ulaw: bytes) -> None:
        if (state := self._state(recording)) is not None:
            state.timeline.caller(position, ulaw)

    def _on_sent(self, recording: CallRecording, mark: str, item_id: str, ulaw: bytes,
                 now: int) -> None:
        if (state := self._state(recording)) is not None:
            state.timeline.agent_sent(mark, item_id, ulaw, now)

    def _on_played(self, recording: CallRecording, mark: str, now: int) -> None:
        if (state := self._state(recording)) is not None:
            state.timeline.agent_played(mark, now)

    def _on_cut(self, recording: CallRecording, item_id: str, heard: int, now: int) -> None:
        if (state := self._state(recording)) is not None:
            state.timeline.agent_cut(item_id, heard, now)

    def _on_close(self, recording: CallRecording, turns: list[tuple[str, str, int]]) -> None:
        state = self._open.pop(recording, None)
        if state is None:
            return
        self.stats.open -= 1
        if state.failed:
            return
        self._write(recording, state, state.timeline.take_all())
        try:
            state.wav.close()
            state.file.close()
        except OSError as exc:
            self._fail(recording, state, exc)
            return
        self.stats.finished += 1
        if state.recorder is not None:
            starts = state.timeline.item_starts
            offsets = [round((starts.get(item_id, position) if role != "user" else position)
                             / SAMPLES_PER_MS) for role, item_id, position in turns]
            state.recorder.event(recording.call_id, "recording", {
                "file": state.path.name,
                "seconds": round(state.timeline.written / RATE, 3),
                "turn_offsets_ms": offsets,
            })

    def _on_discard(self, recording: CallRecording) -> None:
        state = self._open.pop(recording, None)
        if state is None:
            return
        self.stats.open -= 1
        try:
            if state.wav is not None:
                state.wav.close()
                state.file.close()
            state.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("call %s: could not remove the discarded recording: %s",
                        recording.call_id, exc)

    # ------------------------------------------------------------------ disk

    def _write(self, recording: CallRecording, state: _Open, frames: bytes) -> None:
        if not frames or state.failed:
            return
        try:
            state.wav.writeframes(frames)  # also rewrites the header's sizes
            state.file.flush()
        except OSError as exc:
            self._fail(recording, state, exc)
            return
        self.stats.seconds_written += len(frames) / (4 * RATE)

    def _fail(self, recording: CallRecording, state: _Open, exc: Exception) -> None:
        state.failed = True
        self.stats.failed += 1
        log.error("call %s: recording stopped: %s", recording.call_id, exc)
        if state.recorder is not None:
            state.recorder.event(recording.call_id, "recording_failed", {"error": str(exc)})
