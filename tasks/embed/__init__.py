"""Embed stage: a snapshot's documents as token chunks and vectors in Milvus, through Feast; search
over them.
"""
