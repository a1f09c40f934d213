"""MulCoT-RD's two-stage CoT enhancement, run over many items with a cache.

Stage 1 asks the teacher for reasoning and a prediction. Where the prediction
differs from the gold label (or cannot be read), stage 2 asks it to explain the
gold label, up to ``max_retries`` attempts (sampled, so attempts differ) until the
chain's prediction matches. Chains that never match are *flagged* ("unmatched"),
not kept as rationales. Requests run ``backend.max_concurrency`` at a time; every
reply is cached as it arrives, so a killed run resumes without asking twice.
"""

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from tqdm import tqdm

from ..chains import parse_chain
from .backends.base import TeacherError, TeacherReply, TeacherRequest
from .cache import ReplyCache, cache_key
from .prompting import TeacherPrompt

STATUSES = ("stage1", "stage2", "unmatched", "failed")


@dataclass
class TeacherItem:
    """One aspect (or post) to reason about. ``gold``: POS/NEU/NEG or None (then
    stage 1 only and no check)."""

    text: str
    aspect: Optional[str] = None
    gold: Optional[str] = None
    image: Optional[bytes] = None
    image_mime: str = "image/jpeg"
    image_description: Optional[str] = None

    @property
    def image_sha(self) -> Optional[str]:
        return hashlib.sha256(self.image).hexdigest() if self.image is not None else None


@dataclass
class TeacherResult:
    status: str  # one of STATUSES
    chain: Optional[str] = None  # the kept chain (stage1/stage2), else the last reply
    label: Optional[str] = None  # the chain's parsed prediction
    attempts: int = 0  # requests answered for this item (cached ones included)
    requests: int = 0  # requests actually sent in this run
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    error: Optional[str] = None
    transient: bool = False  # failed because the server was unreachable/overloaded

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class TeacherAborted(RuntimeError):
    """The backend kept failing (server down?); finished items are cached."""


