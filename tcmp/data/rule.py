"""The reconstruction rule: which utterances of a labelled dialogue become pre-recognition targets, with what context."""

from dataclasses import asdict, dataclass

from ..errors import DataError
from .schema import utterance_columns


@dataclass(frozen=True)
class ReconstructionRule:
    """
    Which utterances become targets and what context they get.

    An utterance u_t of a dialogue (with a usable label) is a target when:

    - `min_context` (default 2): at least this many utterances precede it in the dialogue (u_1 … u_{t-1});
    - `require_target_spoke_before` (default True): the target's speaker has already spoken *within the context* the
      model sees (the last `max_context` utterances) — the model then has evidence of that speaker's state;
    - `require_speaker_change` (default True): the speaker of u_t differs from the speaker of u_{t-1} (the model
      predicts how the next speaker responds, the paper's setting of a turn change).

    The context is the last `max_context` (default 10) utterances before u_t; the target's own text and audio are
    never part of it. On MELD these defaults come closest to the paper's P-MELD sizes (see `tcmp/data/README.md`).
    """

    min_context: int = 2
    max_context: int = 10
    require_target_spoke_before: bool = True
    require_speaker_change: bool = True

    def __post_init__(self):
        if self.min_context < 1:
            raise DataError(f"ReconstructionRule.min_context must be >= 1, got {self.min_context}")
        if self.max_context < self.min_context:
            raise DataError(
                f"ReconstructionRule.max_context ({self.max_context}) must be >= min_context ({self.min_context})"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_value(cls, value) -> "ReconstructionRule":
        """A rule from a rule, a dict of its fields (e.g. from JSON options), or None (the default rule)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise DataError(f"unknown ReconstructionRule fields {sorted(unknown)}")
            return cls(**value)
        raise DataError(f"rule must be a ReconstructionRule or a dict, got {type(value).__name__}")

    def describe(self) -> str:
        parts = [f"context {self.min_context}–{self.max_context} utterances"]
        parts.append("target speaker must have spoken in the context" if self.require_target_spoke_before else
                     "target speaker need not have spoken before")
        parts.append("speaker must change at the target" if self.require_speaker_change else
                     "speaker need not change at the target")
        return "; ".join(parts)


def make_samples(utterances: list[dict], rule: ReconstructionRule, dialogue_id: str, require_audio: bool = False):
    """
    Pre-recognition samples of one dialogue.

    `utterances`: the dialogue in order, dicts with `utterance_id`, `text`, `speaker`, `audio_path`, `audio_start`,
    `audio_end`, `label` (a class name, or None when the utterance may not be a target, e.g. IEMOCAP `xxx`) and
    optionally `break_before` (True when the dialogue has a gap in utterance ids right before this utterance and the
    caller wants contexts not to span it).
    `require_audio`: a context utterance without `audio_path` makes the sample unusable (skipped with a reason).

    Returns `(samples, skips)`: rows of the pre-recognition schema (`label` still a class name) and a list of
    `(reason, where)` for targets that had a label but were dropped by a data problem (not by the rule itself; the
    rule's exclusions are counted separately under reasons prefixed with `rule:`).
    """
    samples, skips = [], []
    for t, target in enumerate(utterances):
        if target.get("label") is None:
            continue
        where = f"dialogue {dialogue_id!r}, target {target['utterance_id']!r}"
        first = max(0, t - rule.max_context)
        breaks = [i for i in range(first + 1, t + 1) if utterances[i].get("break_before")]
        if breaks:
            if t - breaks[-1] < rule.min_context or breaks[-1] == t:
                skips.append(("context spans a gap in utterance ids", where))
                continue
            first = breaks[-1]
        context = utterances[first:t]
        if len(context) < rule.min_context:
            skips.append((f"rule: fewer than {rule.min_context} context utterances", where))
            continue
        if rule.require_speaker_change and context[-1]["speaker"] == target["speaker"]:
            skips.append(("rule: no speaker change at the target", where))
            continue
        if rule.require_target_spoke_before and all(u["speaker"] != target["speaker"] for u in context):
            skips.append(("rule: target speaker has not spoken in the context", where))
            continue
        if require_audio:
            missing = [u["utterance_id"] for u in context if u.get("audio_path") is None]
            if missing:
                skips.append(("context utterance has no usable audio clip", f"{where} (missing: {', '.join(missing)})"))
                continue
        sample = utterance_columns(context)
        sample.update(
            sample_id=str(target["utterance_id"]),
            dialogue_id=str(dialogue_id),
            target_speaker=target["speaker"],
            target_utterance_id=str(target["utterance_id"]),
            label=target["label"],
        )
        samples.append(sample)
    return samples, skips
