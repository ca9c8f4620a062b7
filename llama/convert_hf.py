"""Hugging Face LLaMA checkpoints (config.json + *.safetensors) to Meta's layout, and back.

    python -m llama.convert_hf HF_DIR OUT_DIR [--parts N]        # Hugging Face -> Meta
    python -m llama.convert_hf --to-hf META_DIR OUT_DIR          # Meta -> Hugging Face (LlamaForCausalLM)

Hugging Face stores each query/key head with the two halves of its rotary pairs in separate blocks of rows
(rotate-half convention); Meta's layout interleaves them, so those rows are permuted between the two.
"""

import argparse
import json
import shutil
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

from llama.checkpoint import (
    CheckpointError,
    StateDict,
    checkpoint_params,
    load_shard,
    read_params,
    save_checkpoint,
    shard_paths,
)
from llama.model import ModelArgs, ffn_hidden_dim
from llama.shards import merge_shards, split_state_dict

LAYER_NAMES = {  # Hugging Face name inside model.layers.N -> Meta name inside layers.N
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
TOP_NAMES = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}


def args_from_hf_config(config: dict) -> ModelArgs:
    """ModelArgs equivalent to a Hugging Face LlamaConfig (as a dict); unsupported variants are errors."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    unsupported = {
        "hidden_act": config.get("hidden_act", "silu") != "silu",
        "attention_bias": config.get("attention_bias", False),
        "mlp_bias": config.get("mlp_bias", False),
        "rope_type": rope.get("rope_type", rope.get("type", "default")) != "default",
        "head_dim": config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])
        != config["hidden_size"] // config["num_attention_heads"],
    }
    if any(unsupported.values()):
        raise CheckpointError(
            f"config.json uses {[k for k, v in unsupported.items() if v]} beyond Meta's LLaMA architecture"
        )
    dim, hidden_dim = config["hidden_size"], config["intermediate_size"]
    args = ModelArgs(
        dim=dim,
        n_layers=config["num_hidden_layers"],
        n_heads=config["num_attention_heads"],
        n_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
        vocab_size=config["vocab_size"],
        multiple_of=hidden_dim,  # with this multiplier, Meta's width rule gives exactly intermediate_size
        ffn_dim_multiplier=hidden_dim / int(2 * 4 * dim / 3),
        norm_eps=config["rms_norm_eps"],
        rope_theta=rope.get("rope_theta", config.get("rope_theta", 10000.0)),
    )
    assert ffn_hidden_dim(args) == hidden_dim
    return args


def meta_weight_name(hf_name: str) -> Optional[str]:
    """Meta's name for a Hugging Face weight name (None: no counterpart)."""
    if hf_name in TOP_NAMES:
        return TOP_NAMES[hf_name]
    parts = hf_name.split(".", 3)  # model, layers, N, name inside the layer
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in LAYER_NAMES:
        return f"layers.{parts[2]}.{LAYER_NAMES[parts[3]]}"
    return None


