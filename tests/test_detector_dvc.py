"""The detector's DVC stages: lomo@METHOD exists once per method in params, none for an empty list (DVC makes
no stage from an empty foreach, and says nothing), and the report stage waits for every one of them."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO
from ruamel.yaml import YAML

pytestmark = pytest.mark.slow  # dvc builds the DAG of the whole pipeline


def dvc(*args, cwd) -> str:
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def set_methods(root, methods) -> None:
    yaml = YAML()
    params = yaml.load((root / "params.yaml").read_text())
    params["protocol"]["table2"]["methods"] = methods
    with open(root / "params.yaml", "w") as f:
        yaml.dump(params, f)


def test_lomo_stages_follow_the_methods_in_params(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    dvc("init", "--no-scm", "-q", cwd=tmp_path)
    set_methods(tmp_path, [])
    stages = dvc("stage", "list", "--name-only", cwd=tmp_path).split()
    assert {"finetune", "evaluate", "report"} <= set(stages) and not any(s.startswith("lomo") for s in stages)
    set_methods(tmp_path, ["Deepfakes", "FaceSwap"])
    stages = dvc("stage", "list", "--name-only", cwd=tmp_path).split()
    assert [s for s in stages if s.startswith("lomo")] == ["lomo@Deepfakes", "lomo@FaceSwap"]
    upstream = dvc("dag", "--dot", "report", cwd=tmp_path)
    assert "lomo@Deepfakes" in upstream and "lomo@FaceSwap" in upstream and "evaluate" in upstream
