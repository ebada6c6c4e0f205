"""Per-video media steps: resample, track, align, crop. Pure functions of files and params."""
