"""P-IEM: pre-recognition samples from an `IEMOCAP_full_release` folder."""

import hashlib
import json
import os
import re

from ..audio_utils import check_audio
from .common import SplitReport, cached_split, finish, folder_identity
from ..errors import DataError, MissingFileError
from .rule import ReconstructionRule, make_samples
from .schema import prerecognition_features

LABELS = ("frustrated", "excited", "neutral", "angry", "sad", "happy", "other")
FOLD = {"neu": "neutral", "fru": "frustrated", "sad": "sad", "ang": "angry", "hap": "happy", "exc": "excited",
        "sur": "other", "fea": "other", "dis": "other", "oth": "other", "xxx": None}
"""IEMOCAP codes → P-IEM classes (surprised, fearful, disgusted and other fold into `other`; `xxx` is never a target)."""

UTTERANCE_ID = re.compile(r"^Ses\d\d[FM]_\w+_([FM])\d+[a-z]?$")
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\]:\s?(.*)$")
LABEL_LINE = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t")


def find_root(root: str) -> str:
    if not os.path.isdir(root):
        raise MissingFileError(f"IEMOCAP folder {root!r} does not exist")
    nested = os.path.join(root, "IEMOCAP_full_release")
    return nested if os.path.isdir(nested) else root


def read_labels(path: str) -> dict[str, str]:
    if not os.path.exists(path):
        raise MissingFileError(f"IEMOCAP label file {path!r} is missing")
    labels = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            match = LABEL_LINE.match(line)
            if not match:
                continue
            uid, code = match.group(3), match.group(4).lower()
            if code not in FOLD:
                raise DataError(f"{path}, line {number}: unknown emotion code {code!r} for {uid} (known: {sorted(FOLD)})")
            labels[uid] = code
    return labels


def read_dialogue(session_dir: str, name: str, use_audio: bool, report: SplitReport) -> list[dict]:
    """The utterances of one dialogue, ordered by start time, with folded labels (None for `xxx`/unlabelled)."""
    transcript = os.path.join(session_dir, "dialog", "transcriptions", name + ".txt")
    labels = read_labels(os.path.join(session_dir, "dialog", "EmoEvaluation", name + ".txt"))
    utterances, seen = [], {}
    with open(transcript, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            match = TRANSCRIPT_LINE.match(line.strip())
            if not match:
                if line.strip():
                    report.note("transcription line not in `<id> [start-end]: text` form (ignored)")
                continue
            uid, start, text = match.group(1), float(match.group(2)), match.group(4).strip()
            speaker = UTTERANCE_ID.match(uid)
            if not speaker:
                report.note("transcription line whose id is not an utterance id (e.g. M_xxx), ignored")
                continue
            if uid in seen:
                raise DataError(f"{transcript}, line {number}: duplicate utterance id {uid} (first at line {seen[uid]})")
            seen[uid] = number
            code = labels.get(uid)
            if code is None:
                report.note("utterance without a label line (context only)")
            elif code == "xxx":
                report.note("utterance labelled xxx (no agreement; context only)")
            audio = None
            if use_audio:
                wav = os.path.join(session_dir, "sentences", "wav", name, uid + ".wav")
                problem = check_audio(wav)
                if problem is None:
                    audio = os.path.abspath(wav)
                else:
                    report.note("utterance without a usable wav")
                    report.examples.setdefault("utterance without a usable wav", [])
                    if len(report.examples["utterance without a usable wav"]) < 5:
                        report.examples["utterance without a usable wav"].append(problem)
            utterances.append({"utterance_id": uid, "text": text, "speaker": speaker.group(1), "start": start,
                               "audio_path": audio, "audio_start": None, "audio_end": None,
                               "label": FOLD.get(code) if code else None})
    utterances.sort(key=lambda u: u["start"])
    return utterances


def dialogue_names(session_dir: str) -> list[str]:
    folder = os.path.join(session_dir, "dialog", "transcriptions")
    if not os.path.isdir(folder):
        raise MissingFileError(f"IEMOCAP transcription folder {folder!r} is missing")
    return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".txt") and not name.startswith("."))


