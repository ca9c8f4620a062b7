"""Section 3 constructions of Petrov, Torr & Bibi (ICLR 2024) as explicit transformer weights."""
from .char_map import build_char_map
from .construction import Completion, Construction
from .decoding import decode_logits, decoding_lines, encode
from .layers import MLP, Attention, AttentionHead
from .model import Model
from .pair_map import build_pair_map
from .response_map import build_response_map
from .space import Space
from .string_generator import build_string_generator
from .vocabulary import PRINTABLE, Vocabulary, digits

__all__ = [
    "MLP", "PRINTABLE", "Attention", "AttentionHead", "Completion", "Construction", "Model", "Space",
    "Vocabulary", "build_char_map", "build_pair_map", "build_response_map", "build_string_generator",
    "decode_logits", "decoding_lines", "digits", "encode",
]
