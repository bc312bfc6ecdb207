"""Admin password hashes: scrypt from the standard library, in one self-describing string.

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. The parameters travel with the
hash so they can be raised later without breaking existing settings. Only the hash is
ever configured (``ADMIN_PASSWORD_HASH``); ``agentplatform hash-password`` makes one.

A check costs ~50 ms of CPU and 16 MiB by design, so the server never runs one on the
event loop: ``verify_password_async`` runs it on a pool of its own (two threads), so
a flood of sign-ins queues there instead of taking the default pool's threads that
the database reads and call admissions wait on. The CLI hashes synchronously.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor

SCHEME = "scrypt"
# n=2**14, r=8 costs ~16 MiB and ~50 ms per check: slow for guessing, fine for a login.
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32
_MAXMEM = 64 * 1024 * 1024
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="password-check")


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """A new salted hash of ``password``; raises ValueError for an empty password."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                            dklen=_DKLEN, maxmem=_MAXMEM)
    return f"{SCHEME}${n}${r}${p}${_b64e(salt)}${_b64e(digest)}"


def check_hash_format(encoded: str) -> None:
    """Raise ValueError saying what is wrong with a configured hash (checked at start)."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("ADMIN_PASSWORD_HASH must look like scrypt$n$r$p$salt$hash; "
                         "make one with `agentplatform hash-password`")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        base64.b64decode(parts[4], validate=True)
        base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise ValueError(f"ADMIN_PASSWORD_HASH is damaged: {exc}") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        raise ValueError("ADMIN_PASSWORD_HASH has impossible scrypt parameters")


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; a malformed hash never matches."""
    try:
        check_hash_format(encoded)
    except ValueError:
        return False
    _, n, r, p, salt, expected = encoded.split("$")
    digest = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                            n=int(n), r=int(r), p=int(p), dklen=_DKLEN, maxmem=_MAXMEM)
    return hmac.compare_digest(digest, base64.b64decode(expected))


async def verify_password_async(password: str, encoded: str) -> bool:
    """``verify_password`` on the password pool: the event loop only waits."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, verify_password, password, encoded)
