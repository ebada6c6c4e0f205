"""The audio-visual contract every stage, loader and tool shares: rates, splits and the shard sample's layout.

One place, so a change (say, colour crops or another frame rate) is made once and seen everywhere.
"""
from __future__ import annotations

import numpy as np

FPS = 25  # every video after the resample stage
SAMPLE_RATE = 16000  # mono audio after the resample stage
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: audio and video stay locked frame by frame
CROP_SIZE = 96  # mouth crops, px

SPLITS = ("train", "val", "test")  # in the order shards are written and reported

# The fields of one shard sample, in the order they are written, with the dtype each array holds.
SAMPLE_FIELDS = ("video.npy", "audio.npy", "landmarks.npy", "json")
FIELD_DTYPES = {
    "video.npy": np.uint8,  # (T, 96, 96) grayscale, or (T, 96, 96, 3) with align.color
    "audio.npy": np.float32,  # (T, 640) in [-1, 1]
    "landmarks.npy": np.float32,  # (T, 68, 2) in crop pixels
}
KEY_SEPARATOR = "__"  # <corpus>__<video_id>__<segment>; corpus names may not contain it


def sample_key(corpus: str, video_id: str, segment: int) -> str:
    """`<corpus>__<video_id>__<segment>`, the segment zero-padded to 4 digits (sorts as it counts)."""
    return f"{corpus}{KEY_SEPARATOR}{video_id}{KEY_SEPARATOR}{segment:04d}"


def split_order(split: str) -> tuple[int, str]:
    """Sort key: train, val, test, then anything else by name."""
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)
