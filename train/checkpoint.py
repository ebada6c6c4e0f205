"""Atomic checkpoint writing and the resume rule (only a state written for the same inputs), shared by
pretraining and fine-tuning.

A training stage writes its state after every epoch (save_atomic: a kill mid-write leaves the previous one)
with the inputs it was trained for as top-level entries (params hash, shard index sha256s, ...);
load_resumable resumes only from a state whose entries all equal the run's. RNG states travel as tensors
and plain data, so a state loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import io
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from preprocess.fileio import write_bytes_atomic


def canonical(obj):
    """Plain data rebuilt so that its pickle depends on its value alone. The pickler writes an object it meets
    again (a string, a tuple) as a reference to the first: a history read back from a checkpoint and one built
    in this process are equal but share their key strings differently, and would pickle to other bytes.
    Strings are interned (every repeat is one object), dicts, lists and tuples rebuilt (none shared); tensors
    and other objects (a state_dict's OrderedDict, which keeps its _metadata) stay as they are."""
    kind = type(obj)
    if kind is str:
        return sys.intern(obj)
    if kind is dict:
        return {canonical(k): canonical(v) for k, v in obj.items()}
    if kind is list or kind is tuple:
        return kind(canonical(v) for v in obj)
    return obj


def save_atomic(obj, path: str | os.PathLike) -> None:
    """A kill mid-write must leave the previous checkpoint intact: write a temp file, then rename. Equal
    objects give equal bytes (canonical), so a resumed run's output has an uninterrupted run's DVC hash."""
    buffer = io.BytesIO()  # saved to a path, torch names the archive's folder after it: a random temp name
    torch.save(canonical(obj), buffer)  # would make identical checkpoints differ in bytes (and in their DVC hash)
    write_bytes_atomic(Path(path), buffer.getvalue())


def _short(value) -> str:
    return str(value)[:12]


def load_resumable(path: str | os.PathLike, inputs: dict) -> tuple[dict | None, str]:
    """-> (state or None, why). A state is resumed only when each entry of `inputs` (what the run's result
    depends on besides the code: params hash, shard index sha256, ...) equals the state's own; else it is
    ignored, and `why` names the entries that differ."""
    path = Path(path)
    if not path.exists():
        return None, "no checkpoint, starting fresh"
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    differ = [k for k, v in inputs.items() if state.get(k) != v]
    if differ:
        return None, (f"checkpoint {path} is from other inputs ("
                      + ", ".join(f"{k} {_short(state.get(k))} now {_short(inputs[k])}" for k in differ)
                      + "), starting fresh")
    return state, f"resuming from {path} after epoch {state['epoch']}"


def discard(path: str | os.PathLike) -> None:
    """The state once the stage's output is written: a finished run leaves none behind, so the state folder
    (a DVC output) is the same empty folder after an interrupted run and after an uninterrupted one."""
    Path(path).unlink(missing_ok=True)


def rng_state() -> dict:
    """The global torch (CPU and CUDA), numpy and Python generators' states, as tensors and plain data."""
    np_state = np.random.get_state(legacy=False)
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                      "gauss": float(np_state["gauss"])},
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                               "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
