"""Background work on RQ: queues, jobs, the worker and (later) the scheduler."""
