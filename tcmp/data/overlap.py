"""
What a pre-training corpus shares with evaluation data: utterances of at least `MIN_WORDS` words that are equal once
normalised (`normalise_utterance`). `find_overlap` counts them; `exclude_overlap` removes them from the pre-training
dialogues, splitting each dialogue there, so that no pre-training window holds one or spans the hole it leaves.
"""

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from ..errors import DataError

MIN_WORDS = 4
"""Shorter utterances ("Oh my God!", "What?") recur everywhere and say nothing about shared dialogues."""
EVALUATION_SPLITS = ("validation", "test")
QUOTES = str.maketrans({"‘": "'", "’": "'", "‛": "'", "`": "'", "“": '"', "”": '"'})


def normalise_utterance(text: str) -> str:
    """NFKC, curly quotes as ASCII, lower case, apostrophes dropped, other punctuation as spaces, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text or "").translate(QUOTES).casefold().replace("'", "")
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def shared_key(text: str) -> str | None:
    """The normalised utterance when it has at least `MIN_WORDS` words, else None (never counted as shared)."""
    normalised = normalise_utterance(text)
    return normalised if len(normalised.split()) >= MIN_WORDS else None


def evaluation_part(dialogues, source: str = "the evaluation source"):
    """The validation and test splits of a `DatasetDict` of dialogues (a `DataError` when it has neither)."""
    present = {split: dialogues[split] for split in EVALUATION_SPLITS if split in dialogues}
    if not present:
        raise DataError(f"{source}: no validation or test split to compare with (splits: {sorted(dialogues)})")
    return present


def evaluation_keys(evaluation) -> set[str]:
    """The `shared_key`s of every utterance of the evaluation dialogues (split → Dataset)."""
    return {key for dataset in evaluation.values() for texts in dataset["text"] for key in map(shared_key, texts) if key}


@dataclass
class OverlapReport:
    """Per split of each side: dialogues, dialogues sharing an utterance, utterances of >= MIN_WORDS words, shared ones."""

    pretraining: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)

    def format(self) -> str:
        lines = [f"utterances of >= {MIN_WORDS} words, equal after normalisation (case, punctuation, spacing):",
                 "| side | split | dialogues | dialogues sharing one | utterances checked | utterances shared |",
                 "|---|---|---|---|---|---|"]
        for side, splits in (("pre-training", self.pretraining), ("evaluation", self.evaluation)):
            for split, counts in splits.items():
                lines.append(f"| {side} | {split} | {counts['dialogues']} | {counts['dialogues_sharing']} | "
                             f"{counts['utterances']} | {counts['shared']} |")
        lines += [f"  e.g. evaluation {ours} = pre-training {theirs}" for ours, theirs in self.examples]
        return "\n".join(lines)


def _count(dialogues, other: dict[str, str], examples: list | None = None) -> dict:
    """Counts of one split against `other` (shared key → an utterance id of the other side)."""
    counts = Counter(dialogues=len(dialogues))
    for ids, texts in zip(dialogues["utterance_id"], dialogues["text"]):
        hits = 0
        for uid, key in zip(ids, map(shared_key, texts)):
            if key:
                counts["utterances"] += 1
                if key in other:
                    hits += 1
                    if examples is not None and len(examples) < 5:
                        examples.append((uid, other[key]))
        counts["shared"] += hits
        counts["dialogues_sharing"] += hits > 0
    return {name: counts[name] for name in ("dialogues", "dialogues_sharing", "utterances", "shared")}


def find_overlap(pretraining, evaluation) -> OverlapReport:
    """What the pre-training dialogues (split → Dataset) share with the evaluation dialogues (split → Dataset)."""

    def first_ids(splits):
        keys = {}
        for dataset in splits.values():
            for ids, texts in zip(dataset["utterance_id"], dataset["text"]):
                for uid, key in zip(ids, map(shared_key, texts)):
                    if key:
                        keys.setdefault(key, uid)
        return keys

    pretraining_keys, evaluation_ids = first_ids(pretraining), first_ids(evaluation)
    report = OverlapReport()
    report.pretraining = {split: _count(data, evaluation_ids) for split, data in pretraining.items()}
    report.evaluation = {split: _count(data, pretraining_keys, report.examples) for split, data in evaluation.items()}
    return report


def exclude_overlap(dialogues, evaluation):
    """
    The pre-training dialogues (a `DatasetDict`) without the utterances they share with `evaluation` (split →
    Dataset): each dialogue is split at its shared utterances and the pieces of fewer than 2 utterances are left
    out, as is a split left without dialogues. Returns `(DatasetDict, Counter)` of what was removed.
    """
    from datasets import DatasetDict

    keys = evaluation_keys(evaluation)
    removed = Counter()

    def split_dialogues(batch):
        pieces = {name: [] for name in batch}
        for row in (dict(zip(batch, values)) for values in zip(*batch.values())):
            shared = [i for i, text in enumerate(row["text"]) if shared_key(text) in keys]
            removed["shared utterances"] += len(shared)
            removed["dialogues cut"] += bool(shared)
            bounds = [-1, *shared, len(row["text"])]
            for number, (start, end) in enumerate(zip(bounds, bounds[1:])):
                if end - start - 1 < 2:
                    removed["pieces of fewer than 2 utterances (left out)"] += end - start - 1 > 0
                    continue
                for name, value in row.items():
                    pieces[name].append(value[start + 1:end] if isinstance(value, list) else
                                        value if not shared else f"{value}#{number}")
        return pieces

    result = DatasetDict()
    for split, data in dialogues.items():
        result[split] = data.map(split_dialogues, batched=True, load_from_cache_file=False,
                                 desc=f"excluding overlap ({split})")
        if not len(result[split]):
            del result[split]
            removed[f"split {split} left without dialogues (left out)"] += 1
    return result, removed
