"""Launch pretraining with the process count taken from the environment (the DVC stage's command).

    python -m train.launch --params params.yaml --index ... --out ... --live ...

AVLIPS_NPROC sets the processes on this machine (default: the visible GPUs, or 1 without CUDA);
more than one goes through torchrun --standalone. Under an existing launcher (WORLD_SIZE set: torchrun
with rendezvous arguments for several nodes, SLURM wrappers) it runs the trainer directly.
"""
from __future__ import annotations

import os
import sys


def nproc() -> int:
    if os.environ.get("AVLIPS_NPROC"):
        return int(os.environ["AVLIPS_NPROC"])
    import torch

    return max(1, torch.cuda.device_count())


def main() -> None:
    args = sys.argv[1:]
    n = 1 if "WORLD_SIZE" in os.environ else nproc()
    if n == 1:
        from train.pretrain import main as pretrain

        pretrain(args)
        return
    os.execvp(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={n}", "-m", "train.pretrain", *args])


if __name__ == "__main__":
    main()
