"""Shared pieces of the builders: input identities, build reports, and cached split building (`datasets` caching)."""

import hashlib
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict, Features

from ..errors import DataError, MissingFileError
from .rule import ReconstructionRule

logger = logging.getLogger("tcmp.data")


def file_identity(path: str) -> list:
    """(absolute path, size, mtime_ns) of a file: part of every cache key, so an edited input rebuilds."""
    if not os.path.exists(path):
        raise MissingFileError(f"missing file: {path!r}")
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def folder_identity(folder: str, suffixes: tuple[str, ...]) -> str:
    """A digest of the names, sizes and mtimes of the files under `folder` with one of `suffixes`."""
    digest = hashlib.sha1()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(suffixes):
                path = os.path.join(root, name)
                stat = os.stat(path)
                digest.update(f"{os.path.relpath(path, folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def code_version() -> str:
    """A digest of this package's source and the audio checks it uses: a code change invalidates every cached build."""
    digest = hashlib.sha1()
    here = os.path.dirname(os.path.abspath(__file__))
    sources = [os.path.join(here, name) for name in sorted(os.listdir(here)) if name.endswith(".py")]
    for path in [*sources, os.path.join(os.path.dirname(here), "audio_utils.py")]:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:16]


@dataclass
class SplitReport:
    """What a build of one split kept, skipped (reason → count, with the first few places) and noted."""

    rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)
    cached: bool = False

    def skip(self, reason: str, where: str):
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(where)

    def note(self, what: str, count: int = 1):
        self.notes[what] += count

    def to_json(self) -> dict:
        return {"rows": self.rows, "skipped": dict(self.skipped), "examples": self.examples, "notes": dict(self.notes)}

    @classmethod
    def from_json(cls, data: dict) -> "SplitReport":
        return cls(rows=data["rows"], skipped=Counter(data["skipped"]), examples=data["examples"],
                   notes=Counter(data["notes"]))


@dataclass
class BuildReport:
    """
    One build (`build_*(..., return_report=True)`, `load_*_dataset(..., return_report=True)`): the per-split reports
    and `info`, what was built (`tcmp_kind`, the reconstruction `rule`, options).
    """

    name: str
    splits: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def rule(self) -> ReconstructionRule | None:
        """The reconstruction rule the build applied; None when it has none (dialogues) or did not record it."""
        return ReconstructionRule.from_value(self.info["rule"]) if self.info.get("rule") else None

    @classmethod
    def of_saved(cls, name: str, dataset_dict) -> "BuildReport":
        """The report of a `save_to_disk` copy: row counts, and the info its build kept in `info.description`."""
        return cls(name, {split: SplitReport(rows=len(data), cached=True) for split, data in dataset_dict.items()},
                   saved_build_info(dataset_dict))

    @property
    def skipped(self) -> Counter:
        """Reason → count over all splits (the rule's own exclusions have reasons starting with `rule:`)."""
        return sum((report.skipped for report in self.splits.values()), Counter())

    @property
    def notes(self) -> Counter:
        """Note → count over all splits."""
        return sum((report.notes for report in self.splits.values()), Counter())

    def summary(self) -> str:
        lines = [f"[tcmp.data] {self.name} build summary"]
        for split, report in self.splits.items():
            state = " (from cache)" if report.cached else ""
            lines.append(f"  {split}: {report.rows} rows{state}")
            for reason, count in sorted(report.skipped.items()):
                examples = "; ".join(report.examples.get(reason, [])[:3])
                lines.append(f"    skipped {count}: {reason}  e.g. {examples}")
            for what, count in sorted(report.notes.items()):
                lines.append(f"    note {count}: {what}")
        return "\n".join(lines)

    def log(self):
        """The summary, once: through logging where it emits INFO records (the training scripts), else on stderr."""
        text = self.summary()
        if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
            logger.info(text)
        else:
            print(text, file=sys.stderr)


REPORT_FILE = "tcmp_build_report.json"


class SplitRun:
    """
    The generator `datasets` runs for one split, and its report: `generate(spec, report)` yields the rows and fills
    `report`, which stays None when `datasets` reuses its cache instead. `datasets` deep-copies the builder config
    that holds the generator, so a copy is this same object (and `report` reaches `cached_split`).
    """

    def __init__(self, generate):
        self.generate = generate
        self.report = None

    def __call__(self, spec: str):
        report = SplitReport()
        yield from self.generate(spec, report)
        self.report = report

    def __deepcopy__(self, memo):
        return self


def cached_split(generator, spec: dict, features: Features, cache_dir: str | None, split: str):
    """
    `Dataset.from_generator(generator, gen_kwargs={"spec": <spec as JSON>})`: `datasets` fingerprints the generator
    and the spec (which holds every option and the identity of every input file, plus this package's code version),
    writes the Arrow file into a `.incomplete` folder and renames it only when complete (an interrupted build leaves
    nothing a later build would reuse), and reuses it on an identical second build without calling the generator.

    The generator gets `spec` (a JSON string) and the `SplitReport` to fill. Returns `(dataset, SplitReport)`; the
    report of a cached build is read from the file saved next to its Arrow file.
    """
    spec = dict(spec, code=code_version(), split=split)
    spec_json = json.dumps(spec, sort_keys=True, default=str)
    run = SplitRun(generator)
    from datasets.exceptions import DatasetGenerationError

    try:
        dataset = Dataset.from_generator(
            run, features=features, cache_dir=cache_dir, gen_kwargs={"spec": spec_json}, split=split
        )
    except DatasetGenerationError as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, DataError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, DataError):  # our own clear message, not the library's wrapper
            raise cause.with_traceback(None) from None
        raise
    except ValueError as error:
        if "corresponds to no data" not in str(error) or run.report is None:
            raise
        # the generator ran and yielded no row: `datasets` keeps no Arrow file for an empty split
        dataset = Dataset.from_dict({name: [] for name in features}, features=features, split=split)
    folder = os.path.dirname(dataset.cache_files[0]["filename"]) if dataset.cache_files else None
    report = run.report
    if report is not None:
        report.rows = len(dataset)
        if folder:
            tmp = os.path.join(folder, REPORT_FILE + ".tmp")
            with open(tmp, "w") as handle:
                json.dump(report.to_json(), handle)
            os.replace(tmp, os.path.join(folder, REPORT_FILE))
    else:
        path = os.path.join(folder, REPORT_FILE) if folder else None
        if path and os.path.exists(path):
            with open(path) as handle:
                report = SplitReport.from_json(json.load(handle))
        else:
            report = SplitReport(rows=len(dataset))
            report.note("report of the cached build not found")
        report.cached = True
    return dataset, report


def finish(name: str, splits: dict, reports: dict, return_report: bool, info: dict):
    """
    A `DatasetDict` of the splits, the summary printed; `(dd, BuildReport)` if asked. `info` (the build's kind, rule
    and options) goes into the report, and as JSON into each split's `info.description`, which `save_to_disk` keeps.
    """
    dataset_dict = DatasetDict(splits)
    report = BuildReport(name=name, splits=reports, info=info)
    for dataset in dataset_dict.values():
        dataset.info.description = json.dumps(info, sort_keys=True)
    report.log()
    return (dataset_dict, report) if return_report else dataset_dict


def saved_build_info(dataset_dict) -> dict:
    """The info (`{"tcmp_kind": ...}`) a build kept in its datasets' `info.description` ({} when unknown)."""
    for dataset in dataset_dict.values():
        try:
            return json.loads(dataset.info.description or "{}")
        except (json.JSONDecodeError, TypeError):
            return {}
    return {}
