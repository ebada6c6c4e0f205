"""reports/results.md from the metrics, in the shape of the paper's Tables 1-3 (the `report` DVC stage).

    python -m train.report --params params.yaml --evaluate metrics/evaluate.json --lomo metrics/lomo \
        --robustness metrics/robustness.json --out reports/results.md

Table 1: video-level ACC and AUC on the test split of the finetune corpora. Table 2: AUC on each method left
out of fine-tuning (one `lomo@METHOD` stage each) and their mean. Table 3: AUC per cross-dataset column
(`evaluate.datasets`, or the eval corpora grouped by `corpus add --dataset`, one per corpus without one) and
their mean. Figures are percentages; "-" is undefined (a single class: Table 3 says which, and why) and every
table says how many videos it scored. Figure 4 (robustness stage): AUC per
corruption type and level, as a table.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from preprocess.settings import load_yaml, section


@dataclass(frozen=True)
class Table1Params:
    name: str = "the finetune corpora's test split"  # e.g. "FF++ HQ (c23)"


@dataclass(frozen=True)
class Table2Params:
    methods: tuple[str, ...] = ("jitter",)  # one lomo@METHOD stage each (dvc.yaml loops over this list)


@dataclass(frozen=True)
class ProtocolParams:
    """params.yaml `protocol:`: how the tables are named and which methods Table 2 leaves out."""
    table1: Table1Params = field(default_factory=Table1Params)
    table2: Table2Params = field(default_factory=Table2Params)


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def table1(ev: dict, name: str) -> list[str]:
    lines = [f"## Table 1: fine-tuned and tested on {name}", ""]
    g = (ev.get("groups") or {}).get("finetune_test")
    if not ev.get("detector", {}).get("trained"):
        return lines + [f"Nothing trained: {ev.get('detector', {}).get('reason', 'no metrics')}.", ""]
    if not g or not g["videos"]["total"]:
        return lines + ["No finetune corpus has a test split.", ""]
    o = g["overall"]
    lines += ["| Method | pre-train | ACC (%) @0.5 | ACC (%) @val threshold | AUC (%) | videos scored |",
              "|---|---|---|---|---|---|",
              f"| ours | {ev['detector'].get('init')} | {pct(o['acc_at_0.5'])} | {pct(o['acc_at_val_threshold'])} | "
              f"{pct(o['auc'])} | {g['videos']['scored']} of {g['videos']['total']} |", ""]
    if g["by_method"]:
        lines += ["Per method (its fakes against all test reals):", "", "| method | AUC (%) | ACC (%) @0.5 |",
                  "|---|---|---|"]
        lines += [f"| {m} | {pct(r['auc'])} | {pct(r['acc_at_0.5'])} |" for m, r in g["by_method"].items()]
        lines.append("")
    return lines


def table2(lomo: dict[str, dict], methods: list[str]) -> list[str]:
    lines = ["## Table 2: cross-manipulation (trained on the remaining methods, AUC % on the one left out)", ""]
    if not methods:
        return lines + ["No method to leave out (`protocol.table2.methods` is empty).", ""]
    aucs, cells, counts = [], [], []
    for m in methods:
        ev = lomo.get(m)
        if ev is None:
            cells.append("-")
            counts.append(f"{m}: no result yet")
            continue
        if not ev.get("detector", {}).get("trained"):
            cells.append("-")
            counts.append(f"{m}: not trained ({ev.get('detector', {}).get('reason')})")
            continue
        g = ev["groups"]["finetune_test"]
        a = g["overall"]["auc"]
        aucs.append(a)
        cells.append(pct(a))
        counts.append(f"{m}: {g['videos']['scored']} of {g['videos']['total']} videos scored")
    return lines + ["| " + " | ".join(methods) + " | Avg |", "|" + "---|" * (len(methods) + 1),
                    "| " + " | ".join(cells) + f" | {pct(mean(aucs))} |", "", "; ".join(counts) + ".", ""]


def classes(col: dict) -> str:
    """The classes a Table 3 column without an AUC holds."""
    return "real only" if col["n_real"] else "fake only" if col["n_fake"] else "no videos"


def table3(ev: dict) -> list[str]:
    lines = ["## Table 3: cross-dataset (fine-tuned on the finetune corpora, AUC %)", ""]
    cols = ev.get("cross_dataset") or {}
    if not ev.get("detector", {}).get("trained"):
        return lines + [f"Nothing trained: {ev.get('detector', {}).get('reason', 'no metrics')}.", ""]
    if not cols:
        return lines + ["No corpus with role eval.", ""]
    names = list(cols)
    aucs = [cols[n]["auc"] for n in names]
    # a column without both classes stays in the table, says which class it has, and why below
    cells = [pct(cols[n]["auc"]) if cols[n]["auc"] is not None else f"- ({classes(cols[n])})" for n in names]
    undefined = [n for n in names if cols[n]["auc"] is None]
    avg = f" (mean of the {len(names) - len(undefined)} columns with an AUC)" if undefined else ""
    return lines + ["| " + " | ".join(names) + " | Avg |", "|" + "---|" * (len(names) + 1),
                    "| " + " | ".join(cells) + f" | {pct(mean(aucs))} |",
                    "", "; ".join(f"{n}: {cols[n]['videos']['scored']} of {cols[n]['videos']['total']} videos "
                                  f"scored ({cols[n]['n_real']} real, {cols[n]['n_fake']} fake)" for n in names) + f"{avg}.",
                    *[f"No AUC for {n}: {cols[n].get('auc_note') or 'a single class'}." for n in undefined], ""]


def robustness(rb: dict | None) -> list[str]:
    """Figure 4 as a table: AUC per corruption type (rows) and level (columns; 0 is the clean render)."""
    lines = ["## Figure 4: robustness to corruptions (AUC % on the eval videos, by type and level)", ""]
    if rb is None:
        return lines + ["No result yet (`dvc repro robustness`).", ""]
    if not rb.get("detector", {}).get("trained"):
        return lines + [f"Nothing trained: {rb.get('detector', {}).get('reason', 'no metrics')}.", ""]
    v = rb.get("videos") or {}
    if not v.get("selected"):
        return lines + ["No corpus with role eval.", ""]
    top = max((len(levels) for levels in (rb.get("levels") or {}).values()), default=0)
    clean = rb["clean"]["all"]["auc"]
    rows = ["| type | " + " | ".join(str(i) for i in range(top + 1)) + " |", "|---" * (top + 2) + "|"]
    by_type = rb.get("corruptions") or {}
    for t in [t for t in rb.get("types") or sorted(by_type) if t in by_type]:  # params order (JSON sorts keys)
        by_level = by_type[t]
        cells = [pct(clean)] + [pct(by_level[str(i)]["all"]["auc"]) if str(i) in by_level else ""
                                for i in range(1, top + 1)]
        rows.append(f"| {t} | " + " | ".join(cells) + " |")
    levels = rb.get("levels") or {}
    params = "; ".join(f"{t}: {', '.join(str(x) for x in levels[t])}" for t in rb.get("types") or sorted(levels)
                       if t in levels)
    c = rb["clean"]["all"]
    return lines + rows + ["", f"{v.get('scored_clean', 0)} of {v['selected']} selected eval videos scored "
                                f"({c['n_real']} real, {c['n_fake']} fake; {v.get('listed', 0)} listed, at most "
                                f"{rb.get('max_videos_per_corpus') or 'all'} per corpus). Level settings: {params}. "
                                "The corruptions are applied to the full frames; the landmarks and the mouth crop "
                                "transforms come from the clean frames (not recomputed on corrupted ones), as in "
                                "the paper's protocol.", ""]


def render(ev: dict, lomo: dict[str, dict], protocol: ProtocolParams, rb: dict | None = None) -> str:
    name = protocol.table1.name or Table1Params.name  # an empty name: the default wording
    methods = list(protocol.table2.methods or ())
    lines = ["# Results", "", "Generated by `dvc repro report` from metrics/evaluate.json and metrics/lomo/; "
             "video-level scores (mean clip logit over the non-overlapping 1 s clips of a video).", ""]
    return "\n".join(lines + table1(ev, name) + table2(lomo, methods) + table3(ev) + robustness(rb)) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--evaluate", default="metrics/evaluate.json")
    p.add_argument("--lomo", default="metrics/lomo")
    p.add_argument("--robustness", default="metrics/robustness.json", help="the robustness stage's metrics")
    p.add_argument("--out", default="reports/results.md")
    a = p.parse_args(argv)
    ev_path = Path(a.evaluate)
    if not ev_path.is_file():
        raise SystemExit(f"error: {ev_path} not found: it is made by the evaluate stage (`dvc repro evaluate`)")
    ev = json.loads(ev_path.read_text())
    lomo = {f.stem: json.loads(f.read_text()) for f in sorted(Path(a.lomo).glob("*.json"))}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rb_path = Path(a.robustness)
    rb = json.loads(rb_path.read_text()) if rb_path.is_file() else None
    out.write_text(render(ev, lomo, section(load_yaml(a.params), "protocol", ProtocolParams), rb))
    print(f"report -> {out}")


if __name__ == "__main__":
    main()
