"""P-DD: pre-recognition samples from DailyDialog's official release (text only, two implicit alternating speakers)."""

import json
import os
import re

from .common import SplitReport, cached_split, file_identity, finish
from ..errors import DataError, MissingFileError
from .rule import ReconstructionRule, make_samples
from .schema import SPLITS, dialogue_features, prerecognition_features, utterance_columns

LABELS = {
    "emotion": ("no emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise"),
    "act": ("inform", "question", "directive", "commissive"),
}
FIRST_CODE = {"emotion": 0, "act": 1}
"""The code of each label type's first class: emotions are coded 0–6, dialogue acts 1–4."""
END_OF_UTTERANCE = "__eou__"
SPEAKERS = ("A", "B")
SPEAKER_NOTE = "speakers implicit: the release names none, utterances alternate A, B, A, ..."
DUPLICATE_REASON = "evaluation dialogue identical to a training dialogue (leakage; keep_duplicates=True keeps it)"
MISMATCH_REASON = "dialogue whose utterance and label counts differ (left out)"


def dialogue_file(folder: str, split: str) -> str | None:
    """`<folder>/<split>/dialogues_<split>.txt` (the release's layout) or `<folder>/dialogues_<split>.txt`, if present."""
    for path in (os.path.join(folder, split, f"dialogues_{split}.txt"), os.path.join(folder, f"dialogues_{split}.txt")):
        if os.path.isfile(path):
            return path
    return None


def dailydialog_files(folder: str) -> dict[str, str]:
    """split → dialogue file of each split present in `folder` (a `MissingFileError` if none is)."""
    if not os.path.isdir(folder):
        raise MissingFileError(f"DailyDialog folder {folder!r} does not exist")
    present = {split: path for split in SPLITS if (path := dialogue_file(folder, split))}
    if not present:
        raise MissingFileError(
            f"{folder!r} holds no DailyDialog split (<split>/dialogues_<split>.txt for train, validation or test)"
        )
    return present


def label_file(path: str, label_type: str) -> str:
    """The `dialogues_{emotion,act}_<split>.txt` beside the dialogue file `path` (a `MissingFileError` if absent)."""
    folder, name = os.path.split(path)
    codes = os.path.join(folder, name.replace("dialogues_", f"dialogues_{label_type}_", 1))
    if not os.path.isfile(codes):
        raise MissingFileError(f"{path}: the {label_type} file {codes!r} beside it is missing")
    return codes


