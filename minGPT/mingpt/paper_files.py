"""The paper's published minGPT models and prefixes (Sections 5-6), loaded into this project's GPT.

The paper's repository publishes its trained files in a shared folder and tells its readers to put the
minGPT ones in `minGPT/`. This module looks for them there, or in the folder named by $PAPER_FILES_DIR:

    experiment  model file          prefix files                                    n_S  heads
    A           01_sort.pth         (none published)                                 1    1
    B           02_pretrained.pth   02_prefix_{ascending,descending,add1,add2}.pth   1    4
    C           03_pretrained.pth   03_prefix_{task}.pth                            10    4
    D           04_pretrained.pth   04_prefix_double_hist.pth                       12    4

A model file is a `state_dict` of Karpathy's minGPT, whose parameter names this project's GPT shares,
plus one causal-mask buffer `attn.bias` per layer, which is dropped. Depth, width, vocabulary, context
and whether there is a LayerNorm before attention (B has none) are read from the tensors; the head count
is not in them and comes from the paper's configuration above. A prefix file is one tensor
(n_layer, n_S, n_embd), saved from CUDA: it is loaded on the CPU and moved where it is used. The models
were pretrained with n_S zero pads before each input, as this project's are; the prefix takes the pads'
positions in every layer, in both codebases.

Accuracies here use this project's tasks and test split. The companion's split hashes each input with
Python's salted `hash`, so its test set changed from process to process and about 3/4 of this project's
test inputs were training inputs of the paper's runs: read these numbers as the paper's models on this
project's data, close to but not the paper's own measurement.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

from core.records import ROOT, shown

from . import tasks
from .model import GPT, GPTConfig

ENV_VAR = "PAPER_FILES_DIR"
MINGPT_DIR = ROOT / "minGPT"
TASK_OF_NAME = {"ascending": "sort_asc", "descending": "sort_desc", "add1": "add1", "add2": "add2",
                "ascending_add1": "sort_asc_add1", "double_hist": "double_hist"}  # the companion's task names
NAME_OF_TASK = {task: name for name, task in TASK_OF_NAME.items()}


@dataclass(frozen=True)
class PaperModel:
    """One experiment's published files and the configuration the tensors do not carry."""
    experiment: str
    number: str              # the companion notebook's number, which starts every file name
    model_file: str
    prefix_tasks: tuple      # tasks with a published prefix file `<stem>_prefix_<name>.pth`
    prefix_len: int          # n_S: zero pads before each input in pretraining, the prefix's length
    n_head: int
    n_layer: int             # the paper's depth and width, checked against the tensors
    n_embd: int

    def prefix_file(self, task: str) -> str:
        return f"{self.number}_prefix_{NAME_OF_TASK[task]}.pth"

    def files(self) -> List[str]:
        return [self.model_file] + [self.prefix_file(t) for t in self.prefix_tasks]


PAPER_MODELS: Dict[str, PaperModel] = {
    "A": PaperModel("A", "01", "01_sort.pth", (), prefix_len=1, n_head=1, n_layer=1, n_embd=96),
    "B": PaperModel("B", "02", "02_pretrained.pth", tasks.PRETRAIN_TASKS, prefix_len=1, n_head=4, n_layer=1, n_embd=256),
    "C": PaperModel("C", "03", "03_pretrained.pth", tasks.TASKS, prefix_len=10, n_head=4, n_layer=4, n_embd=256),
    "D": PaperModel("D", "04", "04_pretrained.pth", ("double_hist",), prefix_len=12, n_head=4, n_layer=4, n_embd=256),
}


def folder(path: Optional[Path] = None) -> Path:
    """Where the files are looked for: `path`, else $PAPER_FILES_DIR, else minGPT/ (the companion's place)."""
    if path is not None:
        return Path(path)
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else MINGPT_DIR


def spec(experiment: str) -> PaperModel:
    if experiment not in PAPER_MODELS:
        raise ValueError(f"unknown experiment {experiment!r}; the paper published files for {sorted(PAPER_MODELS)}")
    return PAPER_MODELS[experiment]


def available(experiment: str, where: Optional[Path] = None) -> bool:
    """Whether the experiment's model file is in the folder (the prefixes are optional)."""
    return (folder(where) / spec(experiment).model_file).is_file()


def _load_tensors(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; download it from the paper's shared folder (linked "
                                f"from its repository's README) and put it in {path.parent}, or set {ENV_VAR}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # CUDA-saved tensors land on the CPU
    except Exception as e:
        raise ValueError(f"{path} could not be read ({type(e).__name__}: {e}); download it again") from e


def config_from_state(state: dict, n_head: int, source: str = "state dict") -> GPTConfig:
    """The GPTConfig a minGPT state dict was saved from; n_head is not in the tensors and must be given."""
    try:
        vocab_size, n_embd = state["transformer.wte.weight"].shape
        block_size = state["transformer.wpe.weight"].shape[0]
    except KeyError as e:
        raise ValueError(f"{source} has no {e.args[0]}: it is not a minGPT model's state dict "
                         f"(its keys start {sorted(state)[:3]})") from e
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if layers != set(range(len(layers))) or not layers:
        raise ValueError(f"{source} has blocks {sorted(layers)}; expected transformer.h.0 .. h.N-1")
    if n_embd % n_head:
        raise ValueError(f"{source} has width {n_embd}, not divisible by n_head={n_head}")
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=len(layers), n_head=n_head,
                     n_embd=n_embd, attn_layernorm="transformer.h.0.ln_1.weight" in state)


