"""Train the two stand-ins' tokenizers on the corpus's train split, each of its family's kind.

    python -m lm.train_tokenizers --corpus data/corpus --llama models/llama-standin --gpt2 models/gpt2-standin

* LLaMA: a SentencePiece BPE with byte fallback and split digits, no normaliser, as LLaMA's
  (unk 0, BOS 1, EOS 2, no padding piece), written as `tokenizer.model`;
* GPT-2: a byte-level BPE trained with the `tokenizers` library, with `<|endoftext|>` as its one special
  token, written as `vocab.json` + `merges.txt` (what GPT-2's folder holds).
"""

import argparse
import io
import sys
from pathlib import Path
from typing import List

from lm import corpus

VOCAB_SIZE = 4096
END_OF_TEXT = "<|endoftext|>"


def train_llama_tokenizer(texts: List[str], out_dir: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    import sentencepiece as spm
    model = io.BytesIO()
    lines = [line for text in texts for line in text.split("\n") if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, max_sentence_length=16384, minloglevel=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def train_gpt2_tokenizer(texts: List[str], out_dir: Path, vocab_size: int = VOCAB_SIZE) -> List[Path]:
    from tokenizers import ByteLevelBPETokenizer
    tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
    tokenizer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[END_OF_TEXT],
                                  show_progress=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [Path(p) for p in tokenizer.save_model(str(out_dir))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="built corpus folder")
    parser.add_argument("--llama", type=Path, help="folder to write tokenizer.model into")
    parser.add_argument("--gpt2", type=Path, help="folder to write vocab.json and merges.txt into")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = parser.parse_args(argv)
    if not (args.llama or args.gpt2):
        parser.error("name --llama DIR, --gpt2 DIR or both")
    train = corpus.texts(corpus.read(args.corpus), "train")
    if args.llama:
        print("wrote", train_llama_tokenizer(train, args.llama, args.vocab_size))
    if args.gpt2:
        print("wrote", *train_gpt2_tokenizer(train, args.gpt2, args.vocab_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
