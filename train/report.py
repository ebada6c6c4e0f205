"""reports/results.md from the metrics, in the shape of the paper's Tables 1-3 (the `report` DVC stage).

    python -m train.report --params params.yaml --evaluate metrics/evaluate.json --lomo metrics/lomo \
        --robustness metrics/robustness.json --out reports/results.md

Table 1: video-level ACC and AUC on the test split of the finetune corpora, for the pretrained detector and the
baselines (the from-scratch one), with the zero-shot audio-visual mismatch AUCs beside them. Table 2: AUC on each method left
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


ZERO_SHOT = (("zero-shot AV mismatch (pretrained pair, no fake labels)", "av_mismatch_auc"),
             ("weights-free energy correlation (baseline)", "energy_mismatch_auc"))


def trained(ev: dict | None) -> bool:
    return bool(ev and ev.get("detector", {}).get("trained"))


def detector_rows(runs: dict[str, dict]) -> dict[str, dict]:
    """The detectors to tabulate, by row name: the pretrained one and the baselines that were trained."""
    return {name: ev for name, ev in runs.items() if trained(ev)}


def method_table(groups: dict[str, dict], key: str) -> list[str]:
    """Per fake method (its fakes against all the group's reals): each detector's AUC and the zero-shot AUCs."""
    first = next(iter(groups.values()))["groups"][key]["by_method"]
    if not first:
        return []
    names = list(groups)
    lines = ["Per method (its fakes against all the reals):", "",
             "| method | " + " | ".join(f"AUC (%) {n}" for n in names) + " | AV mismatch AUC (%) | energy AUC (%) |",
             "|---|" + "---|" * (len(names) + 2)]
    for m, r in first.items():
        cells = [pct(groups[n]["groups"][key]["by_method"].get(m, {}).get("auc")) for n in names]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {pct(r.get('av_mismatch_auc'))} | "
                     f"{pct(r.get('energy_mismatch_auc'))} |")
    return lines + [""]


def table1(runs: dict[str, dict], name: str) -> list[str]:
    lines = [f"## Table 1: fine-tuned and tested on {name}", ""]
    ev = runs["pretrained"]
    if not trained(ev):
        return lines + [f"Nothing trained: {ev.get('detector', {}).get('reason', 'no metrics')}.", ""]
    g = (ev.get("groups") or {}).get("finetune_test")
    if not g or not g["videos"]["total"]:
        return lines + ["No finetune corpus has a test split.", ""]
    rows = detector_rows(runs)
    lines += ["| Method | pre-train | ACC (%) @0.5 | ACC (%) @val threshold | AUC (%) | videos scored |",
              "|---|---|---|---|---|---|"]
    for row, run in rows.items():
        o, gr = run["groups"]["finetune_test"]["overall"], run["groups"]["finetune_test"]
        lines.append(f"| {'ours' if row == 'pretrained' else row} | {run['detector'].get('init')} | "
                     f"{pct(o['acc_at_0.5'])} | {pct(o['acc_at_val_threshold'])} | {pct(o['auc'])} | "
                     f"{gr['videos']['scored']} of {gr['videos']['total']} |")
    o = g["overall"]
    for label, key in ZERO_SHOT:
        lines.append(f"| {label} | - | - | - | {pct(o.get(key))} | {o.get('n_av_mismatch', '-')} |")
    return lines + [""] + method_table({n: r for n, r in rows.items()}, "finetune_test")


def table2(lomo: dict[str, dict], methods: list[str]) -> list[str]:
    lines = ["## Table 2: cross-manipulation (trained on the remaining methods, AUC % on the one left out)", ""]
    if not methods:
        return lines + ["No method to leave out (`protocol.table2.methods` is empty).", ""]
    aucs, cells, av_cells, counts = [], [], [], []
    for m in methods:
        ev = lomo.get(m)
        if ev is None or not trained(ev):
            cells.append("-")
            av_cells.append("-")
            counts.append(f"{m}: no result yet" if ev is None else
                          f"{m}: not trained ({ev.get('detector', {}).get('reason')})")
            continue
        g = ev["groups"]["finetune_test"]
        a = g["overall"]["auc"]
        aucs.append(a)
        cells.append(pct(a))
        av_cells.append(pct(g["overall"].get("av_mismatch_auc")))
        counts.append(f"{m}: {g['videos']['scored']} of {g['videos']['total']} videos scored")
    return lines + ["| | " + " | ".join(methods) + " | Avg |", "|---|" + "---|" * (len(methods) + 1),
                    "| ours | " + " | ".join(cells) + f" | {pct(mean(aucs))} |",
                    "| zero-shot AV mismatch | " + " | ".join(av_cells) + " | - |",
                    "", "; ".join(counts) + ".", ""]


def classes(col: dict) -> str:
    """The classes a Table 3 column without an AUC holds."""
    return "real only" if col["n_real"] else "fake only" if col["n_fake"] else "no videos"


def table3(runs: dict[str, dict]) -> list[str]:
    lines = ["## Table 3: cross-dataset (fine-tuned on the finetune corpora, AUC %)", ""]
    ev = runs["pretrained"]
    if not trained(ev):
        return lines + [f"Nothing trained: {ev.get('detector', {}).get('reason', 'no metrics')}.", ""]
    cols = ev.get("cross_dataset") or {}
    if not cols:
        return lines + ["No corpus with role eval.", ""]
    names = list(cols)
    lines += ["| | " + " | ".join(names) + " | Avg |", "|---|" + "---|" * (len(names) + 1)]
    for row, run in detector_rows(runs).items():
        run_cols = run.get("cross_dataset") or {}
        aucs = [run_cols.get(n, {}).get("auc") for n in names]
        # a column without both classes stays in the table and says which class it has (why: below)
        cells = [pct(a) if a is not None else f"- ({classes(cols[n])})" for n, a in zip(names, aucs)]
        lines.append(f"| {'ours' if row == 'pretrained' else row} | " + " | ".join(cells) + f" | {pct(mean(aucs))} |")
    for label, key in ZERO_SHOT:
        aucs = [cols[n].get(key) for n in names]
        lines.append(f"| {label} | " + " | ".join(pct(a) for a in aucs) + f" | {pct(mean(aucs))} |")
    undefined = [n for n in names if cols[n]["auc"] is None]
    avg = f" (Avg: mean of the {len(names) - len(undefined)} columns with an AUC)" if undefined else ""
    lines += ["", "; ".join(f"{n}: {cols[n]['videos']['scored']} of {cols[n]['videos']['total']} videos "
                            f"scored ({cols[n]['n_real']} real, {cols[n]['n_fake']} fake)" for n in names) + f"{avg}.",
              *[f"No AUC for {n}: {cols[n].get('auc_note') or 'a single class'}." for n in undefined], ""]
    if (ev.get("groups") or {}).get("eval"):
        lines += method_table(detector_rows(runs), "eval")
    return lines


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


def render(ev: dict, lomo: dict[str, dict], protocol: ProtocolParams, rb: dict | None = None,
           baselines: dict[str, dict] | None = None) -> str:
    """`baselines`: other detectors' metrics of the same shape by name (the scratch baseline), as extra rows."""
    name = protocol.table1.name or Table1Params.name  # an empty name: the default wording
    methods = list(protocol.table2.methods or ())
    runs = {"pretrained": ev, **(baselines or {})}
    lines = ["# Results", "", "Generated by `dvc repro report` from metrics/evaluate.json, metrics/baselines/ and "
             "metrics/lomo/; video-level scores (mean clip logit over the non-overlapping 1 s clips of a video). "
             "The zero-shot rows use no fake labels: the pretrained audio-visual pair's mismatch score "
             "(train/av_mismatch.py) and, as the baseline to beat, the track stage's correlation of mouth motion "
             "with the audio envelope.", ""]
    return "\n".join(lines + table1(runs, name) + table2(lomo, methods) + table3(runs) + robustness(rb)) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--evaluate", default="metrics/evaluate.json")
    p.add_argument("--lomo", default="metrics/lomo")
    p.add_argument("--baselines", default="metrics/baselines", help="folder of baseline detectors' metrics")
    p.add_argument("--robustness", default="metrics/robustness.json", help="the robustness stage's metrics")
    p.add_argument("--out", default="reports/results.md")
    a = p.parse_args(argv)
    ev_path = Path(a.evaluate)
    if not ev_path.is_file():
        raise SystemExit(f"error: {ev_path} not found: it is made by the evaluate stage (`dvc repro evaluate`)")
    ev = json.loads(ev_path.read_text())
    lomo = {f.stem: json.loads(f.read_text()) for f in sorted(Path(a.lomo).glob("*.json"))}
    baselines = {f.stem: json.loads(f.read_text()) for f in sorted(Path(a.baselines).glob("*.json"))}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rb_path = Path(a.robustness)
    rb = json.loads(rb_path.read_text()) if rb_path.is_file() else None
    out.write_text(render(ev, lomo, section(load_yaml(a.params), "protocol", ProtocolParams), rb, baselines))
    print(f"report -> {out}")


if __name__ == "__main__":
    main()
