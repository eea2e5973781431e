"""Rate limits shared by every worker through Redis: a sync's `rate_limit`, for all its runs and tests.

`allowed_requests` per `interval` seconds is a fixed window counter; a caller over the
limit sleeps until the next window. `max_concurrent_requests` (0 = unlimited) is a
counting semaphore with a TTL, so a killed worker cannot hold a slot forever.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..extensions import get_redis


class RateLimiter:
    def __init__(
        self,
        name: str,
        allowed: int | None,
        interval: float | None,
        max_concurrent: int = 0,
        budget: str | None = None,
    ):
        self.name = name
        # Whose budget at the provider this is (a credential: GitHub's is per token), so that
        # when it is spent every read using it waits for it, not only the one that spent it.
        self.budget_key = f"hookstream:rl:spent:{budget or name}"
        self.allowed = allowed if allowed and allowed > 0 else None
        self.interval = interval if interval and interval > 0 else 1.0
        self.max_concurrent = max_concurrent or 0
        self.redis = get_redis()

    def wait(self) -> None:
        """Block until one more request fits in the window."""
        if self.allowed is None:
            return
        while True:
            window = int(time.time() // self.interval)
            key = f"hookstream:rl:{self.name}:{window}"
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, int(self.interval) + 2)
            count, _ = pipe.execute()
            if count <= self.allowed:
                return
            time.sleep(max(0.01, (window + 1) * self.interval - time.time()))

    def spent_until(self, epoch: float) -> None:
        """The provider said its budget is spent until `epoch` (seconds)."""
        left = epoch - time.time()
        if left > 0:
            self.redis.set(self.budget_key, repr(epoch), px=int(left * 1000) + 1)

    def budget_back_at(self) -> float:
        """When a budget some read found spent comes back; 0 when none is."""
        value = self.redis.get(self.budget_key)
        try:
            return float(value) if value else 0.0
        except ValueError:
            return 0.0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self.max_concurrent:
            yield
            return
        key = f"hookstream:rl:{self.name}:inflight"
        while True:
            count = self.redis.incr(key)
            self.redis.expire(key, 60)
            if count <= self.max_concurrent:
                break
            self.redis.decr(key)
            time.sleep(0.05)
        try:
            yield
        finally:
            self.redis.decr(key)

    def __call__(self) -> None:
        self.wait()
