"""Teacher backends, one module per kind, registered under versioned names."""

from .base import TeacherError, TeacherReply, TeacherRequest
from .hf_local import HFLocal, hf_local_v1
from .openai_compatible import OpenAICompatible, openai_compatible_v1

__all__ = [
    "TeacherError",
    "TeacherReply",
    "TeacherRequest",
    "HFLocal",
    "hf_local_v1",
    "OpenAICompatible",
    "openai_compatible_v1",
]
