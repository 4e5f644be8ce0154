"""Shared by every stage: settings, the document lake, manifests and model files, usage."""
