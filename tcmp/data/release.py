"""Importers for the original TCMP release's joblib files (P-MELD, P-IEM, UMD): the same schema as the raw builders."""

import json
import os

from .common import SplitReport, cached_split, file_identity, finish
from ..errors import DataError, MissingFileError, PickleRefusedError
from . import iemocap, meld
from .schema import dialogue_features, prerecognition_features

SPLIT_NAMES = {"train": "train", "dev": "validation", "valid": "validation", "validation": "validation", "test": "test"}
KINDS = ("pmeld", "piem", "umd")


def refuse_pickle(path: str, allow_pickle: bool):
    if not allow_pickle:
        raise PickleRefusedError(
            f"{path!r} is a joblib/pickle file: loading it can run arbitrary code hidden in the file. Only load files "
            "you trust (e.g. the original release you downloaded yourself), by passing allow_pickle=True "
            "(command line: --allow-pickle; training scripts: --allow_pickle)."
        )


def load_joblib(path: str, allow_pickle: bool):
    refuse_pickle(path, allow_pickle)
    if not os.path.isfile(path):
        raise MissingFileError(f"release file {path!r} does not exist")
    import joblib

    try:
        return joblib.load(path)
    except Exception as error:
        raise DataError(f"{path!r}: not a readable joblib file ({type(error).__name__}: {error})") from None


def split_payload(payload, path: str) -> dict:
    """{split: list of dialogues} from a loaded file: a dict keyed by split names, or one list (split from the name)."""
    if isinstance(payload, dict) and payload and all(key in SPLIT_NAMES for key in payload):
        return {SPLIT_NAMES[key]: value for key, value in payload.items()}
    if isinstance(payload, list):
        base = os.path.basename(path).lower()
        for key, split in SPLIT_NAMES.items():
            if key in base:
                return {split: payload}
        return {"train": payload}
    raise DataError(f"{path!r}: expected a list of dialogues or a dict of splits, got {type(payload).__name__}")


def guess_kind(dialogues: list, path: str) -> str:
    for dialogue in dialogues[:50]:
        if isinstance(dialogue, dict) and "script" in dialogue:
            return "umd"
        if isinstance(dialogue, list):
            for item in dialogue:
                if isinstance(item, dict) and "next sentiment" in item:
                    return "pmeld"
                if isinstance(item, dict) and "next emotion" in item:
                    return "pmeld" if item.get("next emotion") in meld.LABELS["emotion"] else "piem"
    raise DataError(f"{path!r}: not in a known release layout (UMD: dicts with 'script'; P-MELD/P-IEM: lists of "
                    "utterance dicts with 'next sentiment'/'next emotion')")


def _audio(item: dict, folder: str):
    path = item.get("wav_path")
    if not path:
        return None
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(folder, path))


def _item(item, where):
    if not isinstance(item, dict) or "utterance" not in item:
        raise DataError(f"{where}: expected a dict with an 'utterance' key, got {str(item)[:80]!r}")
    return item


