"""Finding model weight files, in one order for every model:

1. the path in params.yaml (`weights.KEY`; relative paths from the project root),
2. the folder named by $AVLIPS_WEIGHTS (the file by its usual name, directly in it),
3. the framework's cache (torch hub: $TORCH_HOME/hub/checkpoints/),
4. a download into that cache, when a URL is known and the machine is online;
otherwise one plain-words error naming the file, where it comes from and where to put it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from preprocess.paths import project_path

WEIGHTS_ENV = "AVLIPS_WEIGHTS"  # a folder of weight files for offline machines and clusters
# The files face-alignment itself downloads, by the names it gives them in the torch hub cache.
RETINAFACE_FILE = "retinaface_mobilenet0.25.pth"
RETINAFACE_URL = "https://www.adrianbulat.com/downloads/python-fan/retinaface_mobilenet0.25.pth"
FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
FAN_FILE = FAN_URL.rsplit("/", 1)[1]


@dataclass(frozen=True)
class WeightsParams:
    """params.yaml `weights:`: local weight files; None: looked up by file name (the order above)."""
    retinaface: str | None = None  # retinaface_mobilenet0.25.pth, for track.detector retinaface
    fan: str | None = None  # 2DFAN4-11f355bf06.pth.tar, for align.backend fan
    syncnet: str | None = None  # syncnet_v2.model; None: the weights-free audio-visual score decides


def weights_identity(path: Path | str | None) -> str | None:
    """Name and size of a weight file: enough to notice a different model without hashing it each run."""
    if path is None:
        return None
    path = Path(path)
    return f"{path.name}:{path.stat().st_size}"


def weights_folder() -> Path | None:
    """$AVLIPS_WEIGHTS, when set."""
    folder = os.environ.get(WEIGHTS_ENV)
    return Path(folder).expanduser() if folder else None


def hub_checkpoint(filename: str) -> Path:
    """Where face-alignment (and torch.hub) keep downloaded weights: $TORCH_HOME/hub/checkpoints/."""
    import torch  # only when a weight file is looked up there: the stages import this module on every run

    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def resolve_weights(configured: str | None, filename: str, url: str | None = None, what: str = "weights",
                    key: str = "", hint: str = "") -> Path:
    """The weight file to load, looked up in the module's order (params, $AVLIPS_WEIGHTS, hub cache, download).

    A path set in params is taken as meant: when it does not exist that is the error, not a reason to look
    elsewhere. Raises FileNotFoundError naming the file, its source and the places it may go.
    """
    if configured:
        path = project_path(str(configured))
        if not path.is_file():
            raise FileNotFoundError(f"{what} file {path} (params.yaml weights.{key}) does not exist; "
                                    f"put {filename} there or point weights.{key} at it")
        return path
    folder = weights_folder()
    if folder is not None and (folder / filename).is_file():
        return folder / filename
    cached = hub_checkpoint(filename)
    if cached.is_file():
        return cached
    if url is not None:
        try:
            from face_alignment.utils import load_file_from_url

            return Path(load_file_from_url(url, model_dir=str(cached.parent), progress=False))
        except Exception:  # offline or refused: fall through to the plain-words error
            pass
    source = f"download it from {url}" if url else "it does not download by itself"
    places = (f"${WEIGHTS_ENV}/{filename}" + (f" (now {folder / filename})" if folder else " (the variable is unset)"),
              f"{cached} (the torch hub cache, $TORCH_HOME/hub/checkpoints)", f"any path set as weights.{key}")
    raise FileNotFoundError(f"{what} file {filename} not found: put it at one of: {'; '.join(places)} "
                            f"({source}){hint}")