def gpt_from_state(state: dict, n_head: int, source: str = "state dict") -> GPT:
    """This project's GPT, float32 and in eval mode, from a Karpathy-minGPT state dict (mask buffers dropped)."""
    state = {k: v for k, v in state.items() if not k.endswith(".attn.bias")}  # the causal-mask buffers
    model = GPT(config_from_state(state, n_head, source))
    expected = model.state_dict()
    unknown, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    if unknown or missing:
        raise ValueError(f"{source} does not match a minGPT model of its shapes: unknown keys {unknown[:5]}"
                         f"{' ...' if len(unknown) > 5 else ''}, missing keys {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})" for k, v in state.items()
             if v.shape != expected[k].shape]
    if wrong:
        raise ValueError(f"{source} has tensors of the wrong shape: {', '.join(wrong[:3])}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_model(experiment: str, where: Optional[Path] = None) -> GPT:
    """The paper's pretrained model of an experiment, checked against the paper's depth and width."""
    paper = spec(experiment)
    path = folder(where) / paper.model_file
    state = _load_tensors(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict; is it a prefix file?")
    model = gpt_from_state(state, paper.n_head, source=str(path))
    c = model.config
    if (c.n_layer, c.n_embd) != (paper.n_layer, paper.n_embd):
        raise ValueError(f"{path} is a model of {c.n_layer} layer(s) and width {c.n_embd}, but experiment "
                         f"{experiment}'s has {paper.n_layer} and {paper.n_embd}: it is another experiment's file")
    if c.block_size < paper.prefix_len + 2 * tasks.INPUT_LEN - 1:
        raise ValueError(f"{path} has {c.block_size} positions, too few for n_S={paper.prefix_len} pads, "
                         f"the input and the output")
    return model


def load_prefix(path: Path, model: GPT, prefix_len: Optional[int] = None) -> torch.Tensor:
    """A published prefix (n_layer, n_S, n_embd) for `model`, float32 on the model's device."""
    path = Path(path)
    prefix = _load_tensors(path)
    if not isinstance(prefix, torch.Tensor):
        raise ValueError(f"{path} holds a {type(prefix).__name__}, not a prefix tensor")
    c = model.config
    if prefix.dim() != 3 or prefix.shape[0] != c.n_layer or prefix.shape[2] != c.n_embd \
            or (prefix_len is not None and prefix.shape[1] != prefix_len):
        expected = f"({c.n_layer}, {prefix_len or 'n_S'}, {c.n_embd})"
        raise ValueError(f"{path} has shape {tuple(prefix.shape)}, but a prefix of this model has {expected}: "
                         "it belongs to a model of another depth, width or n_S")
    return prefix.detach().float().to(next(model.parameters()).device)


def load_prefixes(experiment: str, model: GPT, where: Optional[Path] = None) -> Dict[str, torch.Tensor]:
    """{task: prefix} for each of the experiment's published prefixes found in the folder."""
    paper = spec(experiment)
    paths = {t: folder(where) / paper.prefix_file(t) for t in paper.prefix_tasks}
    return {t: load_prefix(p, model, paper.prefix_len) for t, p in paths.items() if p.is_file()}


def accuracy_table(experiment: str, where: Optional[Path] = None, n: int = 3200,
                   device: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """Accuracy (%) of the paper's model without a prefix and with each published prefix, on every task
    the experiment reports, in this project's layout of rows ("pretrained", "prefix_<task>")."""
    paper = spec(experiment)
    model = load_model(experiment, where)
    if device is not None:
        model.to(device)
    prefixes = {"pretrained": None, **{f"prefix_{t}": p for t, p in load_prefixes(experiment, model, where).items()}}
    test_tasks = {"A": ("sort_asc", "sort_desc"), "B": tasks.PRETRAIN_TASKS, "C": tasks.TASKS,
                  "D": ("double_hist",)}[experiment]
    return tasks.accuracy_matrix(model, prefixes, test_tasks, n=n, placeholders=paper.prefix_len)


def describe_missing(experiment: str, where: Optional[Path] = None) -> str:
    """Which files were looked for where, for a notebook to print when they are absent."""
    paper = spec(experiment)
    return (f"the paper's files for experiment {experiment} ({', '.join(paper.files())}) are not in "
            f"{shown(folder(where))}; put them there (or set {ENV_VAR}) to evaluate the paper's own models here")
