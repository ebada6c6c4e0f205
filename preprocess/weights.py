"""Finding model weight files: a local path from params.yaml, else the torch hub cache face-alignment uses."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.params import project_path

# The files face-alignment itself downloads, by the names it gives them in the torch hub cache.
RETINAFACE_FILE = "retinaface_mobilenet0.25.pth"
RETINAFACE_URL = "https://www.adrianbulat.com/downloads/python-fan/retinaface_mobilenet0.25.pth"
FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
FAN_FILE = FAN_URL.rsplit("/", 1)[1]


def weights_identity(path: Path | str | None) -> str | None:
    """Name and size of a weight file: enough to notice a different model without hashing it each run."""
    if path is None:
        return None
    path = Path(path)
    return f"{path.name}:{path.stat().st_size}"


def hub_checkpoint(filename: str) -> Path:
    """Where face-alignment (and torch.hub) keep downloaded weights: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def resolve_weights(configured: str | None, filename: str, url: str | None = None, what: str = "weights",
                    key: str = "", hint: str = "") -> Path:
    """The weight file to load: `configured` (relative paths from the project root) or the hub cache.

    With no configured path and no cached file, try the library's usual download (works with internet);
    when that fails too, raise FileNotFoundError naming the file and where to put it.
    """
    if configured:
        path = project_path(str(configured))
        if not path.is_file():
            raise FileNotFoundError(f"{what} file {path} (params.yaml weights.{key}) does not exist; "
                                    f"put {filename} there or point weights.{key} at it")
        return path
    cached = hub_checkpoint(filename)
    if cached.is_file():
        return cached
    if url is not None:
        try:
            from face_alignment.utils import load_file_from_url

            return Path(load_file_from_url(url, model_dir=str(cached.parent), progress=False))
        except Exception:  # offline or refused: fall through to the plain-words error
            pass
    source = f" (download: {url})" if url else ""
    raise FileNotFoundError(f"{what} file {filename} not found: put it at {cached} (the torch hub cache, "
                            f"$TORCH_HOME/hub/checkpoints) or set weights.{key} in params.yaml to its path"
                            f"{source}{hint}")
