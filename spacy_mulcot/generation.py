"""How chains are written at prediction time: one settings object, declared once.

``GenerationSettings`` is the ``mulcot`` component's ``[components.mulcot.generation]``
block (registered as ``mulcot.GenerationSettings.v1``), overridden per call
(``nlp.pipe(texts, component_cfg={"mulcot": {"generate_reasoning": True}})``) and
passed whole from the component down to the decoder. It depends on nothing else in
the package, so every layer may import it.
"""

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, Mapping, Optional, Tuple

#: What a chain can be written for.
TARGETS: Tuple[str, ...] = ("aspects", "post", "both")
#: "auto": the project's continuous-batching decoder for Llama/Qwen2 LMs, transformers'
#: ``generate`` for others; "generate": always ``generate``.
DECODERS: Tuple[str, ...] = ("auto", "generate")
#: The LM copy that decodes: "auto" (bf16 where the CPU runs it natively, else fp32),
#: "bfloat16", "float16", "float32", or None (the trained weights as they are).
DTYPES: Tuple[Optional[str], ...] = ("auto", "bfloat16", "float16", "float32", None)


@dataclass(frozen=True)
class GenerationSettings:
    """Inference settings of the chain writer (none of them is trained state).

    generate_reasoning: write chains at prediction time (off: the generator never runs).
    targets: chains for "aspects", the "post", or "both".
    max_new_tokens: chain length limit, in tokens.
    chain_batch_size: chains decoded side by side (not ``batch_size``, which
        ``nlp.pipe`` hands every component as the number of docs per batch).
    dtype: the decoding LM's type (see ``DTYPES``).
    decoder: "auto" or "generate" (see ``DECODERS``).
    temperature: 0 decodes greedily; above 0 samples at this temperature.
    guarantee_label: rewrite each chain's ``Prediction`` to the classifier's label, so
        chain and classifier always agree.
    """

    generate_reasoning: bool = True
    targets: str = "both"
    max_new_tokens: int = 320
    chain_batch_size: int = 64
    dtype: Optional[str] = "auto"
    decoder: str = "auto"
    temperature: float = 0.0
    guarantee_label: bool = False

    def __post_init__(self) -> None:
        if self.targets not in TARGETS:
            raise ValueError(f"generation targets must be one of {TARGETS}, got {self.targets!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"generation decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"generation dtype must be one of {DTYPES}, got {self.dtype!r}")
        if int(self.max_new_tokens) < 1 or int(self.chain_batch_size) < 1:
            raise ValueError(
                f"generation max_new_tokens and chain_batch_size must be >= 1, got {self.max_new_tokens}, {self.chain_batch_size}"
            )
        if float(self.temperature) < 0:
            raise ValueError(f"generation temperature must be >= 0, got {self.temperature}")

    @property
    def greedy(self) -> bool:
        return float(self.temperature) <= 0.0

    def sampling_temperature(self) -> float:
        """The temperature handed to a sampler (never 0: greedy decoding ignores it)."""
        return max(float(self.temperature), 1e-5)

    def updated(self, overrides: Mapping[str, Any], owner: str = "mulcot") -> "GenerationSettings":
        """These settings with ``overrides`` (None values ignored); an unknown name is a
        ``TypeError`` that lists the known ones."""
        unknown = sorted(set(overrides) - set(names()))
        if unknown:
            raise TypeError(f"[{owner}] unknown generation setting(s) {unknown}; the settings are {list(names())}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    def to_config(self) -> Dict[str, Any]:
        """The config block: the registered name and every field."""
        return {"@misc": REGISTERED_NAME, **asdict(self)}


REGISTERED_NAME = "mulcot.GenerationSettings.v1"


def names() -> Tuple[str, ...]:
    """The settings' names: the config block's keys and the per-call overrides."""
    return tuple(f.name for f in fields(GenerationSettings))


#: The component-level names these settings had before the ``generation`` block
#: (old name: new name). spaCy refuses them in a config (``unexpected argument``): move
#: them into ``[components.mulcot.generation]`` under the new names.
LEGACY_NAMES: Dict[str, str] = {
    "generate_reasoning": "generate_reasoning",
    "reasoning_targets": "targets",
    "max_new_tokens": "max_new_tokens",
    "generation_batch_size": "chain_batch_size",
    "generation_dtype": "dtype",
    "generation_decoder": "decoder",
    "generation_temperature": "temperature",
    "guarantee_label": "guarantee_label",
}
