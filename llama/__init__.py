"""LLaMA in Meta's reference layout, with hooks for prefix-tuning, virtual tokens and attention recording."""

from llama.checkpoint import CheckpointError
from llama.generation import Llama
from llama.model import ModelArgs, Transformer
from llama.tokenizer import Tokenizer
from recording import HookPoint, record

__all__ = ["CheckpointError", "HookPoint", "Llama", "ModelArgs", "Tokenizer", "Transformer", "record"]
