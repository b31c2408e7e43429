"""
Command line:

    python -m tcmp.data build demo [--options JSON] --output DIR          (DIR/pretraining, DIR/prerecognition)
    python -m tcmp.data build pmeld CSV_DIR [--media-dir D] [--label-type sentiment|emotion] [rule flags] --output DIR
    python -m tcmp.data build piem IEMOCAP_ROOT [rule flags] --output DIR
    python -m tcmp.data build pdd DAILYDIALOG_DIR [--label-type emotion|act] [--keep-duplicates] [rule flags] --output DIR
    python -m tcmp.data build umd MANIFEST.jsonl [MORE.jsonl ...] [--exclude-overlap EVALUATION_SOURCE] --output DIR
                                                        (split from file name: train/dev/test; or one folder of them)
    python -m tcmp.data build release FILE [--kind-of-release pmeld|piem|umd] --allow-pickle --output DIR
    python -m tcmp.data stats SOURCE-or-saved-DIR [--paper pmeld|piem]
    python -m tcmp.data overlap PRETRAINING_SOURCE EVALUATION_SOURCE     (utterances of >= 4 words shared)

Rule flags: one per `ReconstructionRule` field (--min-context N --max-context N --[no-]require-target-spoke-before
--[no-]require-speaker-change).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from .common import saved_build_info
from ..errors import DataError
from .loading import call_builder, detect_source
from .rule import ReconstructionRule


def add_rule_flags(parser):
    """A `--field-name` flag per `ReconstructionRule` field: a number, or `--flag` / `--no-flag` for a bool."""
    for rule_field in dataclasses.fields(ReconstructionRule):
        flag = "--" + rule_field.name.replace("_", "-")
        if rule_field.type is bool:
            parser.add_argument(flag, dest=rule_field.name, action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag, dest=rule_field.name, type=rule_field.type)


def rule_from(args, parser):
    given = {rule_field.name: getattr(args, rule_field.name) for rule_field in dataclasses.fields(ReconstructionRule)}
    try:
        return ReconstructionRule(**{name: value for name, value in given.items() if value is not None})
    except ValueError as error:
        parser.error(str(error))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tcmp.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a dataset and save it with save_to_disk", allow_abbrev=False)
    build.add_argument("kind", choices=["demo", "pmeld", "piem", "pdd", "umd", "release"])
    build.add_argument("inputs", nargs="*", help="the corpus: CSV folder, IEMOCAP root, manifest(s), release file")
    build.add_argument("--output", required=True)
    build.add_argument("--cache-dir")
    build.add_argument("--options", help="extra builder options as a JSON object")
    build.add_argument("--media-dir")
    build.add_argument("--label-type", choices=["sentiment", "emotion", "act"],
                       help="MELD and releases: sentiment (default) or emotion; DailyDialog: emotion (default) or act")
    build.add_argument("--keep-duplicates", action="store_true",
                       help="pdd: keep evaluation dialogues identical to a training dialogue (left out by default)")
    build.add_argument("--exclude-overlap", metavar="EVALUATION_SOURCE",
                       help="umd: cut out the utterances shared with this source's validation/test dialogues")
    add_rule_flags(build)
    build.add_argument("--kind-of-release", dest="release_kind", choices=["pmeld", "piem", "umd"])
    build.add_argument("--allow-pickle", action="store_true", help="read joblib/pickle files (trusted files only)")
    stats = commands.add_parser("stats", help="print Table-1 statistics (NU, ADL, AWL, classes)", allow_abbrev=False)
    stats.add_argument("source")
    stats.add_argument("--paper", choices=["pmeld", "piem", "none"], help="which paper row to show (default: detected)")
    stats.add_argument("--cache-dir")
    stats.add_argument("--allow-pickle", action="store_true")
    stats.add_argument("--options", help="builder options as a JSON object")
    overlap = commands.add_parser(
        "overlap", help="count the utterances a pre-training corpus shares with evaluation data", allow_abbrev=False
    )
    overlap.add_argument("pretraining", help="pre-training source: manifest(s) folder, .jsonl, MELD or DailyDialog folder")
    overlap.add_argument("evaluation", help="evaluation source: its validation and test dialogues are compared")
    overlap.add_argument("--cache-dir")
    args = parser.parse_args(argv)
    try:
        return run(args, parser)
    except DataError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")


def run(args, parser) -> int:
    """Carry out a parsed `build`, `stats` or `overlap` command; bad input raises `DataError` naming it."""
    from .stats import dataset_stats, format_stats

    if args.command == "overlap":
        from .loading import load_pretraining_dataset
        from .overlap import evaluation_part, find_overlap

        cache = {"cache_dir": args.cache_dir} if args.cache_dir else {}
        pretraining = load_pretraining_dataset(args.pretraining, **cache)
        evaluation = evaluation_part(load_pretraining_dataset(args.evaluation, **cache), args.evaluation)
        print(f"pre-training {args.pretraining} against the evaluation dialogues of {args.evaluation}")
        print(find_overlap(pretraining, evaluation).format())
        return 0
    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as error:
        parser.error(f"--options {args.options!r} is not JSON: {error}")
    if not isinstance(options, dict):
        parser.error(f"--options must be a JSON object, got {args.options!r}")
    if args.cache_dir:
        options["cache_dir"] = args.cache_dir
    if args.command == "stats":
        from .loading import load_prerecognition_dataset, load_pretraining_dataset

        kind = detect_source(args.source)
        if args.allow_pickle:
            options["allow_pickle"] = True
        if kind in ("umd",):
            data = load_pretraining_dataset(args.source, **options)
        elif kind == "release":
            from .release import import_release

            data = call_builder(import_release, "release", args.source, allow_pickle=args.allow_pickle, **options)
        else:
            data = load_prerecognition_dataset(args.source, **options)
        paper = args.paper or saved_build_info(data).get("tcmp_kind")
        print(format_stats(dataset_stats(data), paper=None if paper == "none" else paper))
        return 0

    start = time.time()
    needs = {"demo": 0, "pmeld": 1, "piem": 1, "pdd": 1, "release": 1}
    if args.kind in needs and len(args.inputs) != needs[args.kind]:
        parser.error(f"build {args.kind} takes {needs[args.kind]} input(s), got {len(args.inputs)}")
    for flag, value, kind in (("--keep-duplicates", args.keep_duplicates, "pdd"),
                              ("--exclude-overlap", args.exclude_overlap, "umd")):
        if value and args.kind != kind:
            parser.error(f"{flag} applies to build {kind} only, not to build {args.kind}")
    outputs = {}
    if args.kind == "demo":
        from .demo import build_demo

        outputs["pretraining"], outputs["prerecognition"] = call_builder(
            build_demo, "demo", rule=rule_from(args, parser), **options
        )
    elif args.kind == "pmeld":
        from .meld import build_pmeld

        outputs[""] = call_builder(build_pmeld, "pmeld", args.inputs[0], media_dir=args.media_dir,
                                    label_type=args.label_type or "sentiment", rule=rule_from(args, parser), **options)
    elif args.kind == "pdd":
        from .dailydialog import build_pdd

        outputs[""] = call_builder(build_pdd, "pdd", args.inputs[0], rule=rule_from(args, parser),
                                    label_type=args.label_type or "emotion", keep_duplicates=args.keep_duplicates,
                                    **options)
    elif args.kind == "piem":
        from .iemocap import build_piem

        outputs[""] = call_builder(build_piem, "piem", args.inputs[0], rule=rule_from(args, parser), **options)
    elif args.kind == "umd":
        from .umd import build_umd, manifest_split

        if not args.inputs:
            parser.error("build umd takes one or more manifests")
        outputs[""] = call_builder(build_umd, "umd",
                                    {manifest_split(p): p for p in args.inputs} if len(args.inputs) > 1 else args.inputs[0],
                                    **options)
        if args.exclude_overlap:
            from .loading import load_pretraining_dataset
            from .overlap import evaluation_part, exclude_overlap

            cache = {"cache_dir": args.cache_dir} if args.cache_dir else {}
            evaluation = evaluation_part(load_pretraining_dataset(args.exclude_overlap, **cache), args.exclude_overlap)
            outputs[""], removed = exclude_overlap(outputs[""], evaluation)
            print(f"excluded the overlap with {args.exclude_overlap}: " +
                  (", ".join(f"{count} {what}" for what, count in removed.items()) or "nothing shared"), file=sys.stderr)
    else:
        from .release import import_release

        outputs[""] = call_builder(import_release, "release", args.inputs[0], kind=args.release_kind,
                                    allow_pickle=args.allow_pickle, label_type=args.label_type or "sentiment", **options)
    for name, data in outputs.items():
        folder = os.path.join(args.output, name) if name else args.output
        data.save_to_disk(folder)
        print(f"saved {name or args.kind} to {folder}", file=sys.stderr)
        paper = saved_build_info(data).get("tcmp_kind")
        print(format_stats(dataset_stats(data), paper=paper if paper in ("pmeld", "piem") else None))
    print(f"built in {time.time() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
