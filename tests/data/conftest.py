"""Fixtures for the data tests: tiny MELD CSVs, wavs, an IEMOCAP-layout folder, all written into tmp_path."""

import csv
import json
import os

import numpy as np
import pytest
import soundfile

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
               "Episode", "StartTime", "EndTime"]

# dialogue 0: A B A B A ; dialogue 1: A A B (speaker does not change at utt1)
MELD_ROWS = [
    ("hi there", "A", "joy", "positive", 0, 0),
    ("hello you", "B", "neutral", "neutral", 0, 1),
    ("i am sad today", "A", "sadness", "negative", 0, 2),
    ("oh no why", "B", "surprise", "negative", 0, 3),
    ("it is fine now", "A", "neutral", "neutral", 0, 4),
    ("one", "A", "neutral", "neutral", 1, 0),
    ("two", "A", "neutral", "neutral", 1, 1),
    ("three four", "B", "anger", "negative", 1, 2),
]


def write_meld_csv(path, rows=MELD_ROWS, header=MELD_HEADER, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i, (text, speaker, emotion, sentiment, d, u) in enumerate(rows):
            row = dict(zip(MELD_HEADER, [i + 1, text, speaker, emotion, sentiment, d, u, 1, 1, "00:00:01,000",
                                         "00:00:02,000"]))
            writer.writerow([row[h] for h in header])
    return path


def write_manifest(folder, dialogues):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "umd.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in dialogues))
    return path


def write_wav(path, seconds=0.2, rate=16000, value=0.1):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (value * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


@pytest.fixture
def meld_dir(tmp_path):
    folder = tmp_path / "meld"
    folder.mkdir()
    write_meld_csv(folder / "train_sent_emo.csv")
    write_meld_csv(folder / "dev_sent_emo.csv", MELD_ROWS[:5])
    return folder


@pytest.fixture
def meld_media(tmp_path):
    folder = tmp_path / "clips"
    for _, _, _, _, d, u in MELD_ROWS:
        write_wav(str(folder / f"dia{d}_utt{u}.wav"))
    return folder


IEMOCAP_DIALOGUE = [  # id, start, end, text, code
    ("Ses01F_impro01_F000", 1.0, 2.0, "Excuse me.", "neu"),
    ("Ses01F_impro01_M000", 2.5, 3.0, "Do you have your forms?", "fru"),
    ("Ses01F_impro01_F001", 3.5, 4.0, "Yeah.", "xxx"),
    ("Ses01F_impro01_M001", 4.5, 5.0, "Let me see them.", "sur"),
    ("Ses01F_impro01_F002", 5.5, 6.0, "Is there a problem?", "ang"),
    ("Ses01F_impro01_M002", 6.5, 7.0, "Who told you to get in this line?", "exc"),
]


def write_iemocap(root, sessions=(1, 2), wav=True, dialogue=IEMOCAP_DIALOGUE):
    for session in sessions:
        base = root / "IEMOCAP_full_release" / f"Session{session}"
        names = [f"Ses0{session}F_impro0{k}" for k in (1, 2)]
        for name in names:
            (base / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (base / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
            lines, labels = [], ["% header line\n"]
            # written out of time order on purpose: the builder must sort by start time
            for uid, start, end, text, code in reversed(dialogue):
                uid = uid.replace("Ses01F_impro01", name)
                lines.append(f"{uid} [{start:08.4f}-{end:08.4f}]: {text}\n")
                labels.append(f"[{start:.4f} - {end:.4f}]\t{uid}\t{code}\t[2.5000, 2.5000, 2.5000]\n")
                if wav:
                    write_wav(str(base / "sentences" / "wav" / name / f"{uid}.wav"))
            lines.append("M_xxx [007.0000-008.0000]: [LAUGHTER]\n")
            (base / "dialog" / "transcriptions" / f"{name}.txt").write_text("".join(lines))
            (base / "dialog" / "EmoEvaluation" / f"{name}.txt").write_text("\n".join(labels))
    return root
