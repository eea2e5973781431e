"""Plain values shared by every layer: times, documents, JSONPaths, records as sources send them.

Nothing here imports from the rest of hookstream_ui (import-linter holds it to that), so a
source type, a service and a view can all use these without pulling in one another.
"""
