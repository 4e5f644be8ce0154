"""Serving: the Ray Serve application, its request log and its metrics."""
