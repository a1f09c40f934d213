"""The thinc boundary: ``mulcot.JointSentimentModel.v1`` (a thinc ``Model`` that turns
docs into tensors and back) and the shim that owns the torch network, its generator
and their bytes. Pure torch modules live in ``layers/`` and ``reasoning/``."""

from .architectures import (
    JointScores,
    ModelInput,
    ReasoningItem,
    chain_soft_targets,
    doc_rationales,
    generator_of,
    has_generator,
    joint_sentiment_model_v1,
    net_shim,
    predict_joint,
    rationale_encoder_of,
    write_chains,
)
from .shim import MulcotShim

__all__ = [
    "JointScores",
    "ModelInput",
    "MulcotShim",
    "ReasoningItem",
    "chain_soft_targets",
    "doc_rationales",
    "generator_of",
    "has_generator",
    "joint_sentiment_model_v1",
    "net_shim",
    "predict_joint",
    "rationale_encoder_of",
    "write_chains",
]