def _generate_piem(spec: str, report: SplitReport):
    options = json.loads(spec)
    rule = ReconstructionRule(**options["rule"])
    for session, name in options["dialogues"]:
        session_dir = os.path.join(options["root"], f"Session{session}")
        utterances = read_dialogue(session_dir, name, options["use_audio"], report)
        samples, skips = make_samples(utterances, rule, name, require_audio=options["use_audio"])
        for reason, where in skips:
            report.skip(reason, where)
        yield from samples


def split_dialogues(root, train_sessions, test_sessions, dev_sessions, dev_fraction) -> dict[str, list]:
    def names(sessions):
        out = []
        for session in sessions:
            session_dir = os.path.join(root, f"Session{session}")
            if not os.path.isdir(session_dir):
                raise MissingFileError(f"IEMOCAP session folder {session_dir!r} is missing")
            out += [[session, name] for name in dialogue_names(session_dir)]
        return out

    train = names(train_sessions)
    if dev_sessions:
        dev = names(dev_sessions)
    else:
        ranked = sorted(train, key=lambda item: hashlib.sha1(item[1].encode()).hexdigest())
        dev = sorted(ranked[: int(round(dev_fraction * len(train)))])
        train = [item for item in train if item not in dev]
    splits = {"train": train, "validation": dev, "test": names(test_sessions)}
    return {split: items for split, items in splits.items() if items}


def build_piem(
    root: str,
    rule: ReconstructionRule | dict | None = None,
    train_sessions=(1, 2, 3, 4),
    test_sessions=(5,),
    dev_sessions=None,
    dev_fraction: float = 0.2,
    use_audio: bool | None = None,
    cache_dir: str | None = None,
    return_report: bool = False,
):
    """
    P-IEM from an `IEMOCAP_full_release` folder (or its parent). Transcripts from
    `Session*/dialog/transcriptions/*.txt`, labels from `Session*/dialog/EmoEvaluation/*.txt` folded to 7 classes
    (`FOLD`; `xxx` and unlabelled utterances stay in contexts but are never targets), audio from
    `Session*/sentences/wav/<dialog>/<utt>.wav`. Utterances are ordered by start time; the speaker is F or M.

    Splits: `test_sessions` → test. Dev: the dialogues of `dev_sessions` when given (then `train_sessions` are all
    train); otherwise (default) a deterministic `dev_fraction` of the train sessions' *dialogues* (those whose
    SHA-1 of the name ranks lowest), so no dialogue is split across train and dev. The paper's sizes suggest it used
    `train_sessions=(1, 2, 3), dev_sessions=(4,)`.
    `use_audio`: None → True when `Session*/sentences/wav` exists for every session; with audio, samples whose
    context has an utterance without a usable wav are skipped (counted).
    """
    rule = ReconstructionRule.from_value(rule)
    root = find_root(root)
    sessions = sorted(set(train_sessions) | set(test_sessions) | set(dev_sessions or ()))
    if use_audio is None:
        use_audio = all(os.path.isdir(os.path.join(root, f"Session{s}", "sentences", "wav")) for s in sessions)
    splits, reports = {}, {}
    for split, dialogues in split_dialogues(root, train_sessions, test_sessions, dev_sessions, dev_fraction).items():
        identity = [folder_identity(os.path.join(root, f"Session{s}", "dialog"), (".txt",)) for s in sessions]
        if use_audio:
            identity += [folder_identity(os.path.join(root, f"Session{s}", "sentences", "wav"), (".wav",))
                         for s in sessions]
        spec = {"kind": "piem", "root": os.path.abspath(root), "dialogues": dialogues, "rule": rule.to_dict(),
                "use_audio": use_audio, "identity": identity}
        splits[split], reports[split] = cached_split(_generate_piem, spec, prerecognition_features(LABELS), cache_dir, split)
    description = {"tcmp_kind": "piem", "rule": rule.to_dict(), "audio": use_audio}
    return finish("P-IEM", splits, reports, return_report, description)
