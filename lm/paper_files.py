"""The paper's published LLaMA and GPT-2 files (Sections 3, 4 and Appendix B), loaded for this project's models.

The paper's repository publishes its trained artefacts in a shared folder. This module looks for these
in the folder named by $PAPER_FILES_DIR, else the repository root (the minGPT files: `mingpt.paper_files`):

    file                                              holds                                        notebook
    llama-7B_DART_Classic_1_1_20230920_223226_9.pt    {"prefix": (32, 1, 4096)}, a DART prefix      prefix_bias_only
    llama_completions.pt                              virtual tokens (N, length, 4096)              llama_token_vs_soft_token
    longer_prefixes.pt                                20 GPT-2 prefixes (20, 12, 10, 768)           longer_prefixes

A prefix here is the paper's parametrisation, which this project's models share: in every layer the input
at the prefix positions (before the layer's normalisation) is the prefix's vector, and the content follows
at positions n_S... Tensors saved from CUDA are loaded on the CPU; each is checked against the model it is
used with, so a file made for another model (width, depth) is refused with the shapes named.
"""

import os
from pathlib import Path
from typing import Optional

import torch

from core.records import ROOT, shown

ENV_VAR = "PAPER_FILES_DIR"
DART_PREFIX = "llama-7B_DART_Classic_1_1_20230920_223226_9.pt"   # the prefix of the paper's Section 4 figure
VIRTUAL_TOKENS = "llama_completions.pt"
LONGER_PREFIXES = "longer_prefixes.pt"
PAPER_DART_SAMPLE, PAPER_HEAD = 104, 12   # the paper's Section 4 protocol: DART test sample 104, layer 0, head 12


def folder(path: Optional[Path] = None) -> Path:
    """Where the files are looked for: `path`, else $PAPER_FILES_DIR, else the repository root."""
    if path is not None:
        return Path(path)
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else ROOT


def path_of(name: str, where: Optional[Path] = None) -> Path:
    return folder(where) / name


def available(name: str, where: Optional[Path] = None) -> bool:
    return path_of(name, where).is_file()


def describe_missing(name: str, where: Optional[Path] = None) -> str:
    """Which file was looked for where, for a notebook to print when it is absent."""
    return (f"the paper's {name} is not in {shown(folder(where))} (the repository root unless {ENV_VAR} is set); download it from "
            "the paper's shared folder (linked from its repository's README) and put it there to use it here")


def _load(name: str, where: Optional[Path]):
    path = path_of(name, where)
    if not path.is_file():
        raise FileNotFoundError(describe_missing(name, where))
    try:
        return path, torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} could not be read ({type(e).__name__}: {e}); download it again") from e


def _check_prefixes(path: Path, prefixes: torch.Tensor, model, per_prefix_dims: int) -> torch.Tensor:
    """prefixes (..., n_layers, n_S, dim) against model.prefix_shape(n_S)."""
    if not isinstance(prefixes, torch.Tensor) or prefixes.dim() != per_prefix_dims:
        shape = tuple(prefixes.shape) if isinstance(prefixes, torch.Tensor) else type(prefixes).__name__
        raise ValueError(f"{path} holds {shape}; expected a tensor of {per_prefix_dims} dimensions")
    expected = tuple(model.prefix_shape(prefixes.shape[-2]))
    if tuple(prefixes.shape[-3:]) != expected:
        raise ValueError(f"{path} holds prefixes of shape {tuple(prefixes.shape)}, but this model's prefix of length "
                         f"{prefixes.shape[-2]} has shape (n_layers, n_S, dim) = {expected}: the file was made for "
                         "another model (point LLAMA_CKPT_DIR / GPT2_DIR at the model it was trained on)")
    return prefixes.detach().float()


def llama_prefix(model, where: Optional[Path] = None, name: str = DART_PREFIX) -> torch.Tensor:
    """The paper's LLaMA prefix, (n_layers, n_S, dim) float32 on the CPU, from a dict {"prefix": tensor}."""
    path, saved = _load(name, where)
    if not isinstance(saved, dict) or "prefix" not in saved:
        raise ValueError(f"{path} is not a prefix file of the paper's prefix_tune.py (no 'prefix' entry)")
    return _check_prefixes(path, saved["prefix"], model, 3)


def gpt2_prefixes(model, where: Optional[Path] = None, name: str = LONGER_PREFIXES) -> torch.Tensor:
    """The paper's Appendix B prefixes, (n_prefixes, n_layers, n_S, dim) float32 on the CPU."""
    path, saved = _load(name, where)
    return _check_prefixes(path, saved, model, 4)


def virtual_tokens(model, where: Optional[Path] = None, name: str = VIRTUAL_TOKENS) -> torch.Tensor:
    """The paper's Section 3 virtual tokens, (N, length, dim) float32 on the CPU, fed as input embeddings."""
    path, saved = _load(name, where)
    dim = model.dims.width
    if not isinstance(saved, torch.Tensor) or saved.dim() != 3 or saved.shape[-1] != dim:
        shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
        raise ValueError(f"{path} holds {shape}, but this model takes virtual tokens of shape (N, length, {dim}): "
                         "the file was made for another model (point LLAMA_CKPT_DIR at LLaMA-7B)")
    return saved.detach().float()
