import os
import sys

from pipeline.cli import main

code = main()
if sys.argv[1:2] == ["stage"]:  # run once per stage and corpus by dvc: skip the interpreter's teardown of
    sys.stdout.flush()           # pandas, scipy, pyarrow ... (0.3-0.5 s a command); every output is
    sys.stderr.flush()           # written, closed and renamed into place before main returns
    os._exit(code)
raise SystemExit(code)
