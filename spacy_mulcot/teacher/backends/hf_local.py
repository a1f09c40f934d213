"""``mulcot.HFLocal.v1``: a local transformers model by hub name or path.

Multimodal image-text-to-text models (e.g. Qwen2.5-VL, detected from a
``vision_config`` in the model's config) see the image; text-only causal LMs get the
image described in words (the runner passes the image classifier's description).
Requests run one at a time (``max_concurrency = 1``): the model holds the cores.
"""

import io
import threading
from typing import Optional

import torch

from ...compute import torch_dtype as compute_dtype
from ...hub import resolve_model_path
from .base import TeacherError, TeacherReply, TeacherRequest
from .openai_compatible import SYSTEM


class HFLocal:
    name = "hf-local"
    max_concurrency = 1

    def __init__(
        self,
        model: str,
        max_new_tokens: int = 512,
        dtype: str = "auto",
        device: str = "cpu",
        system: Optional[str] = SYSTEM,
    ):
        from transformers import AutoConfig

        self.model_name = model
        self.model = model
        path = resolve_model_path(model)
        config = AutoConfig.from_pretrained(path)
        self.multimodal = getattr(config, "vision_config", None) is not None
        torch_dtype = _dtype(dtype, device)
        if self.multimodal:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(path)
            self.tokenizer = self.processor.tokenizer
            self.lm = AutoModelForImageTextToText.from_pretrained(path, torch_dtype=torch_dtype)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.lm = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch_dtype)
        self.lm.to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.system = system
        self._lock = threading.Lock()

    @property
    def sees_images(self) -> bool:
        return self.multimodal

    def settings(self) -> dict:
        return {
            "backend": self.name,
            "model": self.model_name,
            "max_new_tokens": self.max_new_tokens,
            "system": self.system,
        }

    def _inputs(self, request: TeacherRequest):
        system = [{"role": "system", "content": self.system}] if self.system else []
        if self.multimodal:
            from PIL import Image

            content = [{"type": "text", "text": request.prompt}]
            images = None
            if request.image is not None:
                images = [Image.open(io.BytesIO(request.image)).convert("RGB")]
                content.insert(0, {"type": "image"})
            messages = system + [{"role": "user", "content": content}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return self.processor(text=[text], images=images, return_tensors="pt")
        messages = system + [{"role": "user", "content": request.prompt}]
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer([text], return_tensors="pt", add_special_tokens=False)

    def complete(self, request: TeacherRequest) -> TeacherReply:
        with self._lock:
            try:
                inputs = self._inputs(request).to(self.device)
                sample = request.temperature > 0
                # A seeded request samples from its own RNG state; the caller's is restored.
                cuda = [torch.device(self.device).index or 0] if str(self.device).startswith("cuda") else []
                with torch.random.fork_rng(devices=cuda, enabled=request.seed is not None), torch.inference_mode():
                    if request.seed is not None:
                        torch.manual_seed(request.seed)
                    out = self.lm.generate(
                        **inputs,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=sample,
                        temperature=request.temperature if sample else None,
                        top_p=None,
                        top_k=None,
                        pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    )
            except (RuntimeError, ValueError) as e:
                raise TeacherError(f"{self.model_name} failed on the request: {e}") from e
        n_prompt = inputs["input_ids"].shape[1]
        new = out[0, n_prompt:]
        return TeacherReply(
            text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
            prompt_tokens=n_prompt,
            completion_tokens=int(new.shape[0]),
        )


def _dtype(name: str, device: str):
    """ "auto": bf16 where the device runs it natively, fp32 elsewhere (not the
    checkpoint's own type: a bf16 checkpoint on an AVX2 CPU would run 7-12x slower)."""
    return compute_dtype(name, setting="teacher dtype", device=device)


#: Registered as ``mulcot.HFLocal.v1``: the class itself, so its arguments are the config's.
hf_local_v1 = HFLocal
