"""Monitoring stage: drift of the served traffic against a reference (Evidently, Great
Expectations), and the retraining event.
"""
