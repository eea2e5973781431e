"""Machinery that is not the domain: how writes are batched and locked, how jobs are queued.

It knows nothing of collections, records or sources beyond what it carries, so services
and the sync engine both stand on it.
"""
