"""The reasoning generator with a tiny random Llama (built here) and SmolLM2's real tokenizer."""

import pytest
import torch

from spacy_mulcot.generation import GenerationSettings
from spacy_mulcot.reasoning import ReasoningGenerator, build_prompt, force_prediction

from ..conftest import tiny_llama_settings

CHAINS = [
    '"Text_analysis": "praise for the car"\n"Prediction": "positive"',
    '"Text_analysis": "complaint about traffic"\n"Prediction": "negative"',
]


#: transformers' generate, 40 new tokens: the batched path the fast decoder is checked against.
BY_GENERATE = GenerationSettings(max_new_tokens=40, decoder="generate")


def tiny_generator(tokenizer, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**tiny_llama_settings(tokenizer))
    return ReasoningGenerator(LlamaForCausalLM(config), tokenizer, image_width=16, n_image_tokens=4)


def test_tiny_generator_overfits_two_chains_and_reloads(tokenizer, tmp_path):
    gen = tiny_generator(tokenizer)
    prompts = [
        build_prompt(tokenizer, "Loving the new Tesla", "Tesla"),
        build_prompt(tokenizer, "Boston traffic again", "Boston"),
    ]
    regions = torch.randn(2, 9, 16)

    def prefix():
        return gen.prefix(regions, torch.tensor([True, False]))

    optimizer = torch.optim.Adam(gen.parameters(), lr=3e-3)
    losses = []
    gen.train()
    for _ in range(80):
        optimizer.zero_grad()
        loss = gen.loss(prompts, CHAINS, prefix())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], losses[::10]
    gen.eval()
    with torch.inference_mode():
        out = gen.write_chains(prompts, prefix(), BY_GENERATE)
    assert out == CHAINS
    # one by one gives the same as batched (left padding handled)
    with torch.inference_mode():
        single = [
            gen.write_chains([p], gen.prefix(regions[i : i + 1], torch.tensor([i == 0])), BY_GENERATE)[0]
            for i, p in enumerate(prompts)
        ]
    assert single == out
    torch.save(gen.state_dict(), tmp_path / "gen.pt")
    again = tiny_generator(tokenizer, seed=1)
    again.load_state_dict(torch.load(tmp_path / "gen.pt"))
    again.eval()
    with torch.inference_mode():
        assert again.write_chains(prompts, again.prefix(regions, torch.tensor([True, False])), BY_GENERATE) == out


def test_force_prediction_makes_the_chain_agree():
    assert force_prediction(CHAINS[0], "NEG").endswith('"Prediction": "negative"')
    assert force_prediction("### Prediction\nNeutral", "POS").endswith("positive")
    assert force_prediction("no sections at all", "NEU").endswith('"Prediction": "neutral"')
    with pytest.raises(ValueError):
        force_prediction(CHAINS[0], "happy")


def test_reasoning_metrics_reward_the_right_chain():
    from spacy_mulcot.evaluation.reasoning import distinct_n, label_consistency, reasoning_metrics

    refs = CHAINS
    same = reasoning_metrics(refs, refs, classifier=["POS", "NEG"], gold=["POS", "NEG"])
    swapped = reasoning_metrics(refs[::-1], refs, classifier=["POS", "NEG"], gold=["POS", "NEG"])
    for key in ("bleu4", "rouge_l", "meteor_no_wordnet", "cosine_minilm"):
        assert same[key] > swapped[key], key
    assert same["bleu4"] == pytest.approx(100.0) and same["rouge_l"] == pytest.approx(100.0)
    assert same["chain_vs_classifier"] == 100.0 and swapped["chain_vs_classifier"] == 0.0
    assert distinct_n(["a a a a"], 1) == pytest.approx(25.0)
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(50.0)
    assert label_consistency(["no prediction here"], ["POS"])["chain_unparsed"] == 100.0
    with pytest.raises(ValueError):
        reasoning_metrics(refs, refs[:1])


def test_force_prediction_agrees_with_the_parser_on_every_shape():
    from spacy_mulcot.chains import parse_chain

    shapes = [
        CHAINS[0],
        '"Final_conclusion": "my prediction: neutral, clearly"\n\n"Prediction": negative',
        '"Final_conclusion": "the prediction is neutral but the chain was cut',  # no Prediction section
        "### Final_conclusion\nmostly negative\n### Prediction\n**Positive**",
        '"Prediction":',  # empty section
    ]
    for chain in shapes:
        for label in ("POS", "NEU", "NEG"):
            assert parse_chain(force_prediction(chain, label)).prediction == label, (chain, label)
    # text outside the Prediction section is left alone
    forced = force_prediction(shapes[1], "POS")
    assert "my prediction: neutral, clearly" in forced


def test_force_prediction_on_the_shared_chains(twitter15):
    import json

    from spacy_mulcot.chains import parse_chain

    path = twitter15 / "reasoning" / "dev.json"
    for record in json.loads(path.read_text())[:300]:
        for label in ("POS", "NEU", "NEG"):
            assert parse_chain(force_prediction(record["cot"], label)).prediction == label


def test_the_bf16_copy_is_made_once_and_again_after_the_weights_change(tokenizer):
    gen = tiny_generator(tokenizer)
    first = gen.lm_for_inference("bfloat16")
    assert first is not gen.lm and next(first.parameters()).dtype == torch.bfloat16
    assert gen.lm_for_inference("bfloat16") is first  # not a new copy per batch
    assert gen.lm_for_inference("float32") is gen.lm
    assert not any(k.startswith("_inference") for k in gen.state_dict())  # never saved
    optimizer = torch.optim.SGD(gen.parameters(), lr=0.1)
    loss = gen.loss([build_prompt(tokenizer, "Loving the new Tesla", "Tesla")], CHAINS[:1], gen.prefix(
        torch.randn(1, 9, 16), torch.tensor([True])
    ))  # fmt: skip
    loss.backward()
    optimizer.step()
    second = gen.lm_for_inference("bfloat16")
    assert second is not first
    weight = next(gen.lm.parameters())
    torch.testing.assert_close(next(second.parameters()), weight.to(torch.bfloat16))
