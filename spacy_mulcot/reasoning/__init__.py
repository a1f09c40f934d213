"""Reasoning-chain generation (MulCoT-RD): a causal LM conditioned on the post, the
aspect, the image (projected prefix tokens) and the classifier's vector for the
aspect; it lives inside ``mulcot.JointSentimentModel.v1`` (``generator``).

``prompt``: the versioned prompt words; ``generator``: the module that trains and
writes chains; ``loading``: building it by name or from a saved pipeline's copy;
``lm`` / ``decoding``: the LM underneath and the continuous-batching decoder."""

from .generator import ReasoningGenerator
from .loading import PendingGenerator, generator_from_folder, generator_on_base, reasoning_generator_v1
from .prompt import build_prompt, force_prediction

__all__ = [
    "PendingGenerator",
    "ReasoningGenerator",
    "build_prompt",
    "force_prediction",
    "generator_from_folder",
    "generator_on_base",
    "reasoning_generator_v1",
]
