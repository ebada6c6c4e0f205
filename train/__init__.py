"""Training code: shard loading, augmentation, the pretraining loop, checkpoints and retrieval metrics."""