@dataclass
class RunReport:
    items: int = 0
    stages: Dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATUSES})
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: List[str] = field(default_factory=list)
    transient_failures: int = 0  # items lost to an unreachable/overloaded server (retry later)
    seconds: float = 0.0
    aborted: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class TwoStageTeacher:
    """Runs items through ``backend`` with the two-stage enhancement and the cache.

    max_retries: stage-2 attempts per item. retry_temperature: sampling temperature
    of stage-2 attempts after the first (greedy replies would repeat).
    max_consecutive_failures: abort the run after this many transient failures in a
    row (a dead server), instead of failing every remaining item.
    """

    def __init__(
        self,
        backend,
        prompt: TeacherPrompt,
        cache: Optional[ReplyCache] = None,
        two_stage: bool = True,
        max_retries: int = 3,
        retry_temperature: float = 0.7,
        max_consecutive_failures: int = 8,
    ):
        self.backend = backend
        self.prompt = prompt
        self.cache = cache
        self.two_stage = two_stage
        self.max_retries = max_retries
        self.retry_temperature = retry_temperature
        self.max_consecutive_failures = max_consecutive_failures
        self._lock = threading.Lock()
        self._consecutive = 0
        self._stop = threading.Event()
        self._unexpected: Optional[str] = None

    # ---- one request --------------------------------------------------------

    def _ask(
        self, item: TeacherItem, stage: int, attempt: int, result: TeacherResult, report: RunReport
    ) -> TeacherReply:
        gold = item.gold if stage == 2 else None
        description = None if self.backend.sees_images else item.image_description
        prompt = self.prompt.render(
            item.text, item.aspect, has_image=item.image is not None, image_description=description, gold=gold
        )
        temperature = 0.0 if attempt == 0 else self.retry_temperature
        key = cache_key(
            settings=self.backend.settings(),
            template=self.prompt.sha,
            text=item.text,
            aspect=item.aspect,
            image=item.image_sha if self.backend.sees_images else description,
            stage=stage,
            gold=gold,
            attempt=attempt,
            temperature=temperature,
        )
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            with self._lock:
                report.cache_hits += 1
            reply = TeacherReply(**cached)
        else:
            if self._stop.is_set():
                raise TeacherAborted("run aborted")
            request = TeacherRequest(
                prompt=prompt,
                image=item.image if self.backend.sees_images else None,
                image_mime=item.image_mime,
                image_description=description,
                temperature=temperature,
                seed=attempt,
            )
            try:
                reply = self.backend.complete(request)
            except TeacherError as e:
                with self._lock:
                    report.retries += e.retries
                    self._consecutive = self._consecutive + 1 if e.transient else 0
                    if self._consecutive >= self.max_consecutive_failures:
                        self._stop.set()
                result.retries += e.retries
                raise
            with self._lock:
                self._consecutive = 0
                report.requests += 1
                report.prompt_tokens += reply.prompt_tokens
                report.completion_tokens += reply.completion_tokens
                report.retries += reply.retries
            result.requests += 1
            result.prompt_tokens += reply.prompt_tokens
            result.completion_tokens += reply.completion_tokens
            result.retries += reply.retries
            if self.cache is not None:
                self.cache.put(
                    key,
                    {
                        "text": reply.text,
                        "prompt_tokens": reply.prompt_tokens,
                        "completion_tokens": reply.completion_tokens,
                    },
                )
        result.attempts += 1
        return reply

    # ---- one item -----------------------------------------------------------

    def run_item(self, item: TeacherItem, report: RunReport) -> TeacherResult:
        result = TeacherResult(status="failed")
        try:
            reply = self._ask(item, 1, 0, result, report)
            label = parse_chain(reply.text).prediction
            result.chain, result.label = reply.text, label
            if item.gold is None or label == item.gold or not self.two_stage:
                result.status = "stage1" if item.gold is None or label == item.gold else "unmatched"
                return result
            for attempt in range(self.max_retries):
                reply = self._ask(item, 2, attempt, result, report)
                label = parse_chain(reply.text).prediction
                result.chain, result.label = reply.text, label
                if label == item.gold:
                    result.status = "stage2"
                    return result
            result.status = "unmatched"
        except TeacherAborted as e:
            result.status, result.error, result.transient = "failed", str(e), True
        except TeacherError as e:
            result.status, result.error, result.transient = "failed", str(e), e.transient
        except Exception as e:  # a bug or a backend that broke its contract: stop asking
            result.status, result.error = "failed", f"{type(e).__name__}: {e}"
            with self._lock:
                self._unexpected = self._unexpected or result.error
            self._stop.set()
        return result

    # ---- many items ---------------------------------------------------------

    def run(
        self,
        items: Sequence[TeacherItem],
        progress: bool = True,
        on_result: Optional[Callable[[int, TeacherResult], None]] = None,
    ) -> (List[TeacherResult], RunReport):
        """Results in item order and the run's report; ``on_result(index, result)``
        is called as each item finishes (in completion order)."""
        report = RunReport(items=len(items))
        results: List[Optional[TeacherResult]] = [None] * len(items)
        start = time.perf_counter()
        self._stop.clear()
        self._consecutive = 0
        self._unexpected: Optional[str] = None
        with ThreadPoolExecutor(max_workers=max(1, int(self.backend.max_concurrency))) as pool:
            futures = {pool.submit(self.run_item, item, report): i for i, item in enumerate(items)}
            bar = tqdm(total=len(items), desc="teacher", unit="item", disable=not progress or None, dynamic_ncols=True)
            for future in as_completed(futures):
                i = futures[future]
                result = future.result()
                results[i] = result
                report.stages[result.status] += 1
                if result.error:
                    report.failures.append(f"item {i}: {result.error}")
                    report.transient_failures += int(result.transient)
                if on_result is not None:
                    on_result(i, result)
                bar.update(1)
                bar.set_postfix(
                    requests=report.requests, cached=report.cache_hits, failed=report.stages["failed"], refresh=False
                )
            bar.close()
        report.seconds = time.perf_counter() - start
        if self._stop.is_set():
            finished = report.items - report.stages["failed"]
            if self._consecutive >= self.max_consecutive_failures:
                why = f"{self.max_consecutive_failures} transient failures in a row (is the server up?)"
            else:
                why = f"an unexpected error ({self._unexpected})"
            report.aborted = f"stopped after {why}; {finished} items finished and are cached"
        return results, report
