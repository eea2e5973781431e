"""Settings for hookstream's long-running processes (web workers, RQ work horses, the
ingest writer)."""

from __future__ import annotations

import gc

# Collect young objects every 10,000 allocations instead of 700: a sync batch or a group of
# deliveries keeps tens of thousands of objects alive, which every young collection walks
# again (measured on the backfill benchmark: a fifth of the collector's time left).
GC_THRESHOLD = (10_000, 10, 10)


def settle_garbage_collector() -> None:
    """Call once the app is built (and again in a forked child): what exists then lives as
    long as the process, and full collections stop walking it (about 7% of a backfill's time
    went to them before)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
