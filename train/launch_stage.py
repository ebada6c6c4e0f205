"""Launch a training-side entry point with the process count from the environment, as train/launch.py does
for pretraining:

    python -m train.launch_stage train.finetune ARGS...
    python -m train.launch_stage train.evaluate ARGS...

AVLIPS_NPROC processes on this machine (default: the visible GPUs, or 1 without CUDA); more than one go
through torchrun --standalone; under an existing launcher (WORLD_SIZE set) the entry runs directly.
"""
from __future__ import annotations

import importlib
import os
import sys

from train.launch import nproc

ENTRIES = ("train.finetune", "train.evaluate")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ENTRIES:
        raise SystemExit(f"usage: python -m train.launch_stage {{{','.join(ENTRIES)}}} ARGS...")
    module, args = sys.argv[1], sys.argv[2:]
    n = 1 if "WORLD_SIZE" in os.environ else nproc()
    if n == 1:
        importlib.import_module(module).main(args)
        return
    os.execvp(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={n}", "-m", module, *args])


if __name__ == "__main__":
    main()
