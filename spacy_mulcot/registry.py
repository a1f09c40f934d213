"""Every registered function, in one place.

The same names are declared as entry points in ``setup.cfg``, so spaCy resolves
them from a config without importing this package first. Names carry versions;
a changed signature gets a new version and the old one stays.
"""

from spacy.util import registry

from .encoders import efficientnet_lite0_v1, hf_vision_encoder_v1
from .generation import REGISTERED_NAME as GENERATION_SETTINGS
from .generation import GenerationSettings
from .model import joint_sentiment_model_v1
from .model.transformer import transformer_model_v1
from .readers import corpus_v1, jsonl_v1, mvsa_v1, twitter_v1
from .reasoning import reasoning_generator_v1
from .scorer import make_mulcot_scorer, omit_unweighted_scores_v1
from .teacher.backends import hf_local_v1, openai_compatible_v1
from .training_logger import console_logger_v1

ARCHITECTURES = {
    "mulcot.EfficientNetLite0.v1": efficientnet_lite0_v1,
    "mulcot.HFVisionEncoder.v1": hf_vision_encoder_v1,
    "mulcot.JointSentimentModel.v1": joint_sentiment_model_v1,
    "mulcot.TransformerModel.v1": transformer_model_v1,
    "mulcot.ReasoningGenerator.v1": reasoning_generator_v1,
}
SCORERS = {"mulcot.scorer.v1": make_mulcot_scorer}
#: Teacher backends (spaCy's ``misc`` registry: ``@misc = "mulcot.OpenAICompatible.v1"``).
MISC = {
    "mulcot.OpenAICompatible.v1": openai_compatible_v1,
    "mulcot.HFLocal.v1": hf_local_v1,
    "mulcot.OmitUnweightedScores.v1": omit_unweighted_scores_v1,
    GENERATION_SETTINGS: GenerationSettings,
}
LOGGERS = {"mulcot.ConsoleLogger.v1": console_logger_v1}
READERS = {
    "mulcot.Corpus.v1": corpus_v1,
    "mulcot.TwitterReader.v1": twitter_v1,
    "mulcot.MVSAReader.v1": mvsa_v1,
    "mulcot.JSONLReader.v1": jsonl_v1,
}

for _name, _func in ARCHITECTURES.items():
    registry.architectures.register(_name, func=_func)
for _name, _func in READERS.items():
    registry.readers.register(_name, func=_func)
for _name, _func in MISC.items():
    registry.misc.register(_name, func=_func)
for _name, _func in LOGGERS.items():
    registry.loggers.register(_name, func=_func)
for _name, _func in SCORERS.items():
    registry.scorers.register(_name, func=_func)
