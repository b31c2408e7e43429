"""Dispatchers used by the training scripts: a source string (+ options) → a DatasetDict."""

import inspect
import os

from ..errors import DataError, MissingFileError
from .schema import SPLITS
from .dailydialog import dialogue_file

PICKLE_MAGIC = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x04\x22\x4d\x18", b"ZF")
"""First bytes of a pickle, or of joblib's zlib/gzip/bz2/xz/lz4 compressed pickles."""


def detect_source(source: str) -> str:
    """
    'demo', 'saved' (a save_to_disk folder), 'pmeld', 'piem', 'pdd' (a DailyDialog release), 'umd' (a JSON Lines
    manifest, or a folder of them) or 'release'.
    """
    if source == "demo":
        return "demo"
    if not os.path.exists(source):
        raise MissingFileError(f"dataset source {source!r}: no such file or folder (and not 'demo')")
    if os.path.isdir(source):
        names = set(os.listdir(source))
        if "dataset_dict.json" in names or "dataset_info.json" in names:
            return "saved"
        if any(name.endswith("_sent_emo.csv") for name in names):
            return "pmeld"
        if "IEMOCAP_full_release" in names or any(name.startswith("Session") for name in names):
            return "piem"
        if any(dialogue_file(source, split) for split in SPLITS):
            return "pdd"
        if any(name.endswith(".jsonl") for name in names):
            return "umd"
        raise DataError(
            f"dataset source {source!r}: a folder with neither MELD CSVs (*_sent_emo.csv), an IEMOCAP release "
            "(Session1…5), a DailyDialog release (<split>/dialogues_<split>.txt), JSON Lines manifests (*.jsonl), "
            "nor a saved dataset (dataset_dict.json)"
        )
    with open(source, "rb") as handle:
        head = handle.read(64)
    if head.lstrip()[:1] in (b"{", b"["):
        return "umd"
    if head.startswith(PICKLE_MAGIC):
        return "release"
    raise DataError(f"dataset source {source!r}: neither a JSON Lines manifest nor a joblib/pickle release file")


def call_builder(builder, kind: str, /, *args, **options):
    """Call `builder` after checking that every option is one of its parameters (a DataError names the others)."""
    accepted = list(inspect.signature(builder).parameters)[len(args):]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(
            f"dataset option(s) {', '.join(unknown)} do not apply to a {kind} source "
            f"({builder.__name__} accepts: {', '.join(accepted)})"
        )
    return builder(*args, **options)


def _load_saved(source: str, **options):
    from datasets import DatasetDict, load_from_disk

    from .common import BuildReport

    if options:
        raise DataError(
            f"dataset option(s) {', '.join(sorted(options))} do not apply to a saved dataset {source!r} "
            "(it is loaded as it was saved)"
        )
    loaded = load_from_disk(source)
    loaded = loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    return loaded, BuildReport.of_saved(source, loaded)


def load_prerecognition_dataset(source: str, return_report: bool = False, **options):
    """Pre-recognition samples from "demo" (`build_demo` options), a MELD CSV folder (`build_pmeld`), an IEMOCAP
    root (`build_piem`), a DailyDialog release folder (`build_pdd`), a joblib release file (`import_release`) or a `save_to_disk` folder. With `return_report`:
    `(samples, BuildReport)` (its `rule` is the reconstruction rule the samples were built with)."""
    samples, report = _load(source, "prerecognition", options)
    return (samples, report) if return_report else samples


def load_pretraining_dataset(source: str, return_report: bool = False, **options):
    """Pre-training dialogues from "demo" (`build_demo` options), a JSON Lines manifest or a folder of them
    (`build_umd`), a MELD CSV folder (its dialogues, text only, `build_meld_dialogues`), a DailyDialog release folder
    (its dialogues, `build_dd_dialogues`), a joblib release file (`import_release`, kind umd) or a `save_to_disk` folder. With `return_report`:
    `(dialogues, BuildReport)`."""
    dialogues, report = _load(source, "pretraining", options)
    return (dialogues, report) if return_report else dialogues


WRONG_PART = {
    "prerecognition": ("{source!r} holds pre-training dialogues (UMD), not pre-recognition samples",
                       "{source!r} is a pre-training manifest (UMD), not a pre-recognition dataset"),
    "pretraining": ("{source!r} holds pre-recognition samples, not pre-training dialogues",
                    "{source!r} ({kind}) is a pre-recognition corpus, not pre-training dialogues"),
}
"""Per part asked for: the message for a release file, then for another source, that holds the other part."""


def _load(source: str, part: str, options: dict):
    """`(DatasetDict, BuildReport)` of `part` ("prerecognition" or "pretraining") from `source`."""
    from .dailydialog import build_dd_dialogues, build_pdd
    from .demo import build_demo
    from .iemocap import build_piem
    from .meld import build_meld_dialogues, build_pmeld
    from .release import import_release
    from .umd import build_umd

    kind = detect_source(source)
    allow_pickle = options.pop("allow_pickle", False)
    builders = {
        "prerecognition": {"pmeld": (build_pmeld, "MELD CSV folder"), "piem": (build_piem, "IEMOCAP"),
                           "pdd": (build_pdd, "DailyDialog folder")},
        "pretraining": {"umd": (build_umd, "UMD manifest"), "pmeld": (build_meld_dialogues, "MELD CSV folder"),
                        "pdd": (build_dd_dialogues, "DailyDialog folder")},
    }[part]
    if kind == "demo":
        pretraining, prerecognition, report_pre, report_rec = call_builder(build_demo, "demo", **options, return_report=True)
        return (prerecognition, report_rec) if part == "prerecognition" else (pretraining, report_pre)
    if kind == "saved":
        return _load_saved(source, **options)
    if kind == "release":
        data, report = call_builder(
            import_release, "release file", source, allow_pickle=allow_pickle, **options, return_report=True
        )
        if ("label" in next(iter(data.values())).column_names) != (part == "prerecognition"):
            raise DataError(WRONG_PART[part][0].format(source=source))
        return data, report
    if kind not in builders:
        raise DataError(WRONG_PART[part][1].format(source=source, kind=kind))
    builder, name = builders[kind]
    return call_builder(builder, name, source, **options, return_report=True)
