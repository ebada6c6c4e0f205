"""Weight files are found in one order: params path, $AVLIPS_WEIGHTS, the torch hub cache; else a plain error."""
from __future__ import annotations

import pytest

from preprocess import weights


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no $AVLIPS_WEIGHTS."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def put(path, data=b"w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_order_params_then_env_then_hub(project, hub, tmp_path, monkeypatch):
    name = "model.pth"
    in_hub = put(hub / name)
    assert weights.resolve_weights(None, name) == in_hub
    in_env = put(tmp_path / "offline" / name)
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(in_env.parent))
    assert weights.resolve_weights(None, name) == in_env  # the env folder wins over the cache
    in_params = put(project / "w" / "mine.pth")
    assert weights.resolve_weights("w/mine.pth", name, key="k") == in_params  # relative to the project root


def test_missing_everywhere_names_file_source_and_places(project, hub, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "offline"))
    with pytest.raises(FileNotFoundError) as err:
        weights.resolve_weights(None, "syncnet_v2.model", None, "SyncNet weights", "syncnet")
    message = str(err.value)
    for part in ("syncnet_v2.model", "does not download", str(tmp_path / "offline" / "syncnet_v2.model"),
                 str(hub), "weights.syncnet"):
        assert part in message


def test_configured_path_that_is_missing_is_the_error(project, hub, tmp_path, monkeypatch):
    put(hub / "model.pth")  # present elsewhere, but params named a different place: say so, do not guess
    with pytest.raises(FileNotFoundError, match=r"weights\.k\) does not exist"):
        weights.resolve_weights("nowhere/model.pth", "model.pth", key="k")


def test_track_needs_no_weights_with_dlib(project, hub):
    from preprocess.track.stage import weight_files

    assert weight_files({"weights": {"retinaface": None}}, "dlib") == {"retinaface": None, "syncnet": None}
    with pytest.raises(FileNotFoundError, match="weights.retinaface"):  # RetinaFace still needs its file
        weight_files({"weights": {"retinaface": "nowhere.pth"}}, "retinaface")
