"""Models loaded once per worker process and reused for every video its stage gives it."""
from __future__ import annotations

from collections.abc import Callable, Hashable

_loaded: dict[str, tuple[Hashable, object]] = {}  # stage -> (key, model): one model kept per stage


def load_once(stage: str, key: Hashable, build: Callable[[], object], uses_torch: bool = False):
    """The model `build()` makes for `key`, built on the first video of this process and kept; a new key (other
    params or weights) replaces it. Torch gets one thread: one task runs per worker process, and processes,
    not threads, give the parallelism."""
    held = _loaded.get(stage)
    if held is None or held[0] != key:
        if uses_torch:
            import torch  # here: dlib's path never imports torch (3 s)

            torch.set_num_threads(1)
        _loaded.pop(stage, None)  # free the old model before building the new one
        _loaded[stage] = (key, build())
    return _loaded[stage][1]
