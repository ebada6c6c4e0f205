"""Orchestration: corpus registry, manifests, per-video stage runner and the command line."""
