"""Thin stage entry points: read params and the manifest, build per-video tasks, hand them to the runner.

Each per-corpus stage is a module here with `run(corpus_name, client)`; the CLI finds it by name.
"""
PER_CORPUS_STAGES = ("resample", "track", "align", "crop")
