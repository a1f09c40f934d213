"""The project's chain decoder against llama.cpp decoding the same weights batched.

Both sides decode the same text prompts (real pipeline prompts, tokenized once with
the HF tokenizer; no image prefix, which llama.cpp's text path cannot take) greedily,
``--slots`` sequences side by side, a fixed ``--new-tokens`` per chain (no early stop,
so both do the same work), on the same cores, one after the other, median of ``--runs``.

- ``fast``: :class:`spacy_mulcot.reasoning.decoding.FastDecoder` on SmolLM2-135M in
  bf16 (the weights as the pipeline holds them: the GGUF's Q4_1 values, dequantized);
- ``llama.cpp``: llama-cpp-python's low-level API (``llama_decode`` with one sequence
  id per chain: what ``llama-server --parallel N`` does inside) on the GGUF itself
  (Q4_1 weights), KV cache f16 or q8_0 (``--kv-types``), flash attention on; its
  prompt processing is also timed on its own (``prompt_tokens_per_s``).

    python bench/llama_cpp_batched.py corpus/twitter2015/sentence/test.spacy --output metrics/llama_cpp_batched.json
"""

import ctypes
import statistics
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import spacy
import torch
import typer
from _report import emit
from transformers import AutoModelForCausalLM, AutoTokenizer

from spacy_mulcot.hub import cache_dir, resolve_model_path, smollm2_gguf_path
from spacy_mulcot.readers import read_docbin
from spacy_mulcot.reasoning import build_prompt
from spacy_mulcot.reasoning.decoding import FastDecoder

_KV = {"f16": 1, "q8_0": 8}  # ggml type ids
_WEIGHTS = ("Q4_1", "BF16", "Q8_0")  # the GGUF as shipped, and llama.cpp's conversions of it


def _quiet(level, text, user_data) -> None:
    """llama.cpp's log callback: silent (it logs every tensor it loads)."""


_QUIET = None


class LlamaCppBatched:
    """Greedy batched decoding through llama.cpp's C API: every chain is a sequence
    of one context (its own KV stream), each step decodes one token per sequence."""

    def __init__(
        self, gguf: Path, slots: int, n_ctx_per_seq: int, kv: str = "f16", threads: int = 2, unified: bool = False
    ):
        import llama_cpp as L

        global _QUIET
        _QUIET = _QUIET or L.llama_log_callback(_quiet)  # kept referenced while llama.cpp may call it
        self.L = L
        L.llama_backend_init()
        L.llama_log_set(_QUIET, ctypes.c_void_p(0))
        self.model = L.llama_model_load_from_file(str(gguf).encode(), L.llama_model_default_params())
        if not self.model:
            raise OSError(f"llama.cpp could not load {gguf}")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        params = L.llama_context_default_params()
        params.n_ctx = slots * n_ctx_per_seq
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.type_k = params.type_v = _KV[kv]
        # False: a KV stream per sequence (a chain attends to its own cells only).
        params.kv_unified = unified
        params.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise OSError("llama.cpp could not create the context")
        self.slots = slots
        self.batch = L.llama_batch_init(512, 0, 1)

    def _decode(self, entries) -> np.ndarray:
        """entries: (token, position, sequence, wants_logits); returns the logits rows."""
        b = self.batch
        for i, (token, pos, seq, out) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, out
            b.seq_id[i][0] = seq
        b.n_tokens = len(entries)
        if self.L.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        n_out = sum(1 for e in entries if e[3])
        ptr = self.L.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab))

    def generate(self, prompts: Sequence[List[int]], new_tokens: int) -> List[List[int]]:
        L = self.L
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        if len(prompts) > self.slots:
            raise ValueError("one sequence per prompt: pass at most `slots` prompts")
        last, out = [], [[] for _ in prompts]
        # Prefill: the prompts' tokens, up to 512 per llama_decode call; logits at each prompt's end.
        start_time = time.perf_counter()
        pending = [(t, p, s, p == len(ids) - 1) for s, ids in enumerate(prompts) for p, t in enumerate(ids)]
        for start in range(0, len(pending), 512):
            chunk = pending[start : start + 512]
            logits = self._decode(chunk)
            last.extend(int(i) for i in logits.argmax(-1))
        #: Seconds the last call spent on the prompts (the rest is decoding).
        self.prefill_seconds = time.perf_counter() - start_time
        positions = [len(ids) for ids in prompts]
        for step in range(new_tokens):
            for s, token in enumerate(last):
                out[s].append(token)
            if step == new_tokens - 1:
                break
            logits = self._decode([(last[s], positions[s] + step, s, True) for s in range(len(prompts))])
            last = [int(i) for i in logits.argmax(-1)]
        return out

    def close(self) -> None:
        self.L.llama_batch_free(self.batch)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def requantized(gguf: Path, kind: str) -> Path:
    """The GGUF with its weights converted by llama.cpp's own quantizer (``BF16``:
    the Q4_1 values dequantized and rounded to bf16, as the pipeline's bf16 copy holds
    them; ``Q8_0``), written once next to the HF conversion's cache."""
    import llama_cpp as L

    if kind == "Q4_1":
        return gguf
    out = cache_dir() / f"SmolLM2-135M-Instruct.{kind}.gguf"
    if not out.exists():
        params = L.llama_model_quantize_default_params()
        params.ftype = {"BF16": L.LLAMA_FTYPE_MOSTLY_BF16, "Q8_0": L.LLAMA_FTYPE_MOSTLY_Q8_0}[kind]
        params.allow_requantize = True
        params.quantize_output_tensor = True
        if L.llama_model_quantize(str(gguf).encode(), str(out).encode(), ctypes.byref(params)) != 0:
            raise RuntimeError(f"llama.cpp could not convert {gguf} to {kind}")
    return out


