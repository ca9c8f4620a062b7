"""Files in the layouts the paper's repository publishes, built from this project's models for the tests.

A minGPT model file is the `state_dict` of Karpathy's minGPT: this GPT's parameter names plus one
causal-mask buffer `attn.bias` (1, 1, block_size, block_size) per layer; the companion's context is
n_S + 19 positions (the sequence without its last token). A prefix file is one tensor
(n_layer, n_S, n_embd) saved as the companion saves it: a leaf that requires grad.
"""

from pathlib import Path
from typing import Dict, Tuple

import torch

from lm import paper_files as lm_paper_files
from mingpt import paper_files
from mingpt.model import GPT, GPTConfig


def companion_state(model: GPT) -> dict:
    """A GPT's state dict as Karpathy's minGPT saves it: the mask buffers added after each block's attention."""
    n = model.config.block_size
    state = {}
    for key, value in model.state_dict().items():
        state[key] = value.clone()
        if key.endswith("attn.c_proj.bias"):
            state[key.replace("c_proj.bias", "bias")] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    return state


def write_mingpt_files(folder: Path, experiment: str, seed: int = 0) -> Tuple[GPT, Dict[str, torch.Tensor]]:
    """A random model of the experiment's published configuration and a prefix for each published task,
    written into `folder` under the published names; returns them as this project holds them."""
    paper = paper_files.PAPER_MODELS[experiment]
    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=paper.n_layer, n_head=paper.n_head, n_embd=paper.n_embd,
                          block_size=paper.prefix_len + 19, attn_layernorm=experiment != "B")).eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(companion_state(model), folder / paper.model_file)
    prefixes = {}
    for task in paper.prefix_tasks:
        prefix = torch.randn(model.prefix_shape(paper.prefix_len), requires_grad=True)
        torch.save(prefix, folder / paper.prefix_file(task))
        prefixes[task] = prefix.detach().clone()
    return model, prefixes


def write_dart_prefix(folder: Path, prefix: torch.Tensor) -> Path:
    """A LLaMA prefix (n_layers, n_S, dim) as the paper's prefix_tune.py saves it: {"prefix": leaf requiring grad}."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lm_paper_files.DART_PREFIX
    torch.save({"prefix": prefix.detach().clone().float().requires_grad_()}, path)
    return path


def write_tensor(folder: Path, name: str, tensor: torch.Tensor) -> Path:
    """One tensor under a published name (longer_prefixes.pt, llama_completions.pt)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tensor.detach().clone().float(), folder / name)
    return folder / name
