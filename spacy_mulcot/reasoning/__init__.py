"""Reasoning-chain generation (MulCoT-RD): a causal LM conditioned on the post, the
aspect and the image (projected prefix tokens). Not yet wired into ``mulcot``."""
from .generator import ReasoningGenerator, build_prompt, force_prediction

__all__ = ["ReasoningGenerator", "build_prompt", "force_prediction"]
