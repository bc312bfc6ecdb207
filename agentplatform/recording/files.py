"""Where a call's recording lives, and the retention sweep that deletes old ones.

One file per call, ``<RECORDINGS_DIR>/<call id>.wav``: the API finds a recording by
the call's id alone, and the sweep needs no database.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".wav"
# Call ids are ours (uuid hex) or an outbound request's; nothing else may name a file.
_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def recording_path(directory: Path, call_id: str) -> Path | None:
    """The file of ``call_id``'s recording, or None if the id could not be one (so a
    crafted id never reaches the file system as a path)."""
    if not _CALL_ID.match(call_id):
        return None
    return directory / f"{call_id}{SUFFIX}"


def sweep(directory: Path, retention_days: float | None, *, now: float | None = None,
          keep: frozenset[str] = frozenset()) -> int:
    """Delete recordings last written more than ``retention_days`` ago; returns how
    many. ``None`` or 0 keeps everything; ``keep`` names files still being written."""
    if not retention_days or retention_days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    deleted = 0
    try:
        entries = list(directory.glob(f"*{SUFFIX}"))
    except OSError as exc:
        log.warning("recordings: cannot list %s: %s", directory, exc)
        return 0
    for path in entries:
        if path.name in keep:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("recordings: cannot delete %s: %s", path.name, exc)
    if deleted:
        log.info("recordings: deleted %d older than %g days", deleted, retention_days)
    return deleted
