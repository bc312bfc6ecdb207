"""Spend-control counters in Redis (``REDIS_URL``), for fleets where the database
should not take a write per slot check.

Each scope is a sorted set of holders scored by lease expiry; each check is one Lua
script, so it is atomic in Redis. Expiry is judged by the Redis server's clock
(``TIME``), so servers with skewed clocks still agree on who holds a slot.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from agentplatform.errors import PlatformError

PREFIX = "agentplatform:"
DAY_KEY_SECONDS = 2 * 86_400  # a day's counter outlives its day, then goes

# KEYS: scope set, holder→scope hash.  ARGV: holder, limit, ttl (ms), scope name.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expires = now + tonumber(ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
redis.call('HSET', KEYS[2], ARGV[4], 1)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) * 2)
return 1
"""

# KEYS: scope sets. ARGV: ttl (ms), then one holder per key.
_RENEW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[1])
local renewed = 0
for i, key in ipairs(KEYS) do
  renewed = renewed + redis.call('ZADD', key, 'XX', 'CH', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl * 2)
end
return renewed
"""

# KEYS: scope set. Live members only.
_ACTIVE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZCOUNT', KEYS[1], now, '+inf')
"""

# KEYS: counter. ARGV: limit, key ttl (s).
_COUNT_IF_BELOW = """
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


class RedisLimitStore:
    """``LimitStore`` over one Redis server."""

    def __init__(self, url: str, *, prefix: str = PREFIX) -> None:
        try:
            self._redis = redis.Redis.from_url(url, socket_timeout=2.0,
                                               socket_connect_timeout=2.0)
        except ValueError as exc:
            raise PlatformError(f"REDIS_URL is not a Redis URL: {exc}") from exc
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._active = self._redis.register_script(_ACTIVE)
        self._count_if_below = self._redis.register_script(_COUNT_IF_BELOW)

    def _scope_key(self, scope: str) -> str:
        return f"{self._prefix}slots:{scope}"

    def _holder_key(self, holder: str) -> str:
        return f"{self._prefix}holder:{holder}"

    def _day_key(self, key: str, day: str) -> str:
        return f"{self._prefix}daily:{day}:{key}"

    def acquire(self, scope: str, holder: str, limit: int, ttl: float) -> bool:
        keys = [self._scope_key(scope), self._holder_key(holder)]
        return bool(self._acquire(keys=keys, args=[holder, limit, int(ttl * 1000), scope]))

    def renew(self, leases: Iterable[tuple[str, str]], ttl: float) -> int:
        leases = list(leases)
        if not leases:
            return 0
        keys = [self._scope_key(scope) for scope, _ in leases]
        args = [int(ttl * 1000), *(holder for _, holder in leases)]
        # ZADD XX CH counts changed scores; a renewal in the same millisecond changes
        # nothing, so "renewed" is a lower bound — good enough for a log line.
        return int(self._renew(keys=keys, args=args))

    def release(self, scope: str, holder: str) -> None:
        pipe = self._redis.pipeline()
        pipe.zrem(self._scope_key(scope), holder)
        pipe.hdel(self._holder_key(holder), scope)
        pipe.execute()

    def release_holder(self, holder: str) -> None:
        scopes = [s.decode() for s in self._redis.hkeys(self._holder_key(holder))]
        pipe = self._redis.pipeline()
        for scope in scopes:
            pipe.zrem(self._scope_key(scope), holder)
        pipe.delete(self._holder_key(holder))
        pipe.execute()

    def active(self, scope: str) -> int:
        return int(self._active(keys=[self._scope_key(scope)]))

    def count_if_below(self, key: str, day: str, limit: int) -> bool:
        return bool(self._count_if_below(keys=[self._day_key(key, day)],
                                         args=[limit, DAY_KEY_SECONDS]))

    def count(self, key: str, day: str) -> int:
        value = self._redis.get(self._day_key(key, day))
        return int(value) if value is not None else 0

    def close(self) -> None:
        self._redis.close()
