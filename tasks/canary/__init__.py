"""Canary stage: a stepwise weighted rollout on the serving app, judged from the request log;
promote or roll back.
"""
