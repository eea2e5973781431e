"""Service functions: the one place where views, the API and the CLI change data."""
