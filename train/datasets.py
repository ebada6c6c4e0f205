"""Table 3's columns (cross-dataset evaluation): which eval corpora form each column, and what a column that
cannot have an AUC says instead.

Benchmarks such as Celeb-DF v2 or DFDC ship reals and fakes in separate folders, so users register them as
separate corpora; `corpus add --dataset NAME` puts them back into one column. The collect stage's summary
carries each eval corpus's dataset, so a change of it reruns the evaluation (DVC: the stage depends on
data/collect).
"""
from __future__ import annotations

import json
from pathlib import Path


def eval_datasets(collect: Path) -> dict[str, str | None]:
    """{eval corpus the collect stage saw: its registered dataset or None}, by corpus name."""
    path = collect / "summary.json"
    if not path.is_file():
        return {}
    corpora = json.loads(path.read_text()).get("roles", {}).get("eval", {})
    return {name: (corpora[name] or {}).get("dataset") for name in sorted(corpora)}


def table3_columns(datasets: dict, eval_corpora: dict[str, str | None]) -> dict[str, list[str]]:
    """Column name -> corpora. `datasets` (params evaluate.datasets) when it names any; else the eval corpora
    grouped by their dataset, a corpus without one a column of its own (named after it), columns in name order."""
    if datasets:
        return {str(name): list(corpora) for name, corpora in datasets.items()}
    columns: dict[str, list[str]] = {}
    for corpus, dataset in sorted(eval_corpora.items()):
        columns.setdefault(str(dataset or corpus), []).append(corpus)
    return dict(sorted(columns.items()))


def auc_note(n_real: int, n_fake: int) -> str | None:
    """Why a column has no AUC, in plain words (None when it has both classes): it is reported, never dropped."""
    if n_real and n_fake:
        return None
    if not n_real and not n_fake:
        return "no video scored: no AUC"
    only, other = ("real", "fake") if n_real else ("fake", "real")
    return (f"only {only} videos scored ({n_real} real, {n_fake} fake): an AUC needs both; register the {other} "
            f"videos of this dataset with the same `corpus add --dataset NAME` (or list both corpora in "
            f"evaluate.datasets)")
