"""P-MELD: pre-recognition samples from MELD's CSVs (and optionally its per-utterance clips)."""

import codecs
import csv
import io
import json
import os

from ..audio_utils import check_audio, extract_audio
from .common import cached_split, file_identity, finish, folder_identity
from .common import SplitReport
from ..errors import DataError, MissingFileError
from .rule import ReconstructionRule, make_samples
from .schema import dialogue_features, prerecognition_features, utterance_columns

CSV_FILES = {"train": "train_sent_emo.csv", "validation": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
MEDIA_SUBFOLDERS = {"train": "train_splits", "validation": "dev_splits_complete", "test": "output_repeated_splits_test"}
LABELS = {
    "sentiment": ("negative", "neutral", "positive"),
    "emotion": ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"),
}
LABEL_COLUMN = {"sentiment": "Sentiment", "emotion": "Emotion"}
REQUIRED_COLUMNS = ("Utterance", "Speaker", "Dialogue_ID", "Utterance_ID")
GAP_POLICIES = ("bridge", "break", "error")


def decode_csv(path: str, report: SplitReport | None = None) -> str:
    """
    The text of a CSV: UTF-16 when it starts with a UTF-16 byte-order mark (as spreadsheet programs save "Unicode
    text"), else UTF-8 where it decodes and each other line as cp1252 (or latin-1); both noted in `report`.
    """
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: starts as UTF-16 but does not decode ({error.reason} at byte {error.start})") from None
        if report is not None:
            report.note(f"{os.path.basename(path)}: decoded as UTF-16")
        return text
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    lines = []
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                lines.append(line.decode("cp1252"))
                encoding = "cp1252"
            except UnicodeDecodeError:
                lines.append(line.decode("latin-1"))
                encoding = "latin-1"
            if report is not None:
                report.note(f"{os.path.basename(path)}: lines not UTF-8, decoded as {encoding}")
    text = "".join(lines)
    return text[1:] if text.startswith("\ufeff") else text


def read_meld_csv(path: str, label_type: str, report: SplitReport) -> dict[int, list[dict]]:
    """
    Dialogue id → its rows sorted by utterance id; each row with `line` (CSV line number, for messages). An empty
    file, or one with a header and no rows (its split would be empty), is a `DataError` naming it.
    """
    label_column = LABEL_COLUMN[label_type]
    names = LABELS[label_type]
    text = decode_csv(path, report)
    if not text.strip():
        raise DataError(f"{path}: the file is empty (a MELD CSV starts with its header: {', '.join(REQUIRED_COLUMNS)}, ...)")
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # one utterance may be the whole file
    reader = csv.DictReader(io.StringIO(text, newline=""))  # "\r", "\n" and "\r\n" all end a row
    rows = _csv_rows(reader, path)
    columns = [c.strip() for c in (next(rows) or [])]
    for column in (*REQUIRED_COLUMNS, label_column):
        if column not in columns:
            listed = repr(columns) if len(repr(columns)) <= 300 else repr(columns)[:300] + "…"
            raise DataError(f"{path}: required column {column!r} is missing (columns: {listed}; is it a MELD CSV?)")
    dialogues: dict[int, dict[int, dict]] = {}
    for index, raw in enumerate(rows):
        line = reader.line_num
        where = f"{path}, row {index + 1} (line {line})"
        if None in raw.values():
            present = sum(value is not None for key, value in raw.items() if key is not None)
            raise DataError(
                f"{where}: only {present} of {len(reader.fieldnames)} columns (a row cut short, or a quote left open)"
            )
        row = {(k or "").strip(): v for k, v in raw.items()}
        try:
            dialogue, utterance = int(row["Dialogue_ID"].strip()), int(row["Utterance_ID"].strip())
        except ValueError:
            raise DataError(
                f"{where}: Dialogue_ID/Utterance_ID must be integers, got {row['Dialogue_ID']!r}/{row['Utterance_ID']!r}"
            ) from None
        label = row[label_column].strip().lower()
        if label not in names:
            raise DataError(f"{where}: unknown {label_column} label {row[label_column]!r} (expected one of {list(names)})")
        turns = dialogues.setdefault(dialogue, {})
        if utterance in turns:
            raise DataError(
                f"{where}: duplicate utterance id dia{dialogue}_utt{utterance} (first at line {turns[utterance]['line']})"
            )
        turns[utterance] = {"text": row["Utterance"], "speaker": row["Speaker"].strip(), "label": label, "line": line}
    if not dialogues:
        split = {name: split for split, name in CSV_FILES.items()}.get(os.path.basename(path), "its")
        raise DataError(f"{path}: a header and no rows: the {split} split would be empty (0 utterances)")
    return {d: [dict(turns[u], number=u) for u in sorted(turns)] for d, turns in sorted(dialogues.items())}


def _csv_rows(reader: csv.DictReader, path: str):
    """The header (first), then the rows of `reader`; a malformed CSV raises `DataError` naming the line."""
    try:
        yield reader.fieldnames
        yield from reader
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: not a readable CSV row ({error})") from None


def _clip_folder(media_dir: str, split: str) -> str:
    sub = os.path.join(media_dir, MEDIA_SUBFOLDERS[split])
    return sub if os.path.isdir(sub) else media_dir


def _generate_pmeld(spec: str, report: SplitReport):
    options = json.loads(spec)
    rule = ReconstructionRule(**options["rule"])
    csv_path = options["csv"][0]
    media = options["media_dir"]
    clips = _clip_folder(media, options["split"]) if media else None
    audio_cache = os.path.join(options["audio_cache"], options["split"]) if media else None
    for dialogue, rows in read_meld_csv(csv_path, options["label_type"], report).items():
        utterances = []
        for position, row in enumerate(rows):
            uid = f"dia{dialogue}_utt{row['number']}"
            gap = position > 0 and row["number"] != rows[position - 1]["number"] + 1
            if gap:
                where = f"{csv_path}: dialogue {dialogue}, before {uid} (line {row['line']})"
                if options["on_gap"] == "error":
                    raise DataError(f"{where}: gap in utterance ids ({rows[position - 1]['number']} → {row['number']})")
                report.note(f"gap in utterance ids ({options['on_gap']})")
            audio = None
            if clips:
                audio = _find_clip(clips, audio_cache, uid, report)
            utterances.append({
                "utterance_id": uid, "text": row["text"], "speaker": row["speaker"], "audio_path": audio,
                "audio_start": None, "audio_end": None, "label": row["label"],
                "break_before": gap and options["on_gap"] == "break",
            })
        samples, skips = make_samples(utterances, rule, f"dia{dialogue}", require_audio=bool(clips))
        for reason, where in skips:
            report.skip(reason, f"{csv_path}: {where}")
        yield from samples


def _find_clip(clips: str, audio_cache: str, uid: str, report: SplitReport) -> str | None:
    wav = os.path.join(clips, uid + ".wav")
    if not os.path.exists(wav):
        media = os.path.join(clips, uid + ".mp4")
        if not os.path.exists(media):
            report.note("utterance without a clip in the media folder")
            report.examples.setdefault("utterance without a clip", [])
            if len(report.examples["utterance without a clip"]) < 5:
                report.examples["utterance without a clip"].append(uid)
            return None
        wav = os.path.join(audio_cache, uid + ".wav")
        if not os.path.exists(wav):
            try:
                extract_audio(media, wav)
            except DataError as error:
                report.note(f"clip not extracted: {str(error)[:200]}")
                return None
    problem = check_audio(wav)
    if problem is not None:
        report.note("unusable audio clip (missing/unreadable/empty/absurd rate)")
        report.examples.setdefault("unusable audio clip", [])
        if len(report.examples["unusable audio clip"]) < 5:
            report.examples["unusable audio clip"].append(problem)
        return None
    return os.path.abspath(wav)


def meld_csv_files(csv_dir: str) -> dict[str, str]:
    """split → path of each of MELD's CSVs present in `csv_dir` (a `MissingFileError` if none is)."""
    if not os.path.isdir(csv_dir):
        raise MissingFileError(f"MELD CSV folder {csv_dir!r} does not exist")
    present = {split: os.path.join(csv_dir, name) for split, name in CSV_FILES.items()
               if os.path.exists(os.path.join(csv_dir, name))}
    if not present:
        raise MissingFileError(f"{csv_dir!r} holds none of MELD's CSVs {list(CSV_FILES.values())}")
    return present


def build_pmeld(
    csv_dir: str,
    media_dir: str | None = None,
    label_type: str = "sentiment",
    rule: ReconstructionRule | dict | None = None,
    cache_dir: str | None = None,
    on_gap: str = "bridge",
    return_report: bool = False,
):
    """
    P-MELD from MELD's CSVs in `csv_dir` (`train_sent_emo.csv` → train, `dev_sent_emo.csv` → validation,
    `test_sent_emo.csv` → test; whichever exist).

    `media_dir`: per-utterance clips `dia{D}_utt{U}.wav` (used as they are) or `.mp4` (audio extracted with ffmpeg
    into `<cache>/tcmp_meld_audio/`), either directly in the folder or in MELD's split subfolders (`train_splits`,
    `dev_splits_complete`, `output_repeated_splits_test`). With media, a sample whose context has an utterance without
    a usable clip is skipped (counted); without media the dataset is text-only (`audio_path` all None).
    `label_type`: "sentiment" (3 classes) or "emotion" (7 classes).
    `on_gap` (a dialogue whose utterance ids skip a number, as 72 of MELD's training dialogues do): "bridge" keeps
    the utterances in order (counted note), "break" lets no context span the gap (skips counted), "error" raises.
    """
    if label_type not in LABELS:
        raise DataError(f"label_type must be 'sentiment' or 'emotion', got {label_type!r}")
    if on_gap not in GAP_POLICIES:
        raise DataError(f"on_gap must be one of {GAP_POLICIES}, got {on_gap!r}")
    rule = ReconstructionRule.from_value(rule)
    present = meld_csv_files(csv_dir)
    if media_dir is not None and not os.path.isdir(media_dir):
        raise MissingFileError(f"media folder {media_dir!r} does not exist")
    from datasets import config

    audio_cache = os.path.join(cache_dir or config.HF_DATASETS_CACHE, "tcmp_meld_audio")
    splits, reports = {}, {}
    for split, path in present.items():
        spec = {
            "kind": "pmeld", "csv": file_identity(path), "label_type": label_type, "rule": rule.to_dict(),
            "on_gap": on_gap, "media_dir": os.path.abspath(media_dir) if media_dir else None,
            "media": folder_identity(media_dir, (".wav", ".mp4")) if media_dir else None, "audio_cache": audio_cache,
        }
        splits[split], reports[split] = cached_split(
            _generate_pmeld, spec, prerecognition_features(LABELS[label_type]), cache_dir, split
        )
    description = {"tcmp_kind": "pmeld", "rule": rule.to_dict(), "label_type": label_type, "audio": bool(media_dir)}
    return finish("P-MELD", splits, reports, return_report, description)


def _generate_meld_dialogues(spec: str, report: SplitReport):
    options = json.loads(spec)
    for dialogue, rows in read_meld_csv(options["csv"][0], "sentiment", report).items():
        utterances = [
            {"utterance_id": f"dia{dialogue}_utt{row['number']}", "text": row["text"], "speaker": row["speaker"]}
            for row in rows
        ]
        yield {"dialogue_id": f"dia{dialogue}", **utterance_columns(utterances)}


def build_meld_dialogues(csv_dir: str, cache_dir: str | None = None, return_report: bool = False):
    """
    MELD's dialogues as unlabelled pre-training dialogues (one row per dialogue, text only; the labels are not
    kept), from the CSVs in `csv_dir`: train, validation and test for whichever of MELD's CSVs exist.
    """
    present = meld_csv_files(csv_dir)
    splits, reports = {}, {}
    for split, path in present.items():
        spec = {"kind": "meld_dialogues", "csv": file_identity(path)}
        splits[split], reports[split] = cached_split(_generate_meld_dialogues, spec, dialogue_features(), cache_dir, split)
    return finish("MELD dialogues", splits, reports, return_report, {"tcmp_kind": "meld_dialogues"})