def unpermute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a query/key projection from rotate-half order (per head: all first halves, then all second
    halves of the pairs) to Meta's interleaved pairs. weight: (n_heads * head_dim, dim)."""
    head_dim = weight.shape[0] // n_heads
    halves = weight.reshape(n_heads, 2, head_dim // 2, weight.shape[1])  # head, half, pair, input
    return halves.transpose(1, 2).reshape(weight.shape)


def permute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of unpermute_rotary: Meta's interleaved pairs to rotate-half order."""
    head_dim = weight.shape[0] // n_heads
    pairs = weight.reshape(n_heads, head_dim // 2, 2, weight.shape[1])  # head, pair, half, input
    return pairs.transpose(1, 2).reshape(weight.shape)


def hf_config(args: ModelArgs) -> dict:
    """The Hugging Face LlamaConfig (as a dict) of a Meta model."""
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "hidden_size": args.dim, "intermediate_size": ffn_hidden_dim(args),
            "num_hidden_layers": args.n_layers, "num_attention_heads": args.n_heads,
            "num_key_value_heads": args.n_kv_heads or args.n_heads, "vocab_size": args.vocab_size,
            "rms_norm_eps": args.norm_eps, "rope_theta": args.rope_theta, "max_position_embeddings": args.max_seq_len,
            "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"}


def save_hf_checkpoint(meta_dir: str, out_dir: str) -> None:
    """A Meta folder (params.json, consolidated.NN.pth, tokenizer.model) as a Hugging Face LlamaForCausalLM
    folder (config.json, model.safetensors, tokenizer.model), the weights in float32."""
    params = read_params(meta_dir)
    n_shards = len(shard_paths(meta_dir))  # a clear error for a folder without its shards
    state_dict = merge_shards([load_shard(meta_dir, rank, n_shards) for rank in range(n_shards)])
    args = ModelArgs(**params)
    if args.vocab_size < 0:
        args.vocab_size = state_dict["tok_embeddings.weight"].shape[0]
    hf_names = {meta: hf for hf, meta in TOP_NAMES.items()}
    hf_names.update({f"layers.{i}.{meta}": f"model.layers.{i}.{hf}" for i in range(args.n_layers)
                     for hf, meta in LAYER_NAMES.items()})
    weights = {}
    for name, tensor in state_dict.items():
        if name not in hf_names:
            raise CheckpointError(f"{name} in {meta_dir} has no counterpart in Hugging Face's LLaMA")
        if name.endswith("attention.wq.weight") or name.endswith("attention.wk.weight"):
            tensor = permute_rotary(tensor, args.n_heads if name.endswith("wq.weight") else args.n_kv_heads or args.n_heads)
        weights[hf_names[name]] = tensor.float().contiguous()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_config(args), indent=2) + "\n")
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    if (Path(meta_dir) / "tokenizer.model").is_file():  # read as Meta's generation reads it: BOS first, no EOS
        shutil.copy(Path(meta_dir) / "tokenizer.model", out / "tokenizer.model")
        (out / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
             "bos_token": "<s>", "eos_token": "</s>"}, indent=2) + "\n")


def read_hf_weights(hf_dir: Path) -> StateDict:
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(
            f"no *.safetensors file in {hf_dir}: save the model with save_pretrained(safe_serialization=True)"
        )
    weights: StateDict = {}
    for path in files:
        weights.update(load_file(path))
    return weights


def load_hf_checkpoint(hf_dir: str) -> Tuple[ModelArgs, StateDict]:
    """ModelArgs and a single-shard state dict in Meta's naming, from a Hugging Face LLaMA directory."""
    directory = Path(hf_dir)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path} not found: a Hugging Face checkpoint directory holds config.json")
    config = json.loads(config_path.read_text())
    args = args_from_hf_config(config)
    weights = read_hf_weights(directory)
    if "lm_head.weight" not in weights and config.get("tie_word_embeddings", False):
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]

    state_dict: StateDict = {}
    for name, tensor in weights.items():
        meta_name = meta_weight_name(name)
        if meta_name is None:
            raise CheckpointError(f"{name} in {hf_dir} has no counterpart in Meta's LLaMA")
        state_dict[meta_name] = tensor
    for layer in range(args.n_layers):
        wq, wk = f"layers.{layer}.attention.wq.weight", f"layers.{layer}.attention.wk.weight"
        state_dict[wq] = unpermute_rotary(state_dict[wq], args.n_heads)
        state_dict[wk] = unpermute_rotary(state_dict[wk], args.n_kv_heads)
    return args, state_dict


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llama.convert_hf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("hf_dir", help="directory with config.json and *.safetensors (with --to-hf: a Meta folder)")
    parser.add_argument("out_dir", help="output directory (params.json, consolidated.NN.pth; with --to-hf: "
                                        "config.json, model.safetensors)")
    parser.add_argument("--parts", type=int, default=1, help="number of model-parallel shards (default 1)")
    parser.add_argument("--to-hf", action="store_true", help="convert a Meta folder to Hugging Face's layout instead")
    args = parser.parse_args(argv)
    if args.to_hf:
        save_hf_checkpoint(args.hf_dir, args.out_dir)
        return
    model_args, state_dict = load_hf_checkpoint(args.hf_dir)
    save_checkpoint(args.out_dir, checkpoint_params(model_args), split_state_dict(state_dict, args.parts))
    tokenizer = Path(args.hf_dir) / "tokenizer.model"
    if tokenizer.is_file():
        shutil.copy(tokenizer, Path(args.out_dir) / "tokenizer.model")


if __name__ == "__main__":
    main()
