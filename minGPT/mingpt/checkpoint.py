"""Saving and loading minGPT models (atomic, sha256-checked: `core.checkpoint`)."""

from dataclasses import asdict
from typing import Optional

from core.checkpoint import atomic_save, check_config, read

from .model import GPT, GPTConfig


def model_state(model: GPT, half: bool = False) -> dict:
    """A model's config and weights (optionally float16 to halve the file) as a checkpoint dict."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    return {"model_config": asdict(model.config), "model": state}


def load_model_from(ckpt: dict, config: Optional[GPTConfig] = None, source: str = "checkpoint") -> GPT:
    """Build a float32 GPT, in eval mode, from a checkpoint dict; if `config` is given it must match."""
    if config is not None:
        check_config(ckpt["model_config"], asdict(config), source=str(source))
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model.eval()


def save_model(model: GPT, path, half: bool = False, **meta) -> None:
    atomic_save({**model_state(model, half), "meta": meta}, path)


def load_model(path, config: Optional[GPTConfig] = None, expected_sha256: Optional[str] = None) -> GPT:
    return load_model_from(read(path, expected_sha256), config, source=path)
