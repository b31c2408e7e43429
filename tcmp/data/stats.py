"""Table-1 statistics (NU, ADL, AWL, per-class counts) of built datasets, printed next to the paper's."""

from collections import Counter

PAPER_TABLE1 = {
    "pmeld": {
        "classes": ("positive", "negative", "neutral"),
        "train": {"NU": 4687, "ADL": 4.7, "AWL": 9.9, "counts": (1009, 1536, 2142)},
        "validation": {"NU": 506, "ADL": 4.7, "AWL": 10.0, "counts": (111, 199, 196)},
        "test": {"NU": 1178, "ADL": 4.7, "AWL": 9.9, "counts": (237, 405, 536)},
    },
    "piem": {
        "classes": ("frustrated", "excited", "neutral", "angry", "sad", "happy", "other"),
        "train": {"NU": 4512, "ADL": 19.5, "AWL": 13.1, "counts": (731, 864, 348, 521, 1335, 592, 121)},
        "validation": {"NU": 1737, "ADL": 19.8, "AWL": 13.7, "counts": (401, 215, 57, 109, 592, 317, 46)},
        "test": {"NU": 1861, "ADL": 19.8, "AWL": 13.9, "counts": (375, 341, 131, 241, 549, 180, 44)},
    },
}
"""The paper's Table 1 (P-MELD and P-IEM), by split."""


def dataset_stats(dataset_dict) -> dict:
    """
    Per split: `NU` (rows: samples, or dialogues for pre-training data), `ADL` (average number of utterances per row:
    the context length of a sample, the length of a dialogue), `AWL` (average words per utterance over every
    utterance of every row, context utterances counted once per sample that holds them; words = whitespace-separated
    tokens), `utterances` (total), and `classes` (class name → count, in the label's order) when rows have a `label`.
    Reads the columns in batches (no whole-corpus load). Accepts a `DatasetDict` or any mapping split → Dataset.
    """
    stats = {}
    for split, dataset in dataset_dict.items():
        rows = len(dataset)
        utterances = words = 0
        for batch in dataset.select_columns(["text"]).iter(batch_size=1000):
            for texts in batch["text"]:
                utterances += len(texts)
                words += sum(len((text or "").split()) for text in texts)
        entry = {"NU": rows, "ADL": utterances / rows if rows else 0.0, "AWL": words / utterances if utterances else 0.0,
                 "utterances": utterances}
        if "label" in dataset.column_names:
            names = dataset.features["label"].names
            counts = Counter(dataset["label"])
            entry["classes"] = {name: counts.get(i, 0) for i, name in enumerate(names)}
        stats[split] = entry
    return stats


def format_stats(stats: dict, paper: str | None = None) -> str:
    """
    A Markdown table of `dataset_stats(...)`; with `paper="pmeld"` or `"piem"` each split is followed by the paper's
    Table 1 row (classes matched by name; a class the paper has not is shown as "-").
    """
    names = []
    for entry in stats.values():
        for name in entry.get("classes", {}):
            if name not in names:
                names.append(name)
    reference = PAPER_TABLE1.get(paper) if paper else None
    if reference:
        names = [n for n in reference["classes"] if n in names] + [n for n in names if n not in reference["classes"]]
    header = ["split", "NU", "ADL", "AWL", *[n[:3].capitalize() if len(names) > 3 else n for n in names]]
    if not names:
        header[1:3] = ["dialogues", "avg len"]
        header.append("utterances")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for split, entry in stats.items():
        cells = [split, str(entry["NU"]), f"{entry['ADL']:.1f}", f"{entry['AWL']:.1f}"]
        cells += [str(entry.get("classes", {}).get(n, 0)) for n in names]
        if not names:
            cells.append(str(entry["utterances"]))
        lines.append("| " + " | ".join(cells) + " |")
        if reference and split in reference:
            row = reference[split]
            counts = dict(zip(reference["classes"], row["counts"]))
            cells = [f"{split} (paper)", str(row["NU"]), f"{row['ADL']:.1f}", f"{row['AWL']:.1f}"]
            cells += [str(counts.get(n, "-")) for n in names]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
