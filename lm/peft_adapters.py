"""This project's prefixes as Hugging Face PEFT prefix-tuning adapters, and PEFT adapters read back as keys and values.

    python -m lm.peft_adapters results/prefix_tuning/gpt2-classification-n10 --out runs/peft/gpt2-n10-seed1
    python -m lm.peft_adapters results/prefix_tuning/llama-table_to_text-n1 --out runs/peft/llama-n1 \
        --base-hf runs/peft/llama-standin-hf      # the LLaMA stand-in converted to Hugging Face's layout first

PEFT's prefix tuning (`PrefixTuningConfig`, `prefix_projection` off) learns each layer's keys and values at
the n_S virtual positions directly, as one tensor `prompt_embeddings` of shape
(n_S, n_layers * 2 * n_kv_heads * head_dim): row k holds, layer by layer, the key and then the value of
position k, heads side by side. This project's prefix is the paper's parametrisation, the input of every
layer at those positions; the frozen model turns it into keys and values (`prefix_attention.prefix_keys_values`),
so it is the special case of PEFT's free parametrisation that exporting writes out. The content then sits at
positions n_S.. in both. Hugging Face's LLaMA keeps each head's rotary pairs in rotate-half order (the
first entries of all pairs, then the second ones), Meta's interleaved: the exported keys are permuted to
Hugging Face's order, which leaves every dot product unchanged.

PEFT's prompt tuning (`PromptTuningConfig`) learns input embeddings only (n_virtual, dim): virtual tokens,
whose keys and values in each layer the model computes from them.
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from core.records import ROOT, shown
from lm.prefix_tune import load_prefixes
from lm.stand_ins import load_model

ADAPTER_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
SUPPORTED = ("PREFIX_TUNING", "PROMPT_TUNING")


class AdapterError(ValueError):
    """An adapter, model or input the diagnostics cannot use; the message names the problem and the fix."""


@dataclass
class Adapter:
    """A PEFT prompt-learning adapter as the diagnostics read it."""
    kind: str                               # "PREFIX_TUNING" or "PROMPT_TUNING"
    n_virtual: int                          # n_S: the positions it takes before the content
    keys: Optional[torch.Tensor] = None     # prefix tuning: (n_layers, n_kv_heads, n_S, head_dim), as cached
    values: Optional[torch.Tensor] = None
    embeddings: Optional[torch.Tensor] = None  # prompt tuning: (n_virtual, dim)
    base_model: str = ""


def rotate_half_order(head_dim: int) -> torch.Tensor:
    """Meta's interleaved rotary pairs (x0, x1), (x2, x3), ... to Hugging Face's order (x0, x2, ..., x1, x3, ...)."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def to_prompt_embeddings(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(n_layers, n_kv_heads, n_S, head_dim) keys and values -> PEFT's (n_S, n_layers * 2 * n_kv_heads * head_dim)."""
    n_layers, n_heads, n_s, head_dim = keys.shape
    stacked = torch.stack([keys, values], dim=1)                     # (L, 2, H, n_S, hd)
    return stacked.permute(3, 0, 1, 2, 4).reshape(n_s, n_layers * 2 * n_heads * head_dim)


def from_prompt_embeddings(embeddings: torch.Tensor, n_layers: int, n_heads: int):
    """The inverse of to_prompt_embeddings: PEFT's tensor -> keys, values (n_layers, n_heads, n_S, head_dim)."""
    n_s = embeddings.shape[0]
    stacked = embeddings.reshape(n_s, n_layers, 2, n_heads, -1).permute(1, 2, 3, 0, 4)   # (L, 2, H, n_S, hd)
    return stacked[:, 0], stacked[:, 1]


def export_prefix(model, prefix: torch.Tensor, out: Path, base_hf: Path) -> Path:
    """Write one prefix (n_layers, n_S, dim) of `model` as a PEFT prefix-tuning adapter for the Hugging Face
    model in `base_hf` (its keys and values in float32)."""
    from peft import PrefixTuningConfig
    keys, values = model.prefix_keys_values(prefix.float())
    if model.family == "llama":  # Hugging Face's rotary layout
        keys = keys[..., rotate_half_order(keys.shape[-1])]
    n_layers, n_heads, n_s, head_dim = keys.shape
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n_s, token_dim=n_heads * head_dim,
                                num_layers=n_layers, num_attention_heads=n_heads, prefix_projection=False,
                                inference_mode=True, base_model_name_or_path=shown(base_hf))
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    save_file({"prompt_embeddings": to_prompt_embeddings(keys, values).float().contiguous()}, out / ADAPTER_FILE)
    return out


