"""PyTorch modules behind the ``mulcot`` architecture (wrapped with thinc elsewhere)."""

from .fusion import DualCrossAttentionFusion
from .joint_net import JointSentimentNet

__all__ = ["DualCrossAttentionFusion", "JointSentimentNet"]
