"""UMD-style pre-training dialogues from JSON Lines manifests."""

import json
import math
import os

from .common import SplitReport, cached_split, file_identity, finish
from ..audio_utils import audio_file_info
from ..errors import AudioLoadError, DataError, MissingFileError
from .schema import UTTERANCE_COLUMNS, dialogue_features


def _number(value, where, name):
    """A start/end time: None, or a finite, non-negative number of seconds."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {name!r} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise DataError(f"{where}: {name!r} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _string(value, where, name):
    """A text field that Arrow can store (valid Unicode: JSON's "\\ud800" escapes decode to lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataError(f"{where}: {name!r} is not valid Unicode ({error.reason} at character {error.start})") from None
    return value


def _lines(path: str):
    """(line number, text) of the manifest's non-blank lines; a line that is not UTF-8 raises `DataError`."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{path}, line {number}: not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1}); "
                    "JSON Lines manifests must be UTF-8"
                ) from None
            if line.strip():
                yield number, line


class _AudioChecker:
    """Checks each audio file of a manifest once (readable, sane rate) and each segment against its file's length."""

    def __init__(self, folder: str):
        self.folder, self.durations = folder, {}

    def __call__(self, audio, start, at) -> str:
        if not isinstance(audio, str) or not audio:
            raise DataError(f"{at}: 'audio' must be a file path (a non-empty string), got {audio!r}")
        path = audio if os.path.isabs(audio) else os.path.join(self.folder, audio)
        if path not in self.durations:
            if not os.path.exists(path):
                raise MissingFileError(f"{at}: audio file {path!r} does not exist")
            try:
                info = audio_file_info(path)
            except AudioLoadError as error:
                raise AudioLoadError(f"{at}: {error}") from None
            self.durations[path] = info.frames / info.samplerate
        if start is not None and start >= self.durations[path]:
            raise DataError(
                f"{at}: start ({start} s) is not before the end of {path!r} ({self.durations[path]:.3f} s)"
            )
        return path


def read_manifest(path: str, report: SplitReport | None = None, check_ids: bool = True):
    """
    Yield the dialogue rows of a manifest (validated; relative audio paths resolved against its folder). Without
    `check_ids`, dialogue and utterance ids are not checked for duplicates, and memory stays flat however long the
    manifest is (the check keeps every id).
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"manifest {path!r} does not exist")
    check_audio = _AudioChecker(os.path.dirname(os.path.abspath(path)))
    seen, utterance_ids = {}, {}
    for number, line in _lines(path):
        where = f"{path}, line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
        except RecursionError:
            raise DataError(f"{where}: JSON nested deeper than Python can read (a dialogue needs 3 levels)") from None
        if not isinstance(entry, dict) or "utterances" not in entry or not isinstance(entry["utterances"], list):
            raise DataError(f"{where}: expected an object with an 'utterances' list")
        dialogue_id = _string(str(entry.get("dialogue_id", f"line{number}")), where, "dialogue_id")
        if check_ids:
            if dialogue_id in seen:
                raise DataError(f"{where}: duplicate dialogue_id {dialogue_id!r} (first at line {seen[dialogue_id]})")
            seen[dialogue_id] = number
        if not entry["utterances"]:
            if report is not None:
                report.skip("dialogue without utterances", where)
            continue
        row = {"dialogue_id": dialogue_id, **{column: [] for column in UTTERANCE_COLUMNS}}
        for index, utterance in enumerate(entry["utterances"]):
            at = f"{where}, utterance {index}"
            if not isinstance(utterance, dict) or not isinstance(utterance.get("text"), str):
                raise DataError(f"{at}: each utterance needs a 'text' string")
            start, end = _number(utterance.get("start"), at, "start"), _number(utterance.get("end"), at, "end")
            if start is not None and end is not None and end <= start:
                raise DataError(f"{at}: end ({end}) must be after start ({start})")
            audio = utterance.get("audio")
            if audio is not None:
                audio = check_audio(audio, start, at)
            utterance_id = _string(str(utterance.get("id", f"{dialogue_id}_utt{index}")), at, "id")
            if check_ids:
                if utterance_id in utterance_ids:
                    raise DataError(f"{at}: duplicate utterance id {utterance_id!r} (first at {utterance_ids[utterance_id]})")
                utterance_ids[utterance_id] = f"line {number}, utterance {index}"
            row["utterance_id"].append(utterance_id)
            row["text"].append(_string(utterance["text"], at, "text"))
            speaker = utterance.get("speaker")
            row["speaker"].append(None if speaker is None else _string(str(speaker), at, "speaker"))
            row["audio_path"].append(audio)
            row["audio_start"].append(start)
            row["audio_end"].append(end)
        yield row


def _generate_umd(spec: str, report: SplitReport):
    options = json.loads(spec)
    yield from read_manifest(options["manifest"][0], report)


def manifest_split(path: str) -> str:
    """The split a manifest's file name names: "validation" (dev/valid), "test", else "train"."""
    name = os.path.basename(path).lower()
    return "validation" if "dev" in name or "valid" in name else "test" if "test" in name else "train"


def manifests_in(folder: str) -> dict[str, str]:
    """split → path of the `*.jsonl` manifests of `folder`, the split from each file name (`manifest_split`)."""
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".jsonl"))
    if not paths:
        raise MissingFileError(f"folder {folder!r} holds no JSON Lines manifest (*.jsonl)")
    splits = {}
    for path in paths:
        split = manifest_split(path)
        if split in splits:
            raise DataError(f"{folder!r}: {splits[split]!r} and {path!r} both name split {split!r}; pass {{split: path}}")
        splits[split] = path
    return splits


def build_umd(manifest_paths, cache_dir: str | None = None, return_report: bool = False):
    """
    Pre-training dialogues (one row per dialogue) from JSON Lines manifests: `manifest_paths` is one path (→ split
    "train"), a folder of manifests (the split from each file name: dev/valid → validation, test, else train) or
    `{split: path}`. Each line: `{"dialogue_id": ..., "utterances": [{"text": ..., "speaker": ...,
    "audio": path, "start": s, "end": s}, ...]}` (audio/start/end/speaker optional; an optional "id" per utterance);
    relative audio paths are resolved against the manifest's folder.
    """
    if isinstance(manifest_paths, (str, os.PathLike)):
        path = str(manifest_paths)
        manifest_paths = manifests_in(path) if os.path.isdir(path) else {"train": path}
    splits, reports = {}, {}
    for split, path in manifest_paths.items():
        spec = {"kind": "umd", "manifest": file_identity(path)}
        splits[split], reports[split] = cached_split(_generate_umd, spec, dialogue_features(), cache_dir, split)
    return finish("UMD", splits, reports, return_report, {"tcmp_kind": "umd"})
