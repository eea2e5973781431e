"""sync_frequency: `continuous`, or an interval such as `15m`, `4h`, `24h`, `30s`, `7d`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

CONTINUOUS_PAUSE = timedelta(seconds=5)
INTERVAL = re.compile(r"^(\d{1,5})([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MIN_INTERVAL = timedelta(seconds=30)


def parse_frequency(value: str) -> timedelta:
    """The pause between runs; ValueError with a message for the API and forms."""
    if value == "continuous":
        return CONTINUOUS_PAUSE
    match = INTERVAL.match(value or "")
    if not match:
        raise ValueError("must be continuous or an interval like 15m, 1h, 4h or 24h")
    delta = timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    if delta < MIN_INTERVAL:
        raise ValueError("must be at least 30s")
    return delta


def next_run_after(frequency: str, finished: datetime) -> datetime:
    return finished + parse_frequency(frequency)
