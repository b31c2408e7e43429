"""The `"emotion-pre-recognition"` pipeline: a dialogue so far → the distribution of the next utterance's emotion."""

from transformers import Pipeline

from .processing_tcmp import check_utterance


TASK = "emotion-pre-recognition"


class _Dialogues(tuple):
    """Several dialogues that go through the model as one batch (a tuple, so `Pipeline.__call__` runs it once)."""


def _as_dialogue(dialogue, index: int) -> list[dict]:
    if not isinstance(dialogue, (list, tuple)) or len(dialogue) == 0:
        raise ValueError(
            f"dialogue {index}: expected a non-empty list of utterances (dicts with 'text'/'audio', or strings)"
        )
    return [{"text": u} if isinstance(u, str) else u for u in dialogue]


class EmotionPreRecognitionPipeline(Pipeline):
    r"""
    Emotion pre-recognition: given the utterances of a conversation so far, the emotion of the utterance that comes
    next, as a list of `{"label", "score"}` sorted by score (like text classification).

    Inputs: one dialogue — a list of utterance dicts (`text`, `audio`, `sampling_rate`, `speaker`, as for
    `TCMPProcessor`) or, for text-only models, a list of strings — or a list of dialogues (one output list each; they
    are encoded together in one batch). `top_k` keeps the k most likely labels (default: all of them).

    Example:

    ```python
    >>> import tcmp
    >>> from transformers import pipeline
    >>> classifier = pipeline("emotion-pre-recognition", model="my-tcmp")
    >>> classifier(["that is terrible news", "i am so sorry"], top_k=2)
    [{'label': 'negative', 'score': 0.61}, {'label': 'neutral', 'score': 0.27}]
    >>> classifier.save_pretrained("my-tcmp-pipeline")  # elsewhere, without tcmp:
    >>> pipeline(model="my-tcmp-pipeline", trust_remote_code=True)
    ```
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False

    def __call__(self, inputs, **kwargs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
            raise ValueError(
                "emotion-pre-recognition takes a dialogue (a non-empty list of utterance dicts or strings) "
                f"or a list of dialogues, got {type(inputs).__name__}"
            )
        single = isinstance(inputs[0], (str, dict))
        dialogues = [inputs] if single else list(inputs)
        outputs = super().__call__(_Dialogues(_as_dialogue(d, i) for i, d in enumerate(dialogues)), **kwargs)
        return outputs[0] if single else outputs

    def save_pretrained(self, save_directory, **kwargs):
        """
        As `Pipeline.save_pretrained` (the model, its config with `custom_pipelines`, this pipeline's code beside the
        model code), plus the processor: `pipeline(model=folder, trust_remote_code=True)` then runs it where `tcmp` is
        not installed, with the task given or inferred. (A folder with `custom_pipelines` asks for
        `trust_remote_code=True` even where `tcmp` is installed: Transformers looks up a folder's own pipelines first.)
        """
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)

    def _sanitize_parameters(self, top_k=None, **kwargs):
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        return {}, {}, {"top_k": top_k}

    def preprocess(self, dialogues: _Dialogues) -> dict:
        for d, dialogue in enumerate(dialogues):
            for u, utterance in enumerate(dialogue):
                check_utterance(utterance, f"dialogue {d}, utterance {u}", self.model.config.input_modalities)
        return dict(self.processor(list(dialogues)))

    def _forward(self, model_inputs: dict) -> dict:
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs: dict, top_k: int | None = None) -> list[list[dict]]:
        id2label = self.model.config.id2label
        results = []
        for probabilities in model_outputs["logits"].float().softmax(-1).tolist():
            ranked = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])[:top_k]
            results.append([{"label": id2label[i], "score": probabilities[i]} for i in ranked])
        return results


__all__ = ["EmotionPreRecognitionPipeline", "TASK"]
