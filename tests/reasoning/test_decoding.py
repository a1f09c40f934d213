"""The continuous-batching decoder against transformers' ``generate`` (tiny random
Llama and Qwen2 LMs built here, SmolLM2's real tokenizer): same tokens in float32,
every prompt answered once and in order when rows are reused, the fallback for LMs it
does not decode, and bad settings refused."""

import pytest
import torch

from spacy_mulcot.generation import GenerationSettings as S
from spacy_mulcot.reasoning import ReasoningGenerator, build_prompt
from spacy_mulcot.reasoning.decoding import FastDecoder, supports

from ..conftest import tiny_llama_settings

TEXTS = [
    "Loving the new Tesla",
    "Boston traffic again, an hour to get across the river and nobody moving at all",
    "RT @user: new album out now #music",
    "Obama speaks in Chicago",
    "The match was ok I guess, the second half was better than the first one",
    "Terrible service",
    "What a view from the top of the mountain this morning",
]


def tiny(tokenizer, kind="llama", seed=0) -> ReasoningGenerator:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    # Peaked logits (a wide initialisation): no near-ties for rounding to flip.
    common = tiny_llama_settings(tokenizer, initializer_range=0.3)
    if kind == "llama":
        lm = LlamaForCausalLM(LlamaConfig(**common))
    elif kind == "qwen2":
        lm = Qwen2ForCausalLM(Qwen2Config(**common))
        with torch.no_grad():  # Qwen2 has q/k/v biases: make them matter
            for layer in lm.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    else:
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=512))
    return ReasoningGenerator(lm.eval(), tokenizer, image_width=16, n_image_tokens=4).eval()


def prompts_and_prefix(gen, n=len(TEXTS)):
    torch.manual_seed(1)
    prompts = [build_prompt(gen.tokenizer, t) for t in TEXTS[:n]]
    with torch.inference_mode():
        prefix = gen.prefix(torch.randn(n, 9, 16), torch.tensor([i % 3 != 0 for i in range(n)]))
    return prompts, prefix


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_same_chains_as_generate_in_float32(tokenizer, kind):
    gen = tiny(tokenizer, kind)
    assert supports(gen.lm)
    prompts, prefix = prompts_and_prefix(gen)
    # 3 rows for 7 prompts of different lengths: rows are freed and refilled mid-decode.
    ours = gen.write_chains(prompts, prefix, S(chain_batch_size=3, max_new_tokens=24))
    theirs = gen.write_chains(prompts, prefix, S(chain_batch_size=3, max_new_tokens=24, decoder="generate"))
    assert ours == theirs
    assert len({len(c) for c in ours}) > 1 or all(ours)  # real text, not one repeated empty string
    # Alone or together, a prompt gets the same chain.
    assert gen.write_chains(prompts[3:4], prefix[3:4], S(chain_batch_size=1, max_new_tokens=24)) == ours[3:4]


def test_stops_and_min_new_tokens_as_generate(tokenizer):
    gen = tiny(tokenizer)
    prompts, prefix = prompts_and_prefix(gen, 4)
    embeds = [
        torch.cat(
            [
                prefix[i],
                gen.lm.get_input_embeddings()(torch.tensor(tokenizer(p, add_special_tokens=False)["input_ids"])),
            ]
        )
        for i, p in enumerate(prompts)
    ]
    decoder = FastDecoder(gen.lm)
    free = decoder.decode(embeds, 12, stops=())
    assert [len(ids) for ids in free] == [12] * 4
    # Stop at each chain's third token: cut there; with a floor of 6 the stop is suppressed.
    stops = sorted({ids[2] for ids in free})
    cut = decoder.decode(embeds, 12, stops=stops, slots=2)
    for ids, full in zip(cut, free):
        first = next(k for k, t in enumerate(full) if t in stops)
        assert ids == full[:first]
    # All four in at once, the first chain stopped at its second token: the last row
    # outlives it and is moved down into the freed row (compaction) with its cache,
    # which must not change any chain.
    stop = free[0][1]
    expected = [ids[: ids.index(stop)] if stop in ids else ids for ids in free]
    assert len(expected[0]) <= 1 < len(expected[3])  # the scenario holds for this seed
    assert decoder.decode(embeds, 12, stops=[stop], slots=4) == expected
    assert decoder.stats["compactions"] >= 1 and decoder.stats["prefills"] == 1
    floored = decoder.decode(embeds, 12, stops=stops, slots=2, min_new_tokens=6)
    assert all(len(ids) >= 6 for ids in floored)
    assert all(t not in stops for ids in floored for t in ids)
    # generate's own processors agree (stops given through the LM's config here).
    gen.lm.generation_config.eos_token_id = stops
    with torch.inference_mode():
        ours = gen.write_chains(prompts, prefix, S(chain_batch_size=2, max_new_tokens=12), min_new_tokens=6)
        theirs = gen.write_chains(
            prompts, prefix, S(chain_batch_size=2, max_new_tokens=12, decoder="generate"), min_new_tokens=6
        )
    assert ours == theirs


