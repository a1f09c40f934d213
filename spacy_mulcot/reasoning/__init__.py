"""Reasoning-chain generation (MulCoT-RD): a causal LM conditioned on the post, the
aspect, the image (projected prefix tokens) and the classifier's vector for the
aspect; it lives inside ``mulcot.JointSentimentModel.v1`` (``generator``)."""

from .generator import ReasoningGenerator, build_prompt, force_prediction, reasoning_generator_v1

__all__ = ["ReasoningGenerator", "build_prompt", "force_prediction", "reasoning_generator_v1"]
