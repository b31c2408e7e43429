"""TCMP: real-time emotion pre-recognition in conversations, as a Transformers model.

Importing `tcmp` registers the config, models and processor with the Transformers Auto classes and the
`"emotion-pre-recognition"` pipeline task, and changes no process-wide setting (`configure_threads()` chooses the
thread count for a shared machine when called).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoProcessor,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_tcmp import TCMPConfig
from .errors import ArgumentsError, CheckpointError, DataError, PreflightError, TCMPInputError
from .modeling_tcmp import (
    TCMPForEmotionPreRecognition,
    TCMPForPreTraining,
    TCMPForPreTrainingOutput,
    TCMPModel,
    TCMPModelOutput,
    TCMPPreRecognitionOutput,
    TCMPPreTrainedModel,
)
from .pipeline_tcmp import TASK as PIPELINE_TASK, EmotionPreRecognitionPipeline
from .processing_tcmp import TCMPProcessor
from .streaming import NextEmotion, StreamingPreRecognizer
from .threads import configure_threads


__version__ = "0.1.0"

AUTO_CLASSES = {
    TCMPModel: AutoModel,
    TCMPForPreTraining: AutoModelForPreTraining,
    TCMPForEmotionPreRecognition: AutoModelForSequenceClassification,
}

AutoConfig.register(TCMPConfig.model_type, TCMPConfig, exist_ok=True)
for _model_class, _auto_class in AUTO_CLASSES.items():
    _auto_class.register(TCMPConfig, _model_class, exist_ok=True)
    _model_class.register_for_auto_class(_auto_class.__name__)
AutoProcessor.register(TCMPConfig, TCMPProcessor, exist_ok=True)
TCMPConfig.register_for_auto_class()
TCMPProcessor.register_for_auto_class()
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK, pipeline_class=EmotionPreRecognitionPipeline, pt_model=AutoModelForSequenceClassification
)

__all__ = [
    "TCMPConfig",
    "TCMPModel",
    "TCMPForPreTraining",
    "TCMPForEmotionPreRecognition",
    "TCMPPreTrainedModel",
    "TCMPModelOutput",
    "TCMPForPreTrainingOutput",
    "TCMPPreRecognitionOutput",
    "TCMPProcessor",
    "TCMPInputError",
    "CheckpointError",
    "ArgumentsError",
    "PreflightError",
    "DataError",
    "StreamingPreRecognizer",
    "NextEmotion",
    "EmotionPreRecognitionPipeline",
    "configure_threads",
]
