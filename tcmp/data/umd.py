"""UMD-style pre-training dialogues from JSON Lines manifests."""

import json
import os

from .common import SplitReport, cached_split, dialogue_features, file_identity, finish, record_report
from .errors import DataError, MissingFileError


def _number(value, where, name):
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {name!r} must be a number of seconds, got {value!r}") from None


def read_manifest(path: str, report: SplitReport | None = None):
    """Yield the dialogue rows of a manifest (validated; relative audio paths resolved against its folder)."""
    if not os.path.isfile(path):
        raise MissingFileError(f"manifest {path!r} does not exist")
    folder = os.path.dirname(os.path.abspath(path))
    seen = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(entry, dict) or "utterances" not in entry or not isinstance(entry["utterances"], list):
                raise DataError(f"{where}: expected an object with an 'utterances' list")
            dialogue_id = str(entry.get("dialogue_id", f"line{number}"))
            if dialogue_id in seen:
                raise DataError(f"{where}: duplicate dialogue_id {dialogue_id!r} (first at line {seen[dialogue_id]})")
            seen[dialogue_id] = number
            if not entry["utterances"]:
                if report is not None:
                    report.skip("dialogue without utterances", where)
                continue
            row = {"dialogue_id": dialogue_id, "utterance_id": [], "text": [], "speaker": [], "audio_path": [],
                   "audio_start": [], "audio_end": []}
            for index, utterance in enumerate(entry["utterances"]):
                at = f"{where}, utterance {index}"
                if not isinstance(utterance, dict) or not isinstance(utterance.get("text"), str):
                    raise DataError(f"{at}: each utterance needs a 'text' string")
                audio = utterance.get("audio")
                if audio is not None:
                    audio = audio if os.path.isabs(audio) else os.path.join(folder, audio)
                    if not os.path.isfile(audio):
                        raise MissingFileError(f"{at}: audio file {audio!r} does not exist")
                start, end = _number(utterance.get("start"), at, "start"), _number(utterance.get("end"), at, "end")
                if start is not None and end is not None and end <= start:
                    raise DataError(f"{at}: end ({end}) must be after start ({start})")
                row["utterance_id"].append(str(utterance.get("id", f"{dialogue_id}_utt{index}")))
                row["text"].append(utterance["text"])
                speaker = utterance.get("speaker")
                row["speaker"].append(None if speaker is None else str(speaker))
                row["audio_path"].append(audio)
                row["audio_start"].append(start)
                row["audio_end"].append(end)
            yield row


def _generate_umd(spec: str):
    options = json.loads(spec)
    report = SplitReport()
    yield from read_manifest(options["manifest"][0], report)
    record_report(spec, report)


def build_umd(manifest_paths, cache_dir: str | None = None, return_report: bool = False):
    """
    Pre-training dialogues (one row per dialogue) from JSON Lines manifests: `manifest_paths` is one path (→ split
    "train") or `{split: path}`. Each line: `{"dialogue_id": ..., "utterances": [{"text": ..., "speaker": ...,
    "audio": path, "start": s, "end": s}, ...]}` (audio/start/end/speaker optional; an optional "id" per utterance);
    relative audio paths are resolved against the manifest's folder.
    """
    if isinstance(manifest_paths, (str, os.PathLike)):
        manifest_paths = {"train": str(manifest_paths)}
    splits, reports = {}, {}
    for split, path in manifest_paths.items():
        spec = {"kind": "umd", "manifest": file_identity(path)}
        splits[split], reports[split] = cached_split(_generate_umd, spec, dialogue_features(), cache_dir, split)
    return finish("UMD", splits, reports, return_report, {"tcmp_kind": "umd"})
