"""GPT-2's byte-level BPE, read from a GPT-2 folder's own `vocab.json` and `merges.txt`.

The interface is LLaMA's `Tokenizer` (`encode(s, bos, eos)`, `decode`, `n_words`, `bos_id`, `eos_id`),
so code written against one family reads the same against the other. GPT-2 has one special token,
``<|endoftext|>``, which serves as both BOS and EOS.
"""

from pathlib import Path
from typing import List

END_OF_TEXT = "<|endoftext|>"


class GPT2Tokenizer:
    def __init__(self, folder):
        from tokenizers import ByteLevelBPETokenizer
        folder = Path(folder)
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        if not vocab.is_file() or not merges.is_file():
            raise FileNotFoundError(f"{folder} has no vocab.json and merges.txt: a GPT-2 folder holds GPT-2's "
                                    "byte-level BPE in these two files")
        self.tokenizer = ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=False)  # GPT-2's pipeline
        end_of_text = self.tokenizer.token_to_id(END_OF_TEXT)
        if end_of_text is None:
            raise ValueError(f"{vocab} has no {END_OF_TEXT} token: it is not a GPT-2 vocabulary")
        self.n_words: int = self.tokenizer.get_vocab_size()
        self.bos_id: int = end_of_text
        self.eos_id: int = end_of_text

    def encode(self, s: str, bos: bool, eos: bool) -> List[int]:
        """Token ids of s, optionally after a BOS and before an EOS (both <|endoftext|>)."""
        return [self.bos_id] * bos + self.tokenizer.encode(s).ids + [self.eos_id] * eos

    def decode(self, t: List[int]) -> str:
        return self.tokenizer.decode(t)
