"""Adapters to external systems, each built from `Settings` when asked for, never at import."""