def test_prepacked_bfloat16_weights_decode_the_same_tokens(tokenizer):
    gen = tiny(tokenizer)
    prompts, prefix = prompts_and_prefix(gen)
    lm16 = gen.lm_for_inference("bfloat16")
    with torch.inference_mode():
        embeds = [
            torch.cat([prefix[i].to(lm16.dtype), lm16.get_input_embeddings()(torch.tensor(tokenizer(p)["input_ids"]))])
            for i, p in enumerate(prompts)
        ]
    packed, plain = FastDecoder(lm16), FastDecoder(lm16, pack=False)
    if not packed.packed:
        pytest.skip("no oneDNN bf16 linear on this CPU")
    assert packed.layers[0].qkv.is_mkldnn and not plain.layers[0].qkv.is_mkldnn
    assert packed.decode(embeds, 24, slots=3) == plain.decode(embeds, 24, slots=3)
    with pytest.raises(ValueError, match="pack"):
        FastDecoder(gen.lm, pack=True)  # float32: nothing to prepack for


def test_sampling_is_seeded_and_differs_from_greedy(tokenizer):
    gen = tiny(tokenizer)
    prompts, prefix = prompts_and_prefix(gen, 3)
    embeds = [
        torch.cat([prefix[i], gen.lm.get_input_embeddings()(torch.tensor(tokenizer(p)["input_ids"]))])
        for i, p in enumerate(prompts)
    ]
    decoder = FastDecoder(gen.lm)

    def sample(seed):
        return decoder.decode(embeds, 16, greedy=False, temperature=5.0, generator=torch.Generator().manual_seed(seed))

    assert sample(0) == sample(0)
    assert sample(0) != sample(1)
    assert sample(0) != decoder.decode(embeds, 16)


def test_bfloat16_copy_decodes_and_a_changed_lm_gets_a_new_decoder(tokenizer):
    gen = tiny(tokenizer)
    prompts, prefix = prompts_and_prefix(gen, 3)
    lm16 = gen.lm_for_inference("bfloat16")
    chains = gen.write_chains(prompts, prefix, S(max_new_tokens=8), lm=lm16)
    assert len(chains) == 3 and all(isinstance(c, str) for c in chains)
    first = gen.decoder_for(gen.lm)
    assert gen.decoder_for(gen.lm) is first
    with torch.no_grad():
        gen.lm.model.layers[0].mlp.down_proj.weight.mul_(2.0)  # as a training step would
    assert gen.decoder_for(gen.lm) is not first


def test_other_lms_fall_back_to_generate(tokenizer):
    gen = tiny(tokenizer, "gpt2")
    assert not supports(gen.lm) and gen.decoder_for(gen.lm) is None
    prompts, prefix = prompts_and_prefix(gen, 3)
    assert gen.write_chains(prompts, prefix, S(max_new_tokens=6)) == gen.write_chains(
        prompts, prefix, S(max_new_tokens=6, decoder="generate")
    )
    with pytest.raises(TypeError, match="Llama or Qwen2"):
        FastDecoder(gen.lm)


def test_bad_settings_are_refused(tokenizer):
    gen = tiny(tokenizer)
    prompts, prefix = prompts_and_prefix(gen, 2)
    with pytest.raises(ValueError, match="decoder must be one of"):
        gen.write_chains(prompts, prefix, S(decoder="fast"))
    decoder = FastDecoder(gen.lm)
    with pytest.raises(ValueError, match="slots"):
        decoder.decode([torch.zeros(3, 64)], 4, slots=0)
    with pytest.raises(ValueError, match="non-empty"):
        decoder.decode([torch.zeros(0, 64)], 4)
    assert decoder.decode([torch.zeros(3, 64)], 0) == [[]]
