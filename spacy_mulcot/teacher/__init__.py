"""The teacher side of MulCoT-RD: LLM backends, prompts, the two-stage CoT
enhancement with an on-disk reply cache, and the ``mulcot_teacher`` component."""

from .backends import (
    HFLocal,
    OpenAICompatible,
    TeacherError,
    TeacherReply,
    TeacherRequest,
    hf_local_v1,
    openai_compatible_v1,
)
from .cache import ReplyCache, cache_key
from .enhancement import RunReport, TeacherItem, TeacherResult, TwoStageTeacher
from .prompting import TeacherPrompt

__all__ = [
    "HFLocal",
    "OpenAICompatible",
    "TeacherError",
    "TeacherReply",
    "TeacherRequest",
    "hf_local_v1",
    "openai_compatible_v1",
    "ReplyCache",
    "cache_key",
    "RunReport",
    "TeacherItem",
    "TeacherResult",
    "TwoStageTeacher",
    "TeacherPrompt",
]
