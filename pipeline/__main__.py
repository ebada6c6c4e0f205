import importlib.abc
import os
import sys

from pipeline.cli import main

STAGE_COMMAND = sys.argv[1:2] == ["stage"]  # run once per stage and corpus by dvc, then the process ends


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            raise ImportError("a stage command runs without pandas")


def _pyarrow_without_pandas() -> None:
    """pyarrow imports pandas (0.25 s), when it can, the first time it converts Python or NumPy data, to
    recognise pandas objects; a stage command has none. Its one probe finds no pandas, and for the rest of the
    process pyarrow takes pandas as absent: so only a stage command's own process, which ends after it, does this."""
    import pyarrow as pa

    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(finder)


if STAGE_COMMAND and "pandas" not in sys.modules:
    _pyarrow_without_pandas()
code = main()
if STAGE_COMMAND:                # skip the interpreter's teardown of pyarrow, av, cv2 ... every output is
    sys.stdout.flush()           # written, closed and renamed into place before main returns
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
