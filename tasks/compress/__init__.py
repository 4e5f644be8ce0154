"""Compression stage: candidates from a fine-tuned model (int8, half, pruning, low-rank,
distillation), measured the same way and gated.
"""
