"""SentencePiece tokenizer wrapper."""

import os
from typing import List

from sentencepiece import SentencePieceProcessor


class Tokenizer:
    def __init__(self, model_path: str):
        if not os.path.isfile(model_path):
            raise FileNotFoundError(
                f"tokenizer model {model_path} not found: pass the path of a SentencePiece tokenizer.model"
            )
        self.sp_model = SentencePieceProcessor(model_file=model_path)
        self.n_words: int = self.sp_model.vocab_size()
        self.bos_id: int = self.sp_model.bos_id()
        self.eos_id: int = self.sp_model.eos_id()
        self.pad_id: int = self.sp_model.pad_id()  # -1 when the model has no padding piece (as LLaMA's)

    def encode(self, s: str, bos: bool, eos: bool) -> List[int]:
        """Token ids of s, optionally starting with BOS and ending with EOS."""
        return [self.bos_id] * bos + self.sp_model.encode(s) + [self.eos_id] * eos

    def decode(self, t: List[int]) -> str:
        return self.sp_model.decode(t)