def _generate_release(spec: str, report: SplitReport):
    options = json.loads(spec)
    path, kind, split = options["file"][0], options["release_kind"], options["release_split"]
    folder = os.path.dirname(os.path.abspath(path))
    dialogues = split_payload(load_joblib(path, True), path)[split]
    for d, dialogue in enumerate(dialogues):
        dialogue_id = f"{split}_{d}"
        if kind == "umd":
            if not isinstance(dialogue, dict) or "script" not in dialogue:
                raise DataError(f"{path}, {split} dialogue {d}: expected a dict with a 'script' list")
            items = [_item(item, f"{path}, {split} dialogue {d}, item {i}") for i, item in enumerate(dialogue["script"])]
            if not items:
                report.skip("dialogue without utterances", f"{path}, {split} dialogue {d}")
                continue
            yield {
                "dialogue_id": dialogue_id,
                "utterance_id": [f"dia{d}_utt{i}" for i in range(len(items))],
                "text": [str(item["utterance"]) for item in items],
                "speaker": [None if item.get("speaker") is None else str(item["speaker"]) for item in items],
                "audio_path": [_audio(item, folder) for item in items],
                "audio_start": [None] * len(items),
                "audio_end": [None] * len(items),
            }
            continue
        key = "next sentiment" if kind == "pmeld" and options["label_type"] == "sentiment" else "next emotion"
        names = options["names"]
        items = [_item(item, f"{path}, {split} dialogue {d}, item {i}") for i, item in enumerate(dialogue)]
        for t in range(len(items) - 1):
            if key not in items[t]:
                continue
            where = f"{path}, {split} dialogue {d}, item {t} ({key!r})"
            raw = str(items[t][key]).strip().lower()
            label = iemocap.FOLD.get(raw[:3], raw) if kind == "piem" and raw not in names else raw
            if kind == "piem" and raw[:3] == "xxx":
                report.skip("target labelled xxx", where)
                continue
            if label not in names:
                raise DataError(f"{where}: unknown label {items[t][key]!r} (expected one of {names})")
            context = items[max(0, t + 1 - options["max_context"]): t + 1]
            first = t + 1 - len(context)
            target = items[t + 1]
            yield {
                "sample_id": f"dia{d}_utt{t + 1}",
                "dialogue_id": dialogue_id,
                "utterance_id": [f"dia{d}_utt{first + i}" for i in range(len(context))],
                "text": [str(item["utterance"]) for item in context],
                "speaker": [str(item.get("speaker")) for item in context],
                "audio_path": [_audio(item, folder) for item in context],
                "audio_start": [None] * len(context),
                "audio_end": [None] * len(context),
                "target_speaker": str(target.get("speaker")),
                "target_utterance_id": f"dia{d}_utt{t + 1}",
                "label": label,
            }
        if items and key in items[-1]:
            report.skip("target marked on the last item (no target utterance follows)", f"{path}, {split} dialogue {d}")


def import_release(
    path,
    kind: str | None = None,
    allow_pickle: bool = False,
    label_type: str = "sentiment",
    max_context: int = 10,
    cache_dir: str | None = None,
    return_report: bool = False,
):
    """
    A `DatasetDict` from the original release's joblib files, in the same schema as `build_pmeld`/`build_piem`
    (samples) or `build_umd` (dialogues).

    `path`: one file (a list of dialogues, split taken from the file name — train/dev/test — or a dict of splits), or
    `{split: file}`. `kind`: "pmeld", "piem", "umd", or None to detect from the content. The release marks a target
    on the item *before* it (`next sentiment`/`next emotion`); the sample's context is that item and the ones before
    it (at most `max_context`), its target the following item (whose text and audio are not in the row).
    joblib files are pickles, so this refuses to read them unless `allow_pickle=True` (pickles can run arbitrary code).
    """
    files = {None: str(path)} if isinstance(path, (str, os.PathLike)) else dict(path)
    for file in files.values():
        refuse_pickle(file, allow_pickle)
    if kind is not None and kind not in KINDS:
        raise DataError(f"kind must be one of {KINDS} or None, got {kind!r}")
    splits, reports, kind_seen = {}, {}, None
    for given_split, file in files.items():
        payload = split_payload(load_joblib(file, allow_pickle), file)
        for release_split, dialogues in payload.items():
            split = SPLIT_NAMES.get(given_split, release_split) if given_split else release_split
            file_kind = kind or guess_kind(dialogues, file)
            if kind is None and kind_seen is not None and file_kind != kind_seen:
                raise DataError(f"{file!r}: holds {file_kind} data, the other files {kind_seen}")
            kind_seen = file_kind
            if file_kind == "umd":
                features = dialogue_features()
                names = None
            else:
                names = list(meld.LABELS[label_type] if file_kind == "pmeld" else iemocap.LABELS)
                features = prerecognition_features(names)
            spec = {"kind": "release", "file": file_identity(file), "release_kind": file_kind,
                    "release_split": release_split, "label_type": label_type, "max_context": max_context,
                    "names": names}
            splits[split], reports[split] = cached_split(_generate_release, spec, features, cache_dir, split)
    kind_final = kind or kind_seen
    return finish(f"release ({kind_final})", splits, reports, return_report,
                  {"tcmp_kind": kind_final, "source": "release", "max_context": max_context})
