"""What a teacher backend is: a request (prompt + optional image) in, a reply out."""

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class TeacherRequest:
    """One chat turn for the teacher.

    image: the raw image file (JPEG/PNG bytes), or None.
    image_description: the image in words, for backends that cannot see images.
    seed / temperature: set per attempt (stage-2 retries sample, so they differ).
    """

    prompt: str
    image: Optional[bytes] = None
    image_mime: str = "image/jpeg"
    image_description: Optional[str] = None
    temperature: float = 0.0
    seed: Optional[int] = None


@dataclass
class TeacherReply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # transient failures retried before this reply
    extra: dict = field(default_factory=dict)


class TeacherError(RuntimeError):
    """A request that failed for good (refused, malformed, or out of retries).

    transient: True when the cause was the server being unreachable or overloaded
    (the runner stops after many of these in a row instead of burning the queue).

    retries: transient failures retried before the request failed for good (counted
    in the run report like a successful reply's).
    """

    def __init__(self, message: str, transient: bool = False, retries: int = 0):
        super().__init__(message)
        self.transient = transient
        self.retries = retries
