"""GPT-2 weights in a local Hugging Face-style folder: load them into our GPT, or save our GPT as one.

The folder holds ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin`` (as written by
``GPT2LMHeadModel.save_pretrained``). Hugging Face's GPT-2 stores its linear layers as Conv1D, whose
weight is the transpose of an nn.Linear weight, and ties the output layer to the token embedding.
"""

import json
from pathlib import Path

import torch

from .model import GPT, GPTConfig

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def gpt2_config(folder) -> GPTConfig:
    """GPTConfig from a Hugging Face GPT-2 config.json (dropout 0: weights are for inference)."""
    path = Path(folder) / "config.json"
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass a Hugging Face GPT-2 folder (config.json, "
                                "model.safetensors, vocab.json, merges.txt)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a Hugging Face GPT-2 folder needs config.json")
    hf = json.loads(path.read_text())
    activation = hf.get("activation_function", "gelu_new")
    if activation not in _TANH_GELU:
        raise ValueError(f"{path}: activation_function {activation!r} is not the tanh GELU our GPT uses")
    return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
                     n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=0.0,
                     layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5))


def _read_state_dict(folder: Path) -> dict:
    safetensors_path, bin_path = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors_path.is_file():
        from safetensors.torch import load_file
        return load_file(str(safetensors_path))
    if bin_path.is_file():
        return torch.load(bin_path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} holds neither model.safetensors nor pytorch_model.bin")


def load_gpt2(folder) -> GPT:
    """A GPT with the weights of the GPT-2 checkpoint in `folder` (strict: every weight is matched)."""
    folder = Path(folder)
    model = GPT(gpt2_config(folder))
    hf = {k.removeprefix("transformer."): v for k, v in _read_state_dict(folder).items()
          if not k.endswith((".attn.bias", ".attn.masked_bias"))}        # causal-mask buffers
    hf.setdefault("lm_head.weight", hf["wte.weight"])                     # tied output embedding
    ours = {}
    for name, value in hf.items():
        key = name if name == "lm_head.weight" else "transformer." + name
        ours[key] = value.t() if name.endswith(_CONV1D) else value
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match a GPT-2 of this config (missing {missing}, "
                         f"unexpected {unexpected})")
    for key, value in ours.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"{folder}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    model.load_state_dict({k: v.float() for k, v in ours.items()})
    return model


def save_gpt2(model: GPT, folder, dtype: torch.dtype = torch.float32, **config_fields) -> None:
    """Write `model` as a Hugging Face GPT-2 folder: config.json and model.safetensors (Conv1D layout, output
    layer tied to the token embedding, which it must be). config_fields: e.g. bos_token_id, eos_token_id."""
    from safetensors.torch import save_file
    c = model.config
    if not c.attn_layernorm:
        raise ValueError("GPT-2 has a LayerNorm before attention; this model (attn_layernorm=False) is not a GPT-2")
    wte, head = model.transformer.wte.weight, model.lm_head.weight
    if head.data_ptr() != wte.data_ptr() and not torch.equal(head, wte):
        raise ValueError("GPT-2 ties its output layer to the token embedding, but this model's lm_head differs "
                         "from transformer.wte: train it with `model.lm_head.weight = model.transformer.wte.weight`")
    tensors = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            continue
        name = key.removeprefix("transformer.")
        value = value.t() if name.endswith(_CONV1D) else value
        tensors["transformer." + name] = value.detach().to(dtype).contiguous().cpu()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
              "n_positions": c.block_size, "n_ctx": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer,
              "n_head": c.n_head, "n_inner": None, "activation_function": "gelu_new", "resid_pdrop": c.dropout,
              "embd_pdrop": c.dropout, "attn_pdrop": c.dropout, "layer_norm_epsilon": c.layer_norm_eps,
              "initializer_range": 0.02, "tie_word_embeddings": True,
              "torch_dtype": str(dtype).removeprefix("torch."), **config_fields}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
