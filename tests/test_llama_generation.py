"""llama.generation: batched greedy/top-p generation with the cache, from tokens, virtual tokens and prefixes."""

from types import SimpleNamespace

import pytest
import torch

from llama import Llama, ModelArgs, Transformer
from llama.bench import main as bench_main
from llama.convert_hf import main as convert_main
from llama.generation import sample_top_p


@pytest.fixture(scope="module")
def generator() -> Llama:
    torch.manual_seed(0)
    args = ModelArgs(
        dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=61, multiple_of=16, max_batch_size=4, max_seq_len=32
    )
    model = Transformer(args).eval().requires_grad_(False)
    with torch.no_grad():  # sharper logits, so that greedy choices are not near ties
        model.output.weight.mul_(20.0)
    return Llama(model)


def greedy_by_recompute(model: Transformer, prompt, steps, virtual_tokens=None, prefix=None):
    """Reference: append the argmax of a full forward pass, one token at a time."""
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.tensor([tokens], dtype=torch.long)
            logits = model(ids, input_embeds=virtual_tokens, prefix=prefix)
            tokens.append(int(logits[0, -1].argmax()))
    return tokens[len(prompt) :]


def test_greedy_batch_of_mixed_lengths_matches_recompute(generator):
    prompts = [[5, 17, 3], [40], [22, 9, 33, 2, 12]]
    completions = generator.generate(prompts, max_gen_len=7, temperature=0.0)
    assert completions == [greedy_by_recompute(generator.model, p, 7) for p in prompts]
    assert completions == generator.generate(prompts, max_gen_len=7, temperature=0.0, use_cache=False)


def test_generation_continues_from_virtual_tokens_and_prefix(generator):
    virtual = torch.randn(3, 2, 32)
    prefix = torch.randn(2, 3, 32)
    completions = generator.generate(
        [[], [], [7]], max_gen_len=6, temperature=0.0, virtual_tokens=virtual, prefix=prefix
    )
    for row, prompt in enumerate([[], [], [7]]):
        expected = greedy_by_recompute(generator.model, prompt, 6, virtual[row : row + 1], prefix)
        assert completions[row] == expected
    recomputed = generator.generate([[], [], [7]], 6, 0.0, virtual_tokens=virtual, prefix=prefix, use_cache=False)
    assert recomputed == completions
    with pytest.raises(ValueError, match="an empty prompt needs virtual tokens"):
        generator.generate([[], [3]], max_gen_len=2, prefix=prefix)


def test_generation_stops_at_eos(generator):
    full = generator.generate([[5, 17]], max_gen_len=6, temperature=0.0)[0]
    with_eos = Llama(generator.model, SimpleNamespace(eos_id=full[3]))
    assert with_eos.generate([[5, 17]], max_gen_len=6, temperature=0.0)[0] == full[: full.index(full[3])]


def test_top_p_sampling(generator):
    probs = torch.tensor([[0.1, 0.6, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25]])
    torch.manual_seed(0)
    assert sample_top_p(probs, 0.0).tolist() == [1, 0]  # the nucleus is the most likely token alone
    draws = torch.stack([sample_top_p(probs, 0.8) for _ in range(200)])
    assert set(draws[:, 0].tolist()) == {1, 2}  # 0.6 + 0.3 reaches 0.8; 0.1 is outside the nucleus
    assert set(draws[:, 1].tolist()) == {0, 1, 2, 3}
    torch.manual_seed(0)
    prompts = [[5, 17], [3]]
    sampled = generator.generate(prompts, max_gen_len=5, temperature=1.0, top_p=0.5)
    assert [len(c) for c in sampled] == [5, 5]
    outside = 0
    for prompt, completion in zip(prompts, sampled):  # every sampled token lies in its step's nucleus
        sequence = prompt + completion
        with torch.no_grad():
            probs = generator.model(torch.tensor([sequence]))[0].softmax(-1)
        for t in range(len(prompt), len(sequence)):
            ranked = probs[t - 1].sort(descending=True)
            mass_before = ranked.values.cumsum(0) - ranked.values
            nucleus = ranked.indices[mass_before < 0.5].tolist()
            outside += sequence[t] not in nucleus
    assert outside == 0


def test_bench_prints_markdown_table(capsys):
    bench_main(
        [
            "--vocab-size",
            "48",
            "--dim",
            "32",
            "--n-layers",
            "1",
            "--n-heads",
            "2",
            "--batch-size",
            "16",
            "--gen-len",
            "4",
            "--repeats",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "| decoding | time (s) | generated tokens/s | speed-up | unique completions |" in out
    assert (
        "| key/value cache |" in out
        and "| full recompute |" in out
        and "differ between the two (rounding flips of near-tied greedy choices): 0" in out
    )


@pytest.mark.parametrize("cli, options", [(bench_main, ("--gen-len", "--batch-size")),
                                          (convert_main, ("--to-hf",))])
def test_scripts_have_help_naming_their_options(cli, options, capsys):
    with pytest.raises(SystemExit):
        cli(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m llama.") and all(option in out for option in options)
