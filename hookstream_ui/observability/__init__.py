"""What an operator sees of a running hookstream: its logs (`logs`), its Prometheus metrics
(`metrics`) and the request id that ties an answer to its log lines (`requests`).

This package sits below every other one: it imports nothing of the app.
"""
