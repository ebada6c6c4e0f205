"""Every dvc.yaml stage lists the project files its command runs (pipeline/stagedeps.py), so a code change
always makes the stages that run it stale."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

from pipeline import stagedeps
from pipeline.corpora import yaml_roundtrip

REPO = Path(__file__).resolve().parents[1]
REGENERATE = "regenerate with: python -m pipeline.stagedeps"


def load(root: Path):
    return yaml_roundtrip().load(root / "dvc.yaml")


def project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for package in stagedeps.PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    return root


def plant(path: Path, line: str, function: str | None = None) -> None:
    """Add `line` at the top of `path` (after its imports' first line), or first in the body of `function`."""
    text = path.read_text().splitlines(keepends=True)
    if function is None:
        at, indent = next(i for i, t in enumerate(text) if t.startswith(("import ", "from "))) + 1, ""
    else:
        node = next(n for n in ast.parse("".join(text)).body if getattr(n, "name", None) == function)
        first = node.body[0]
        at = (first.lineno - 1) if not isinstance(first, ast.Expr) else first.end_lineno  # after a docstring
        indent = " " * node.body[-1].col_offset
    text.insert(at, f"{indent}{line}\n")
    path.write_text("".join(text))


def test_every_stage_lists_the_code_it_runs():
    assert stagedeps.missing(REPO, load(REPO)) == {}, REGENERATE


def test_dvc_yaml_is_what_the_generator_writes(tmp_path):
    """No stale extra deps either (a file a stage stopped importing), and a second run changes nothing."""
    root = project_copy(tmp_path)
    assert stagedeps.main(["--root", str(root)]) == 0
    assert (root / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text(), REGENERATE
    assert stagedeps.main(["--root", str(root)]) == 0
    assert (root / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text()


def test_an_undeclared_import_is_caught_and_regenerating_declares_it(tmp_path, capsys):
    root = project_copy(tmp_path)
    # one lazy import inside a function the resample stage runs, one at module level of the report's code
    plant(root / "preprocess" / "resample" / "stage.py", "from preprocess.crop import pack  # noqa: F401", "work")
    plant(root / "train" / "report.py", "import models.detector  # noqa: F401")
    gaps = stagedeps.missing(root, load(root))
    assert "preprocess/crop/pack.py" in gaps["resample"], gaps
    assert "track" not in gaps  # it imports the resample stage's module, but never calls its work
    assert "models/detector.py" in gaps["report"]
    assert stagedeps.main(["--root", str(root), "--check"]) == 1
    assert "resample: runs " in capsys.readouterr().out

    assert stagedeps.main(["--root", str(root)]) == 0
    assert stagedeps.missing(root, load(root)) == {}
    assert stagedeps.main(["--root", str(root), "--check"]) == 0


def test_a_function_nothing_calls_adds_nothing(tmp_path):
    """Precision: a lazy import only counts where the command can reach it."""
    root = project_copy(tmp_path)
    plant(root / "preprocess" / "resample" / "convert.py", "def _unused():\n    from preprocess.crop import pack")
    assert stagedeps.missing(root, load(root)) == {}


def test_a_cli_command_runs_only_its_own_branch():
    """`python -m pipeline stage resample` does not run the `corpus` or `status` subcommands' code, and runs the
    resample stage's module, not the other stages'."""
    files = stagedeps.command_files(stagedeps.Project(REPO), "python -m pipeline stage resample ${key}")
    assert {"pipeline/cli.py", "pipeline/stages.py", "preprocess/resample/stage.py"} <= files
    assert not {"pipeline/registry.py", "pipeline/status.py", "preprocess/crop/stage.py"} & files