def main(
    corpus: Path = typer.Argument(..., help=".spacy corpus (post texts and aspects)"),
    slots: int = typer.Option(64, help="Chains decoding side by side (= prompts per run)"),
    new_tokens: int = typer.Option(256, help="Tokens generated per chain"),
    runs: int = typer.Option(3, help="Runs per side (median)"),
    weights: str = typer.Option("Q4_1,BF16", help="llama.cpp weight types (Q4_1: the GGUF as shipped; BF16, Q8_0)"),
    kv_types: str = typer.Option("f16", help="llama.cpp KV cache types, comma-separated (f16, q8_0)"),
    threads: int = typer.Option(2, help="Threads for both sides"),
    output: Optional[Path] = typer.Option(None, help="JSON file for the figures"),
):
    for name, given, allowed in (("--weights", weights, _WEIGHTS), ("--kv-types", kv_types, tuple(_KV))):
        unknown = sorted(set(given.split(",")) - set(allowed))
        if unknown:
            raise typer.BadParameter(f"{name}: unknown {unknown}, choose from {list(allowed)}")
    torch.set_num_threads(threads)
    nlp = spacy.blank("en")
    docs = [d for _, d in zip(range(slots), read_docbin(corpus, nlp))]
    path = resolve_model_path("SmolLM2-135M-Instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [
        tokenizer(
            build_prompt(tokenizer, d.text, d.spans["aspects"][0].text if len(d.spans.get("aspects", [])) else None),
            add_special_tokens=False,
        )["input_ids"]
        for d in docs
    ]
    lm = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16).eval()
    fast = FastDecoder(lm)
    table = lm.get_input_embeddings().weight
    with torch.inference_mode():
        embeds = [table[torch.tensor(ids)] for ids in prompts]
    n_ctx = -(-(max(map(len, prompts)) + new_tokens) // 256) * 256
    engines = {
        f"llama.cpp {w}, KV {kv}": LlamaCppBatched(requantized(smollm2_gguf_path(), w), slots, n_ctx, kv, threads)
        for w in weights.split(",")
        for kv in kv_types.split(",")
    }

    sides = {"fast (bf16)": lambda n: fast.decode(embeds, n, slots=slots, min_new_tokens=n)}
    sides.update({name: (lambda n, e=e: e.generate(prompts, n)) for name, e in engines.items()})
    seconds = {name: [] for name in sides}
    prefill = {name: [] for name in engines}  # llama.cpp's seconds on the prompts, per run
    outputs = {}
    for name, run in sides.items():  # warm-up (first-call allocations)
        run(4)
    for r in range(runs):
        for name, run in sides.items():
            start = time.perf_counter()
            outputs[name] = run(new_tokens)
            seconds[name].append(time.perf_counter() - start)
            if name in engines:
                prefill[name].append(engines[name].prefill_seconds)
            typer.echo(f"run {r + 1} {name}: {slots * new_tokens / seconds[name][-1]:.1f} tokens/s", err=True)
    base = "fast (bf16)"
    rows = []
    for name in sides:
        rate = slots * new_tokens / statistics.median(seconds[name])
        agree = [
            next((i for i, (a, b) in enumerate(zip(x, y)) if a != b), new_tokens)
            for x, y in zip(outputs[name], outputs[base])
        ]
        rows.append(
            {
                "side": name,
                "tokens_per_s": round(rate, 1),
                "ratio_vs_fast": round(rate / (slots * new_tokens / statistics.median(seconds[base])), 2),
                "median_tokens_before_first_difference_from_fast": statistics.median(agree),
            }
        )
        if name in engines:
            rows[-1]["prompt_tokens_per_s"] = round(sum(map(len, prompts)) / statistics.median(prefill[name]), 1)
    for e in engines.values():
        e.close()
    report = {
        "slots": slots,
        "new_tokens": new_tokens,
        "prompt_tokens_mean": round(statistics.mean(map(len, prompts)), 1),
        "runs": runs,
        "threads": threads,
        "table": rows,
    }
    emit(report, output)


if __name__ == "__main__":
    typer.run(main)
