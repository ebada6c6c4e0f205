"""Group-aware split assignment: a seeded hash of the group, so no group straddles two splits and a
rescan that adds videos never moves an existing group."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from preprocess.contract import SPLITS



def group_of(relpath: str, group_by: str | None) -> str:
    """The group (speaker, source identity) of a video. Default: its top folder, else its file stem."""
    if group_by:
        match = re.search(group_by, relpath)
        if match is None:
            raise ValueError(f"group-by pattern {group_by!r} does not match {relpath!r}")
        return match.group(1) if match.groups() else match.group(0)
    parts = PurePosixPath(relpath).parts
    return parts[0] if len(parts) > 1 else PurePosixPath(relpath).stem


def read_split_file(path: Path) -> dict[str, str]:
    """group -> split from a CSV with columns `group,split` (split one of train, val, test)."""
    import pandas as pd  # here, not at the top: the stage commands import this module and never read a split file

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"group", "split"} <= set(table.columns):
        raise ValueError(f"split file {path} needs the columns 'group' and 'split' "
                         f"(it has: {', '.join(table.columns)})")
    bad = table[~table.split.isin(SPLITS)]
    if len(bad):
        raise ValueError(f"split file {path}: split {bad.split.iloc[0]!r} for group {bad.group.iloc[0]!r} is not one "
                         f"of {', '.join(SPLITS)}")
    clashes = table.groupby("group").split.nunique()
    if (clashes > 1).any():
        raise ValueError(f"split file {path}: group {clashes[clashes > 1].index[0]!r} is in two splits")
    return dict(zip(table.group, table.split))


def split_of(group: str, val: float, test: float, seed: int) -> str:
    """'test', 'val' or 'train' from a uniform number derived from (seed, group)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test:
        return "test"
    if u < test + val:
        return "val"
    return "train"