def hf_folder_of(family: str, model_folder: Path, base_hf: Optional[Path]) -> Path:
    """The Hugging Face form of a run's model: GPT-2 folders are one already; a Meta LLaMA folder is converted
    into `base_hf` (once: an existing conversion is reused)."""
    if family == "gpt2":
        return Path(base_hf or model_folder)
    if base_hf is None:
        raise AdapterError("a LLaMA run needs --base-hf DIR: where the Hugging Face form of its Meta folder is, or is "
                         "to be written (python -m llama.convert_hf --to-hf)")
    from llama.checkpoint import read_params
    from llama.convert_hf import hf_config, save_hf_checkpoint
    from llama.model import ModelArgs
    config_path = Path(base_hf) / "config.json"
    if not config_path.is_file():
        save_hf_checkpoint(str(model_folder), str(base_hf))
    expected = {k: v for k, v in hf_config(ModelArgs(**read_params(str(model_folder)))).items() if k != "vocab_size"}
    found = json.loads(config_path.read_text())
    if any(found.get(k) != v for k, v in expected.items() if k not in ("torch_dtype", "max_position_embeddings")):
        raise AdapterError(f"{base_hf} holds another model than {model_folder} (its config.json differs); "
                           "give --base-hf an empty folder to convert into")
    return Path(base_hf)


def read_adapter(adapter_dir: Path) -> Adapter:
    """A PEFT prefix-tuning or prompt-tuning adapter folder, with errors that name what else it is."""
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: a PEFT adapter folder holds {CONFIG_FILE} and "
                                f"{ADAPTER_FILE} (PeftModel.save_pretrained)")
    config = json.loads(config_path.read_text())
    kind = config.get("peft_type")
    if kind not in SUPPORTED:
        raise AdapterError(f"{adapter_dir} is a {kind} adapter; the paper's diagnostics are for prefix tuning and prompt "
                         f"tuning ({' or '.join(SUPPORTED)}), which add positions before the input")
    weights = load_file(adapter_dir / ADAPTER_FILE)
    if "prompt_embeddings" not in weights:
        raise AdapterError(f"{adapter_dir / ADAPTER_FILE} has no 'prompt_embeddings' (keys: {sorted(weights)[:4]})")
    embeddings = weights["prompt_embeddings"].float()
    n_virtual = config["num_virtual_tokens"]
    if kind == "PROMPT_TUNING":
        return Adapter(kind, n_virtual, embeddings=embeddings, base_model=config.get("base_model_name_or_path", ""))
    expected = config["num_layers"] * 2 * config["token_dim"]  # PEFT saves the keys and values, projected or not
    if embeddings.shape != (n_virtual, expected):
        raise AdapterError(f"{adapter_dir / ADAPTER_FILE} holds prompt_embeddings of shape {tuple(embeddings.shape)}, "
                           f"but its config describes ({n_virtual}, {expected}) = (num_virtual_tokens, num_layers * 2 * token_dim)")
    keys, values = from_prompt_embeddings(embeddings, config["num_layers"], config["num_attention_heads"])
    return Adapter(kind, n_virtual, keys=keys, values=values, base_model=config.get("base_model_name_or_path", ""))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lm.peft_adapters", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder of `python -m lm.prefix_tune` (prefixes.pt, manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="the adapter folder to write")
    parser.add_argument("--index", type=int, default=0, help="which of the run's prefixes (default 0, the first seed)")
    parser.add_argument("--base-hf", type=Path, default=None,
                        help="the base model in Hugging Face's layout (GPT-2: default the run's model folder; "
                             "LLaMA: required, written from the Meta folder when absent)")
    args = parser.parse_args(argv)
    manifest_path = args.run / "manifest.json"
    if not manifest_path.is_file():
        parser.error(f"{manifest_path} not found: RUN is a folder written by `python -m lm.prefix_tune`")
    manifest = json.loads(manifest_path.read_text())
    model_folder = ROOT / manifest["model_folder"]
    model = load_model(manifest["family"], model_folder)
    prefixes = load_prefixes(args.run / "prefixes.pt", model)["prefixes"]
    if not 0 <= args.index < len(prefixes):
        parser.error(f"--index {args.index}: the run has {len(prefixes)} prefixes (0..{len(prefixes) - 1})")
    base = hf_folder_of(manifest["family"], model_folder, args.base_hf)
    export_prefix(model, prefixes[args.index], args.out, base)
    seed = manifest["seeds"][args.index]
    source = {"run": str(args.run), "seed": seed, "index": args.index, "prefixes_sha256": manifest["prefixes_sha256"],
              "base_hf": shown(base)}
    (args.out / "exported_from.json").write_text(json.dumps(source, indent=1) + "\n")
    print(f"wrote {args.out}: the prefix of seed {seed} (n_S = {prefixes.shape[-2]}) for {base}")


if __name__ == "__main__":
    main()
