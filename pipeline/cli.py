"""Command line: `python -m pipeline corpus ...`, `python -m pipeline stage ...`, `python -m pipeline status`,
`python -m pipeline params check|apply FILE`, `python -m pipeline predict VIDEO...`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cluster import ClusterError
from preprocess.fileio import NotWritable
from pipeline.corpora import LABELS, ROLES
from pipeline.stages import PER_CORPUS_STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="register, rescan, list and remove raw video corpora")
    corpus_sub = corpus.add_subparsers(dest="action", required=True)
    add = corpus_sub.add_parser("add", help="register a corpus (or rescan a registered one) and write its manifest")
    add.add_argument("name")
    add.add_argument("raw_dir")
    add.add_argument("--pattern", help="glob relative to RAW_DIR (default '**/*.mp4')")
    add.add_argument("--role", choices=ROLES)
    add.add_argument("--label", choices=LABELS)
    add.add_argument("--method", help="manipulation method of a fake corpus (Deepfakes, FaceSwap, ...)")
    add.add_argument("--group-by", help="regex on the relative path whose group 1 is the speaker/identity")
    add.add_argument("--split-file", help="CSV with columns group,split (e.g. official splits) instead of fractions")
    add.add_argument("--labels", help="CSV with columns relpath,label[,method]: per-video labels overriding --label")
    add.add_argument("--dataset", help="eval corpora with the same dataset (e.g. the reals and the fakes of "
                                       "Celeb-DF) form one Table 3 column (default: a column per corpus)")
    corpus_sub.add_parser("list", help="registered corpora with video counts and hours")
    remove = corpus_sub.add_parser("remove", help="unregister a corpus and delete its source manifest")
    remove.add_argument("name")

    stage = sub.add_parser("stage", help="run one per-corpus stage (dvc.yaml calls this)")
    stage.add_argument("stage", choices=PER_CORPUS_STAGES)
    stage.add_argument("corpus")
    stage.add_argument("--workers", type=int, help="local worker processes (default: $AVLIPS_WORKERS or all cores)")
    stage.add_argument("--scheduler", help="address of a running dask scheduler (default: $DASK_SCHEDULER_ADDRESS)")

    demo = sub.add_parser("demo", help="generate the demo corpora and their manifests (the dvc stage `demo`)")
    demo.add_argument("--workers", type=int, help="processes (default: $AVLIPS_WORKERS or all cores)")

    sub.add_parser("status", help="per corpus and stage: videos ok / failed / skipped / pending")

    from pipeline import shard_inspect

    shards = sub.add_parser("shards", help="what is in the shards")
    shards_sub = shards.add_subparsers(dest="action", required=True)
    shard_inspect.add_arguments(shards_sub.add_parser(
        "inspect", help="samples, hours, labels, QC and failures per corpus and split; --key/--png draws a sample"))
    preview = shards_sub.add_parser("preview", help="a PNG grid of mouth crops from a corpus's shards (dvc plot)")
    preview.add_argument("corpus")
    preview.add_argument("--png", required=True)
    preview.add_argument("--samples", type=int, default=16)
    sub.add_parser("collect", help="list the shards feeding each training role (the dvc stage `collect`)")
    params = sub.add_parser("params", help="check params.yaml, or apply a file of overrides to it")
    params_sub = params.add_subparsers(dest="action", required=True)
    params_sub.add_parser("check", help="load every section strictly: an unknown key is an error naming its path")
    apply = params_sub.add_parser("apply", help="write a file of overrides (e.g. params/paper.yaml) into params.yaml")
    apply.add_argument("file")
    sub.add_parser("results", help="print the report and where the metrics, plots and models of the last run are")

    from pipeline import predict

    predict.add_arguments(sub.add_parser(
        "predict", help="fake probability of video files, with a per-second timeline (fine-tuned detector)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "stage":  # the stage commands (one per stage and corpus in dvc repro) never import pandas
        import pandas as pd

        pd.set_option("display.width", 200)  # tables printed by `status`, `corpus list`, `shards inspect`
    try:
        if args.command == "corpus":
            return _corpus(args)
        if args.command == "stage":
            return _stage(args)
        if args.command == "demo":
            from pipeline.stages import run_demo

            run_demo(args.workers)
            return 0
        if args.command == "status":
            from pipeline.status import status_table

            print(status_table().to_string(index=False))
            return 0
        if args.command == "shards":
            from pipeline import shard_inspect

            if args.action == "preview":
                drawn = shard_inspect.corpus_preview(args.corpus, Path(args.png), args.samples)
                print(f"wrote {args.png}: {drawn} samples of {args.corpus}")
                return 0
            return shard_inspect.main(args)
        if args.command == "collect":
            from pipeline import collect

            return collect.main()
        if args.command == "params":
            from pipeline import params

            return params.main(args)
        if args.command == "results":
            from pipeline import results

            return results.main()
        if args.command == "predict":
            from pipeline import predict

            return predict.main(args)
    # ClusterError: a scheduler unreachable, without workers or on other code; NotWritable: a full disk, a
    # read-only folder: one line, no traceback
    except (ValueError, KeyError, FileNotFoundError, ClusterError, NotWritable) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 1


def _corpus(args) -> int:
    from pipeline import registry

    if args.action == "add":
        corpus, manifest = registry.add_corpus(args.name, args.raw_dir, args.pattern, args.role, args.label,
                                               args.method, args.group_by, args.split_file, args.labels,
                                               args.dataset)
        states = manifest.scan_state.value_counts().to_dict()
        print(f"corpus {corpus.name}: {len(manifest)} videos ({', '.join(f'{n} {s}' for s, n in states.items())}); "
              f"splits {manifest.split.value_counts().to_dict()}; "
              f"{int(manifest.probe_error.notna().sum())} unreadable")
    elif args.action == "list":
        table = registry.list_corpora()
        print(table.to_string(index=False) if len(table) else "no corpora registered")
    elif args.action == "remove":
        left = registry.remove_corpus(args.name)
        print(f"removed corpus {args.name} from params.yaml and its source manifest")
        for folder in left:
            print(f"  generated data left in place (delete it if no longer needed): {folder}")
    return 0


def _stage(args) -> int:
    from pipeline import stages
    from pipeline.cluster import StageCluster

    with StageCluster(args.scheduler, args.workers) as cluster:  # started only for enough work
        stages.run(args.stage, args.corpus, cluster)
    return 0

