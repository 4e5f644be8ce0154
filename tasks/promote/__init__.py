"""Promotion stage: registration with lineage, the held-out comparison, aliases and their history,
the run summary.
"""
