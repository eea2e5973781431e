"""What the metrics cost one webhook delivery on the web tier, as the web server's processes
count them (multiprocess files) and as a single process does (in memory).

    .venv/bin/python bench/metrics_cost.py

A delivery answered by the web tier costs one `ingest_answered` (a counter and a latency
histogram) and one `webhook_records` per bound collection; the writer's batch histogram is
counted once per batch, in the writer. Each is timed alone, best of 5 runs of 100,000 calls,
in a child process per mode (prometheus_client picks its mode when the metrics are made).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALLS = 100_000

MEASURE = f"""
import timeit
from hookstream_ui.observability import metrics
outcomes = {{"col_1": {{"result": "inserted"}}, "col_2": {{"result": "updated"}}}}
for name, call in [
    ("ingest_answered", lambda: metrics.ingest_answered("applied", 200, 0.004)),
    ("webhook_records (2 collections)", lambda: metrics.webhook_records(outcomes)),
    ("writer_batch", lambda: metrics.writer_batch(16)),
]:
    call()
    best = min(timeit.repeat(call, number={CALLS}, repeat=5)) / {CALLS}
    print(f"  {{name}}: {{best * 1e6:.2f}} us")
"""


def main() -> None:
    for mode in ("multiprocess", "in memory"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory() as folder:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = folder
            print(mode)
            subprocess.run([sys.executable, "-c", MEASURE], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
