"""`python -m pipeline results`: where the outputs of the last `dvc repro` are, and the report itself.

The README's first command ends with it, so a new user sees the detector's figures and the paths of the
metrics, plots and contact sheets without knowing the layout.
"""
from __future__ import annotations

import sys
from pathlib import Path

from preprocess import paths

# (what, glob under the project root): listed when present, in this order
OUTPUTS = (
    ("report (the paper's Tables 1-3 and Figure 4)", "reports/results.md"),
    ("metrics: AUC / accuracy per corpus and method (`dvc metrics show`)", "metrics/**/*.json"),
    ("per-video scores", "artifacts/evaluate/scores.parquet"),
    ("fine-tuned detector (`python -m pipeline predict VIDEO`)", "artifacts/finetune/detector.pt"),
    ("pretrained video encoder", "artifacts/pretrain/encoder.pt"),
    ("ROC curves (`dvc plots show`)", "plots/evaluate/*.json"),
    ("robustness to corruptions, AUC against level (Figure 4)", "plots/robustness_auc.png"),
    ("training curves (`dvc plots show`)", "dvclive/*/plots/metrics"),
    ("mouth-crop contact sheets", "plots/crops/*.png"),
    ("demo corpus contact sheet", "plots/demo/*.png"),
)


def present_outputs(root: Path) -> list[tuple[str, list[Path]]]:
    found = []
    for what, pattern in OUTPUTS:
        hits = sorted(p.relative_to(root) for p in root.glob(pattern))
        if hits:
            found.append((what, hits))
    return found


def main(argv=None) -> int:
    root = paths.project_root()
    report = root / "reports" / "results.md"
    if not report.is_file():
        print("no results yet: run `dvc repro` (reports/results.md is its last output)", file=sys.stderr)
        return 1
    print(report.read_text())
    print("Outputs:")
    for what, hits in present_outputs(root):
        shown = ", ".join(str(p) for p in hits[:4]) + (f" (+{len(hits) - 4} more)" if len(hits) > 4 else "")
        print(f"  {what}: {shown}")
    print("All plots in one page: `dvc plots show` (writes dvc_plots/index.html).")
    return 0
