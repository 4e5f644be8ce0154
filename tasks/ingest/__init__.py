"""Ingest stage: source files into validated documents in the lake; bad rows into quarantine."""
