"""The architecture as a test: layers import only downwards, and each DVC stage's code is found from its name.

Layers, bottom up: `models/` (networks) and `preprocess/` (per-video media steps, the A/V contract, the shard
format, the params loader) import nothing of the project above them, nor each other; `train/` imports those two;
`pipeline/` (registry, runner, CLI) sits on top and nothing imports it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "models": {"models"},
    "preprocess": {"preprocess"},
    "train": {"train", "models", "preprocess"},
    "pipeline": {"pipeline", "train", "models", "preprocess"},
}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages a module imports (absolute imports; the project uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            found.add((node.module or "").split(".")[0])
    return found & set(ALLOWED)


def upward_imports(root: Path = REPO) -> list[str]:
    bad = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((root / layer).rglob("*.py")):
            for target in sorted(project_imports(path) - allowed):
                bad.append(f"{path.relative_to(root)} imports {target}")
    return bad


def test_layers_import_only_downwards():
    assert upward_imports() == []


def test_the_check_catches_an_upward_import(tmp_path):
    (tmp_path / "preprocess").mkdir()  # a tree of its own: the check never writes into the source tree
    (tmp_path / "preprocess" / "probe.py").write_text("from pipeline.corpora import load_params\n")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "fine.py").write_text("from preprocess import paths\nimport models.video\n")
    assert upward_imports(tmp_path) == ["preprocess/probe.py imports pipeline"]


def test_each_stage_is_found_from_its_name():
    """`python -m pipeline stage X` runs preprocess/X/stage.py; the training stages name their module."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        cmd = (stage.get("do") or stage)["cmd"]
        if "pipeline stage " in cmd:
            assert cmd.split()[4] == name and (REPO / "preprocess" / name / "stage.py").is_file(), name
        elif name == "demo":
            assert (REPO / "preprocess" / "demo" / "stage.py").is_file()
        elif "train.launch" in cmd or "-m train." in cmd:
            module = cmd.split("-m ")[1].split()[0]
            module = cmd.split("train.launch ")[1].split()[0] if module == "train.launch" else module
            assert (REPO / Path(*module.split("."))).with_suffix(".py").is_file(), (name, module)


def test_no_module_shadows_the_standard_library_or_repeats_a_name():
    import sys

    names = {}
    for layer in ALLOWED:
        for path in (REPO / layer).rglob("*.py"):
            if path.name in ("__init__.py", "__main__.py", "stage.py"):  # stage.py: the one per-stage convention
                continue
            assert path.stem not in sys.stdlib_module_names, f"{path.relative_to(REPO)} shadows the standard library"
            names.setdefault(path.stem, []).append(str(path.relative_to(REPO)))
    repeated = {k: v for k, v in names.items() if len(v) > 1}
    assert not repeated, repeated
