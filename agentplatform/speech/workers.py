"""The threads local speech models run on, one per kind of work.

Local models are CPU-bound and hold the GIL only in short stretches, so they run off
the event loop. Each kind gets exactly one thread: transcriptions queue behind each
other rather than fighting over two cores, and a long synthesis never delays the
caller's next transcription (barge-in needs that one fast). Threads start on first
use; nothing is loaded at import time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache


@lru_cache(maxsize=1)
def stt_executor() -> ThreadPoolExecutor:
    """The one thread every local transcription runs on."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="speech-stt")


@lru_cache(maxsize=1)
def tts_executor() -> ThreadPoolExecutor:
    """The one thread every local synthesis runs on."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="speech-tts")
