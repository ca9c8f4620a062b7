"""The stand-ins' report: held-out perplexity beside unigram and bigram models, and sample generations.

    python -m lm.report          # -> results/lm/stand_ins.json and results/lm/stand_ins.md

Each stand-in is loaded from its committed folder through its family's real loader. Perplexities are on
the test split's tokens (documents the models never saw); samples continue the first words of ten test
documents (LLaMA: temperature 0.8, top-p 0.9; GPT-2: temperature 0.8, top-k 40; seeded).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from core.records import ROOT
from lm import baselines, corpus
from lm.pretrain import perplexity, token_stream, tokenizer_of
from lm.stand_ins import load_model, stand_in

N_SAMPLES, PROMPT_WORDS, SAMPLE_TOKENS, SEED = 10, 4, 40, 0


def prompts(records) -> list:
    """The first words of the first ten test documents (sorted by id) that are prose of some length."""
    texts = [t for t in corpus.texts(records, "test") if len(t) > 200 and t[0].isalpha()]
    return [" ".join(t.split()[:PROMPT_WORDS]) for t in texts[:N_SAMPLES]]


def samples(family: str, model, tokenizer, prompt_texts) -> list:
    torch.manual_seed(SEED)
    if family == "llama":
        from llama import Llama
        generator = Llama(model, tokenizer)
        tokens = [tokenizer.encode(p, bos=True, eos=False) for p in prompt_texts]
        outs = generator.generate(tokens, SAMPLE_TOKENS, temperature=0.8, top_p=0.9)
        return [tokenizer.decode(t + o) for t, o in zip(tokens, outs)]  # decoded together: the pieces' spaces survive
    texts = []
    generator = torch.Generator().manual_seed(SEED)
    for p in prompt_texts:
        idx = torch.tensor([tokenizer.encode(p, bos=True, eos=False)])
        out = model.generate(idx, SAMPLE_TOKENS, do_sample=True, temperature=0.8, top_k=40, generator=generator)
        texts.append(tokenizer.decode(out[0, 1:].tolist()))
    return texts


def family_report(family: str, records) -> dict:
    spec = stand_in(family)
    manifest = json.loads((spec.folder / "manifest.json").read_text())
    tokenizer = tokenizer_of(family, spec.folder)
    streams = {s: token_stream(corpus.texts(records, s), tokenizer) for s in ("train", "validation", "test")}
    start = time.time()
    model = load_model(family, spec.folder)
    test_ppl = perplexity(model, streams["test"], spec.context)
    ngram = baselines.perplexities(streams["train"], streams["validation"], streams["test"], spec.vocab_size)
    return {"folder": str(spec.folder.relative_to(ROOT)), "parameters": manifest["parameters"],
            "tokens_seen": manifest["tokens_seen"], "train_tokens": len(streams["train"]),
            "test_tokens": len(streams["test"]), "test_perplexity": test_ppl,
            "manifest_test_perplexity": manifest["perplexity"]["test"], "bigram_perplexity": ngram["bigram"],
            "unigram_perplexity": ngram["unigram"], "bigram_weight": ngram["bigram_weight"],
            "samples": samples(family, model, tokenizer, prompts(records)), "report_seconds": time.time() - start}


def markdown(report: dict) -> str:
    lines = ["# The stand-ins, held out", "", "Rendered by `python -m lm.report` from `results/lm/stand_ins.json`.", "",
             "| stand-in | parameters | tokens seen | test tokens | test perplexity | bigram | unigram |",
             "|---|---|---|---|---|---|---|"]
    for family, r in report.items():
        lines.append(f"| {family} (`{r['folder']}`) | {r['parameters']:,} | {r['tokens_seen']:,} | {r['test_tokens']:,} "
                     f"| **{r['test_perplexity']:.1f}** | {r['bigram_perplexity']:.1f} | {r['unigram_perplexity']:.1f} |")
    for family, r in report.items():
        lines += ["", f"## Samples, {family}", ""] + [f"{i + 1}. `{json.dumps(s)[1:-1]}`" for i, s in enumerate(r["samples"])]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "lm")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    args = parser.parse_args(argv)
    records = corpus.read(args.corpus)
    report = {family: family_report(family, records) for family in ("llama", "gpt2")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stand_ins.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "stand_ins.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
