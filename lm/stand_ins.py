"""The embedded language models ("stand-ins") for LLaMA and GPT-2, and where code finds a model.

Each stand-in is committed in its real counterpart's layout and loaded by the same code as the real
model. One variable per family points every notebook and command at real weights instead:

* ``LLAMA_CKPT_DIR``: a Meta LLaMA folder (params.json, consolidated.NN.pth, tokenizer.model);
* ``GPT2_DIR``: a Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt).
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

from core.records import ROOT


@dataclass(frozen=True)
class StandIn:
    family: str          # "llama" or "gpt2"
    folder: Path         # the committed model, in the real model's layout
    env_var: str         # names a folder of real weights to use instead
    dim: int
    n_layers: int
    n_heads: int
    context: int         # tokens per training sequence (and GPT-2's n_positions)
    vocab_size: int


STAND_INS = {
    "llama": StandIn("llama", ROOT / "models" / "llama-standin", "LLAMA_CKPT_DIR",
                     dim=256, n_layers=6, n_heads=8, context=256, vocab_size=4096),
    "gpt2": StandIn("gpt2", ROOT / "models" / "gpt2-standin", "GPT2_DIR",
                    dim=256, n_layers=6, n_heads=8, context=256, vocab_size=4096),
}


def stand_in(family: str) -> StandIn:
    if family not in STAND_INS:
        raise ValueError(f"unknown model family {family!r}; choose from {sorted(STAND_INS)}")
    return STAND_INS[family]


def model_dir(family: str) -> Path:
    """The folder to load: the family's variable when it is set, the committed stand-in otherwise."""
    spec = stand_in(family)
    return Path(os.environ.get(spec.env_var) or spec.folder)


def load_llama(folder=None, max_seq_len: int = 512, max_batch_size: int = 64, device: Optional[str] = None,
               dtype: Optional[torch.dtype] = None):
    """`llama.Llama` built from a Meta folder (default: `model_dir("llama")`), exactly as LLaMA-7B is."""
    from llama import Llama
    folder = Path(folder or model_dir("llama"))
    return Llama.build(str(folder), str(folder / "tokenizer.model"), max_seq_len=max_seq_len,
                       max_batch_size=max_batch_size, device=device, dtype=dtype)


def load_gpt2(folder=None) -> Tuple["torch.nn.Module", "object"]:
    """(GPT, tokenizer) from a Hugging Face GPT-2 folder (default: `model_dir("gpt2")`), exactly as GPT-2 is."""
    from mingpt.gpt2_tokenizer import GPT2Tokenizer
    from mingpt.gpt2_weights import load_gpt2 as load_weights
    folder = Path(folder or model_dir("gpt2"))
    return load_weights(folder).eval().requires_grad_(False), GPT2Tokenizer(folder)


def load_model(family: str, folder=None) -> torch.nn.Module:
    """Either family's model from its folder (default: `model_dir(family)`), through the real loader, in fp32
    on the CPU and sized for the stand-in's context: what training, evaluation and tests compare."""
    if stand_in(family).family == "llama":
        return load_llama(folder, max_seq_len=STAND_INS["llama"].context, max_batch_size=32, device="cpu").model
    return load_gpt2(folder)[0]
