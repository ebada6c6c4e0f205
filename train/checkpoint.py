"""Atomic checkpoint writing and the resume rule (only a state from the same config and shard index)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from preprocess.fileio import write_bytes_atomic


def save_atomic(obj, path: str | os.PathLike) -> None:
    """A kill mid-write must leave the previous checkpoint intact: write a temp file, then rename."""
    buffer = io.BytesIO()  # saved to a path, torch names the archive's folder after it: a random temp name
    torch.save(obj, buffer)  # would make identical checkpoints differ in bytes (and in their DVC hash)
    write_bytes_atomic(Path(path), buffer.getvalue())


def load_resumable(path: str | os.PathLike, params_hash: str, index_sha256: str) -> tuple[dict | None, str]:
    """-> (state or None, why). A state written under other params or another shard index is ignored."""
    path = Path(path)
    if not path.exists():
        return None, "no checkpoint, starting fresh"
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    if state.get("params_hash") != params_hash or state.get("shard_index_sha256") != index_sha256:
        return None, (f"checkpoint {path} is from other params or shards "
                      f"({state.get('params_hash')}, index {str(state.get('shard_index_sha256'))[:12]}), starting fresh")
    return state, f"resuming from {path} after epoch {state['epoch']}"
