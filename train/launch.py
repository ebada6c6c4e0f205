"""Launch a training stage with the process count taken from the environment (the DVC stages' command):

    python -m train.launch train.pretrain ARGS...
    python -m train.launch train.finetune ARGS...
    python -m train.launch train.evaluate ARGS...

AVLIPS_NPROC sets the processes on this machine (default: the visible GPUs, or 1 without CUDA); more than one
go through torchrun --standalone. Under an existing launcher (WORLD_SIZE set: torchrun with rendezvous
arguments for several nodes, SLURM wrappers) the entry runs directly.
"""
from __future__ import annotations

import importlib
import os
import sys

ENTRIES = ("train.pretrain", "train.finetune", "train.evaluate")


def nproc() -> int:
    if os.environ.get("AVLIPS_NPROC"):
        return int(os.environ["AVLIPS_NPROC"])
    import torch

    return max(1, torch.cuda.device_count())


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ENTRIES:
        raise SystemExit(f"usage: python -m train.launch {{{','.join(ENTRIES)}}} ARGS...")
    module, args = sys.argv[1], sys.argv[2:]
    n = 1 if "WORLD_SIZE" in os.environ else nproc()
    if n == 1:
        importlib.import_module(module).main(args)
        return
    os.execvp(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={n}", "-m", module, *args])


if __name__ == "__main__":
    main()
