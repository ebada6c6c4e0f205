"""Training code: shard loading, augmentation, the pretraining loop, checkpoints and retrieval metrics."""
import os

# MKL (torch's CPU BLAS) may otherwise pick its code path and thread count at run time, which lets the
# sums of two runs of the same steps differ in the last bit: a resumed run would not reproduce an uninterrupted
# one (one CI run saw it in tests/test_pretrain.py's kill test). Set before torch loads MKL; a user's own
# setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
