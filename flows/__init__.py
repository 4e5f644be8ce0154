"""Prefect flows: recipes of tasks, one per stage, and the nightly pipeline that chains them."""
