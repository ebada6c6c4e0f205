"""The code deps of every dvc.yaml stage, derived from what its command runs. Regenerate after changing imports:

    python -m pipeline.stagedeps            # rewrite the code deps in dvc.yaml (data and params deps, comments kept)
    python -m pipeline.stagedeps --check    # exit 1 naming each stage whose deps miss a file it runs

A stage runs the project modules its command names (`python -m pipeline ...`, `train.launch train.pretrain`), and
what they import, read with `ast`: module-level imports, and the imports inside a function once that function is
reached (called or referenced from reached code; a class counts as reached with its module). Two rules keep
one command from pulling in its siblings' code: a CLI branch `if args.command == "x"` (or `args.action`) is
followed only when the command has the word x, and `importlib.import_module(f"preprocess.{name}.stage")` is
resolved with the command's words. Hand-kept deps drift; these cannot, since a test holds dvc.yaml to them.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml.comments import CommentedSeq

PACKAGES = ("pipeline", "preprocess", "models", "train")  # the project's code: deps under these are generated
DISPATCH_ATTRS = ("command", "action")  # argparse subcommand dests: `if args.command == "x"` branches


@dataclass
class Module:
    name: str
    path: Path
    body: list = field(default_factory=list)  # module-level statements (classes included)
    functions: dict = field(default_factory=dict)  # top-level function name -> its node
    bindings: dict = field(default_factory=dict)  # module-level name -> (module, attribute or None)

    @property
    def package(self) -> str:
        """What its relative imports are relative to."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


class Project:
    """The project's modules under `root`, parsed on first use."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._modules: dict[str, Module | None] = {}

    def path_of(self, name: str) -> Path | None:
        if name.split(".")[0] not in PACKAGES:
            return None
        base = self.root.joinpath(*name.split("."))
        for path in (base / "__init__.py", base.with_suffix(".py")):
            if path.is_file():
                return path
        return None

    def module(self, name: str) -> Module | None:
        if name not in self._modules:
            path = self.path_of(name)
            self._modules[name] = None if path is None else self._parse(name, path)
        return self._modules[name]

    def _parse(self, name: str, path: Path) -> Module:
        tree = ast.parse(path.read_text(), str(path))
        module = Module(name, path)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                module.functions[node.name] = node
                module.body += node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]
            else:
                module.body.append(node)
        module.bindings = imports_bound(module.body, module.package)
        return module

    def all_modules(self, pattern: str) -> list[str]:
        """Project modules whose dotted name matches the glob `pattern`."""
        found = []
        for package in PACKAGES:
            for path in sorted((self.root / package).rglob("*.py")):
                parts = path.relative_to(self.root).with_suffix("").parts
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                if fnmatch.fnmatchcase(name, pattern):
                    found.append(name)
        return found


def imports_bound(nodes, package: str) -> dict[str, tuple[str, str | None]]:
    """name -> (module, attribute or None) for the import statements among `nodes` (nested ones included)."""
    bound = {}
    for node in walk(nodes):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = (alias.name, None)
                else:
                    bound[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
        elif isinstance(node, ast.ImportFrom):
            source = absolute(node, package)
            for alias in node.names:
                bound[alias.asname or alias.name] = (source, alias.name)
    return bound


def absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")[:len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def walk(nodes):
    for node in nodes:
        yield from ast.walk(node)


class Closure:
    """The project files a command runs."""

    def __init__(self, project: Project, words: set[str]):
        self.project, self.words = project, words
        self.modules: set[str] = set()
        self.functions: set[tuple[str, str]] = set()
        self._queue: list = []

    def files(self) -> set[str]:
        while self._queue:
            module, nodes, local = self._queue.pop()
            self._scan(module, nodes, local)
        return {self.project.module(m).path.relative_to(self.project.root).as_posix() for m in self.modules}

    def add_module(self, name: str, whole: bool = False) -> None:
        """Import `name`: its packages' __init__ and its module-level code run (`whole`: every function too)."""
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            module = self.project.module(prefix)
            if module is not None and prefix not in self.modules:
                self.modules.add(prefix)
                self._queue.append((module, module.body, {}))
        module = self.project.module(name)
        if whole and module is not None:
            for function in module.functions:
                self.add_function(module, function)

    def add_function(self, module: Module, name: str) -> None:
        if (module.name, name) not in self.functions:
            self.functions.add((module.name, name))
            node = module.functions[name]
            self._queue.append((module, node.body, imports_bound(node.body, module.package)))

    def reach(self, module_name: str, attr: str | None, depth: int = 0) -> None:
        """Code refers to `module_name`.`attr`: a submodule, a function, or a name that module imported."""
        if attr is not None and self.project.module(f"{module_name}.{attr}") is not None:
            return self.add_module(f"{module_name}.{attr}")
        module = self.project.module(module_name)
        if module is None:
            return None
        self.add_module(module_name)
        if attr in module.functions:
            self.add_function(module, attr)
        elif attr in module.bindings and depth < 20:  # a re-export: follow it to where it is defined
            self.reach(*module.bindings[attr], depth + 1)
        return None

    def _scan(self, module: Module, nodes: list, local: dict) -> None:
        for node in self._followed(nodes):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.add_module(alias.name)
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    self.reach(absolute(node, module.package), alias.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self._name(module, local, node.id, ())
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                chain = attribute_chain(node)
                if chain:
                    self._name(module, local, chain[0], chain[1:])
            elif isinstance(node, ast.Call) and attribute_chain(node.func) == ["importlib", "import_module"]:
                self._dynamic_import(node)

    def _followed(self, nodes):
        """The nodes under `nodes`, less the CLI branches for subcommands this command does not name."""
        stack = list(reversed(nodes))
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, ast.If) and (self._other_subcommand(node.test) or type_checking(node.test)):
                children = [node.test, *node.orelse]
            else:
                children = list(ast.iter_child_nodes(node))
            stack.extend(reversed(children))

    def _other_subcommand(self, test) -> bool:
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return False
        left, right = test.left, test.comparators[0]
        return (isinstance(left, ast.Attribute) and left.attr in DISPATCH_ATTRS and isinstance(left.value, ast.Name)
                and left.value.id == "args" and isinstance(right, ast.Constant) and isinstance(right.value, str)
                and right.value not in self.words)

    def _name(self, module: Module, local: dict, name: str, attrs) -> None:
        if name in local or name in module.bindings:
            source, attr = local.get(name) or module.bindings[name]
            target = source  # `a.b.f` after `import a.b`: walk down the submodules, then the attribute
            for part in ([attr] if attr is not None else []) + list(attrs):
                if self.project.module(f"{target}.{part}") is None:
                    return self.reach(target, part)
                target = f"{target}.{part}"
            self.add_module(target)
        elif name in module.functions:
            self.add_function(module, name)
        return None

    def _dynamic_import(self, call: ast.Call) -> None:
        if not call.args or not isinstance(call.args[0], ast.JoinedStr):
            return  # a name from argv (train.launch): the command's words name those modules
        pattern = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in call.args[0].values)
        matches = self.project.all_modules(pattern)
        named = [m for m in matches if set(m.split(".")) - set(pattern.split(".")) <= self.words]
        for name in named or matches:  # the command names one (stage NAME): that one; else every match
            self.add_module(name, whole=True)  # its functions are called through the module object


