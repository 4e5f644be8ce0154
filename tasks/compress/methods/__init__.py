"""The compression methods, plain torch functions over a causal LM, listed in one table."""