def _lines(path: str) -> list[str]:
    """The lines of a release file, trailing blank lines left out; a line that is not UTF-8 raises `DataError`."""
    with open(path, "rb") as handle:
        raw = handle.read().split(b"\n")
    while raw and not raw[-1].strip():
        raw.pop()
    lines = []
    for number, line in enumerate(raw, start=1):
        try:
            lines.append(line.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r"))
        except UnicodeDecodeError as error:
            raise DataError(f"{path}, line {number}: not UTF-8 (byte {line[error.start]:#04x} at column {error.start + 1})") from None
    return lines


def split_utterances(line: str, path: str, number: int) -> list[str]:
    """The utterances of one dialogue line (` __eou__ `-separated, ending in `__eou__`)."""
    if not line.rstrip().endswith(END_OF_UTTERANCE):
        shown = line if len(line) <= 80 else "…" + line[-80:]
        raise DataError(f"{path}, line {number}: does not end with {END_OF_UTTERANCE!r} (a dialogue line must): {shown!r}")
    return [text.strip() for text in line.rstrip()[: -len(END_OF_UTTERANCE)].split(END_OF_UTTERANCE)]


def read_codes(path: str, label_type: str) -> list[list[int]]:
    """The label codes of each line of a `dialogues_{emotion,act}_<split>.txt`, checked to be in range."""
    first = FIRST_CODE[label_type]
    last = first + len(LABELS[label_type]) - 1
    rows = []
    for number, line in enumerate(_lines(path), start=1):
        codes = []
        for value in line.split():
            if not re.fullmatch(r"\d+", value) or not first <= int(value) <= last:
                raise DataError(f"{path}, line {number}: {label_type} code {value!r} is not an integer in {first}..{last}")
            codes.append(int(value))
        rows.append(codes)
    return rows


def normalised_dialogue(utterances: list[str]) -> tuple[str, ...]:
    """A dialogue's utterances lower-cased, curly apostrophes straightened, all whitespace removed (the key of repeats:
    the release has copies of one dialogue tokenised differently, `sir.How` / `sir . How`)."""
    return tuple(re.sub(r"\s+", "", text.casefold().replace("’", "'").replace("‘", "'")) for text in utterances)


def read_dailydialog(path: str, label_type: str, report: SplitReport) -> list[dict]:
    """
    The dialogues of one split: per line `{"line", "texts", "labels"}` (labels as class names). A line whose
    utterance and label counts differ is left out and counted in `report` (the official release has one).
    """
    names, first = LABELS[label_type], FIRST_CODE[label_type]
    codes_path = label_file(path, label_type)
    lines, codes = _lines(path), read_codes(codes_path, label_type)
    if len(lines) != len(codes):
        raise DataError(f"{path} has {len(lines)} dialogue lines but {codes_path} has {len(codes)}: not the same release")
    dialogues = []
    for number, (line, line_codes) in enumerate(zip(lines, codes), start=1):
        texts = split_utterances(line, path, number)
        if len(texts) != len(line_codes):
            report.skip(MISMATCH_REASON, f"{path}, line {number}: {len(texts)} utterances, {len(line_codes)} {label_type} codes")
            continue
        dialogues.append({"line": number, "texts": texts, "labels": [names[code - first] for code in line_codes]})
    return dialogues


def training_dialogues(path: str) -> dict[tuple, int]:
    """Normalised dialogue → its first line in the training dialogue file `path`."""
    keys = {}
    for number, line in enumerate(_lines(path), start=1):
        keys.setdefault(normalised_dialogue(split_utterances(line, path, number)), number)
    return keys


def dialogue_utterances(split: str, dialogue: dict) -> list[dict]:
    """The rows `make_samples` takes: ids `<split>_<line>_u<index>`, speakers A/B alternating, no audio."""
    return [
        {"utterance_id": f"{split}_{dialogue['line']}_u{index}", "text": text, "speaker": SPEAKERS[index % 2],
         "audio_path": None, "audio_start": None, "audio_end": None, "label": label}
        for index, (text, label) in enumerate(zip(dialogue["texts"], dialogue["labels"]))
    ]


def _generate_pdd(spec: str, report: SplitReport):
    options = json.loads(spec)
    rule = ReconstructionRule(**options["rule"])
    path, split = options["dialogues"][0], options["split"]
    train = training_dialogues(options["train"][0]) if options["train"] else {}
    report.note(SPEAKER_NOTE)
    for dialogue in read_dailydialog(path, options["label_type"], report):
        repeated = train.get(normalised_dialogue(dialogue["texts"]))
        if repeated is not None:
            if not options["keep_duplicates"]:
                report.skip(DUPLICATE_REASON, f"{path}, line {dialogue['line']} (= train line {repeated})")
                continue
            report.note("evaluation dialogue identical to a training dialogue, kept (keep_duplicates=True)")
        samples, skips = make_samples(dialogue_utterances(split, dialogue), rule, f"{split}_{dialogue['line']}")
        for reason, where in skips:
            report.skip(reason, f"{path}: {where}")
        yield from samples


def build_pdd(
    folder: str,
    rule: ReconstructionRule | dict | None = None,
    label_type: str = "emotion",
    keep_duplicates: bool = False,
    cache_dir: str | None = None,
    return_report: bool = False,
):
    """
    P-DD from DailyDialog's release in `folder`: `<split>/dialogues_<split>.txt` with the
    `dialogues_{emotion,act}_<split>.txt` beside it (or all of them directly in `folder`), for whichever of train,
    validation and test are present. Text only; the speakers, which the release does not name, alternate A, B, ...

    `label_type`: "emotion" (7 classes, "no emotion" first) or "act" (4 dialogue acts).
    `keep_duplicates`: by default an evaluation dialogue (validation/test) identical to a training dialogue once
    case, spacing and curly apostrophes are ignored is left out (counted in the summary); True keeps it. Repeats
    inside train are kept. A line whose utterance and label counts differ is left out and named in the summary.
    """
    if label_type not in LABELS:
        raise DataError(f"label_type must be 'emotion' or 'act' for DailyDialog, got {label_type!r}")
    rule = ReconstructionRule.from_value(rule)
    present = dailydialog_files(folder)
    for path in present.values():
        label_file(path, label_type)
    splits, reports = {}, {}
    for split, path in present.items():
        compare = split != "train" and "train" in present
        spec = {
            "kind": "pdd", "dialogues": file_identity(path), "codes": file_identity(label_file(path, label_type)),
            "label_type": label_type, "rule": rule.to_dict(), "keep_duplicates": keep_duplicates,
            "train": file_identity(present["train"]) if compare else None,
        }
        splits[split], reports[split] = cached_split(
            _generate_pdd, spec, prerecognition_features(LABELS[label_type]), cache_dir, split
        )
    description = {"tcmp_kind": "pdd", "rule": rule.to_dict(), "label_type": label_type, "audio": False,
                   "keep_duplicates": keep_duplicates, "speakers": SPEAKER_NOTE}
    return finish("P-DD", splits, reports, return_report, description)


def _generate_dd_dialogues(spec: str, report: SplitReport):
    options = json.loads(spec)
    path, split = options["dialogues"][0], options["split"]
    report.note(SPEAKER_NOTE)
    for number, line in enumerate(_lines(path), start=1):
        texts = split_utterances(line, path, number)
        utterances = [{"utterance_id": f"{split}_{number}_u{i}", "text": text, "speaker": SPEAKERS[i % 2]}
                      for i, text in enumerate(texts)]
        yield {"dialogue_id": f"{split}_{number}", **utterance_columns(utterances)}


def build_dd_dialogues(folder: str, cache_dir: str | None = None, return_report: bool = False):
    """DailyDialog's dialogues as unlabelled pre-training dialogues (one row per line, text only, speakers A/B)."""
    splits, reports = {}, {}
    for split, path in dailydialog_files(folder).items():
        spec = {"kind": "dd_dialogues", "dialogues": file_identity(path)}
        splits[split], reports[split] = cached_split(_generate_dd_dialogues, spec, dialogue_features(), cache_dir, split)
    return finish("DailyDialog dialogues", splits, reports, return_report,
                  {"tcmp_kind": "dd_dialogues", "speakers": SPEAKER_NOTE})