def type_checking(test) -> bool:
    """`if TYPE_CHECKING:`: imports for annotations only, never run."""
    return attribute_chain(test) in (["TYPE_CHECKING"], ["typing", "TYPE_CHECKING"])


def attribute_chain(node) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def command_files(project: Project, cmd: str) -> set[str]:
    """Project files a stage's command runs: every module it names (`-m X`, or an argument naming one)."""
    words = [w for w in shlex.split(cmd.replace("&&", " ")) if not w.startswith("-")]
    closure = Closure(project, set(words))
    for word in words:
        if project.module(word) is not None:
            closure.add_module(word)
            closure.add_module(f"{word}.__main__")  # `python -m package` runs its __main__
    return closure.files()


def folded(project: Project, files: set[str]) -> list[str]:
    """`files` with each folder whose every module is among them written as the folder (shorter deps, and a
    module added there later is covered before the next regeneration)."""
    out = set(files)
    folders = sorted({p.parent for f in files for p in [Path(f)] if p.parent != Path(".")},
                     key=lambda p: -len(p.parts))
    for folder in folders:  # deepest first, so a folder folds its folded subfolders
        modules = {p.relative_to(project.root).as_posix() for p in (project.root / folder).rglob("*.py")
                   if "__pycache__" not in p.parts}
        inside = {f for f in out if f.startswith(folder.as_posix() + "/")}
        if modules and {m for m in modules} <= {f for f in files}:
            out = (out - inside) | {folder.as_posix()}
    return sorted(out)


def is_code(dep: str) -> bool:
    return dep.split("/")[0] in PACKAGES


def stage_bodies(dvc: dict):
    """(name, the mapping holding cmd and deps) per stage; foreach stages hold theirs under `do`."""
    for name, stage in dvc["stages"].items():
        yield name, stage.get("do", stage)


def covered(files: set[str], deps) -> set[str]:
    """The files not under any of `deps` (a file or a folder)."""
    declared = [str(d).rstrip("/") for d in deps]
    return {f for f in files if not any(f == d or f.startswith(d + "/") for d in declared)}


def missing(root: Path, dvc: dict) -> dict[str, list[str]]:
    """{stage: project files its command runs that its deps do not cover}."""
    project, out = Project(root), {}
    for name, body in stage_bodies(dvc):
        left = covered(command_files(project, body["cmd"]), body.get("deps") or [])
        if left:
            out[name] = sorted(left)
    return out


def regenerate(root: Path, dvc: dict) -> dict[str, tuple[int, int]]:
    """Rewrite every stage's code deps in `dvc` (a ruamel round-trip mapping) in place; data deps keep their
    place and comments. Returns {stage: (code deps before, after)}."""
    project, counts = Project(root), {}
    for name, body in stage_bodies(dvc):
        deps = body.setdefault("deps", CommentedSeq())
        files = folded(project, command_files(project, body["cmd"]))
        before = sum(is_code(str(d)) for d in deps)
        for i in reversed(range(len(deps))):
            if is_code(str(deps[i])):
                del deps[i]
        deps.extend(files)
        counts[name] = (before, len(files))
    return counts


def main(argv=None) -> int:
    from pipeline.corpora import yaml_roundtrip

    parser = argparse.ArgumentParser(prog="python -m pipeline.stagedeps", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project (default: here)")
    parser.add_argument("--check", action="store_true", help="only check: exit 1 when a stage misses a file")
    args = parser.parse_args(argv)
    dvc_path = args.root / "dvc.yaml"
    if not dvc_path.is_file():
        parser.error(f"no dvc.yaml in {args.root}: run it in the project folder")
    yaml = yaml_roundtrip()
    yaml.width = 120  # dvc.yaml's line length: folded commands keep their line breaks
    dvc = yaml.load(dvc_path)
    if args.check:
        gaps = missing(args.root, dvc)
        for name, files in gaps.items():
            print(f"{name}: runs {', '.join(files)}, not among its deps (python -m pipeline.stagedeps)")
        return 1 if gaps else 0
    for name, (before, after) in regenerate(args.root, dvc).items():
        print(f"{name}: {after} code files (was {before} code deps)")
    with dvc_path.open("w") as f:
        yaml.dump(dvc, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
