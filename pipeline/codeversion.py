"""Which version of the project's code a process imports: a hash of its packages' source files.

The client and every dask worker must run the same code, or a shared cluster silently mixes versions
(a worker started from another checkout, an old editable install). The probe is built as a closure so
cloudpickle ships it by value: it runs even on a worker whose copy of the project lacks this module.
"""
from __future__ import annotations

import functools

PACKAGES = ("pipeline", "preprocess", "models", "train")  # everything a stage's work can import from the project


def version_probe():
    """A function (picklable by value) returning (version hash, folder the packages were imported from)."""

    def probe(packages=PACKAGES):
        import hashlib
        import importlib.util
        import os

        digest, where = hashlib.sha256(), []
        for name in packages:
            spec = importlib.util.find_spec(name)  # the copy this process imports (or already imported)
            folders = list(spec.submodule_search_locations or []) if spec else []
            if not folders:
                digest.update(f"{name}: not importable\n".encode())
                continue
            top = folders[0]
            where.append(os.path.dirname(os.path.abspath(top)))
            for base, dirs, files in os.walk(top):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for file in sorted(f for f in files if f.endswith(".py")):
                    path = os.path.join(base, file)
                    digest.update(f"{name}/{os.path.relpath(path, top)}\n".encode())
                    with open(path, "rb") as fh:
                        digest.update(fh.read())
        return digest.hexdigest()[:12], ", ".join(sorted(set(where))) or "nowhere"

    return probe


@functools.lru_cache(maxsize=1)
def code_version() -> tuple[str, str]:
    """(hash, source folder) of the code this process runs; computed once per process."""
    return version_probe()()
