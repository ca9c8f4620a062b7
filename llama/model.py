"""The LLaMA transformer in Meta's reference layout, with prefix-tuning, virtual-token and recording hooks.

The architecture is Meta's reference `llama/model.py` (RMSNorm, rotary embeddings, SwiGLU, fairscale's
model-parallel layers, a key/value cache, grouped-query attention as in Llama 2), written anew; the
checkpoints are Meta's. Every difference from it is listed here and marked on the line that makes it,
with one of four markers:

`# prefix-tuning:` the paper's mechanism (Petrov, Torr, Bibi 2024, Section 4)
  * `forward(prefix=...)`: the prefix takes positions 0..prefix_len-1 of the first chunk; in every layer
    the input to attention at those positions is prefix[l], shared (n_layers, prefix_len, dim) or per
    sample; only the content positions go on to the feed-forward and the next layer, so logits are for the
    chunk only;
    `prefix_shape`, `expand_prefix`;
  * the cache remembers where a cached prefix ends and refuses a chunk that starts inside it.
`# paper:` another change the paper's experiments need
  * `forward(input_embeds=...)`: virtual tokens (Section 3), embeddings placed before the tokens (`embed`).
`# hook:` recording points, identities unless recorded (`recording.record`, shared with minGPT's GPT):
  attention probabilities, each head's output, what attention adds to the residual stream.
`# engineering:` additions that change no result
  * rotary embedding in real arithmetic from float64 tables (the reference multiplies complex64 numbers);
    norms, rotary and softmax in at least float32, float64 kept (for the float64 identity checks);
  * fused attention (`scaled_dot_product_attention`) unless the probabilities are recorded;
  * a checked cache: training passes neither read nor write it, and chunk, batch and length are checked;
  * `logits_to_keep`: the logits of the last n positions only;
  * the family interface (`core.family.PrefixLM`): `family`, `dims`, `blocks`, `hyperparameters`, `logits`,
    `prefix_keys_values`, `token_embeddings`, `run_layer`, `complete`, and `LORA_TARGETS`, what `core.lora`
    adapts (on one model-parallel process).
"""

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from fairscale.nn.model_parallel import initialize as fs_init
from fairscale.nn.model_parallel.layers import (
    ColumnParallelLinear,
    ParallelEmbedding,
    RowParallelLinear,
)
from torch import nn

from core.family import Dims
from llama.distributed import setup_model_parallel
from recording import HookPoint, record


@dataclass
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: Optional[int] = None  # fewer key/value heads than query heads: grouped-query attention
    vocab_size: int = -1  # -1: taken from the tokenizer
    multiple_of: int = 256  # the feed-forward width is rounded up to a multiple of this
    ffn_dim_multiplier: Optional[float] = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_batch_size: int = 32
    max_seq_len: int = 2048


def ffn_hidden_dim(args: ModelArgs) -> int:
    """Width of the SwiGLU feed-forward: 2/3 of 4*dim, scaled, rounded up to a multiple of multiple_of."""
    hidden_dim = int(2 * 4 * args.dim / 3)
    if args.ffn_dim_multiplier is not None:
        hidden_dim = int(args.ffn_dim_multiplier * hidden_dim)
    return args.multiple_of * math.ceil(hidden_dim / args.multiple_of)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:  # engineering
    """Precision for norms and softmax: at least float32, float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(compute_dtype(x.dtype))
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rotary_tables(head_dim: int, n_positions: int, theta: float) -> Tuple[torch.Tensor, torch.Tensor]:  # engineering
    """cos and sin of the rotary angles, each (n_positions, head_dim // 2), in float64."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(n_positions, dtype=torch.float64), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # engineering: real arithmetic
    """Rotate each pair (x[2i], x[2i+1]) by its position's angle, in at least float32 (as Meta's reference,
    which rotates in complex64 and casts back), so half-precision models round only the result.

    x: (bsz, seqlen, n_heads, head_dim); cos, sin: (seqlen, head_dim // 2).
    """
    pairs = x.to(compute_dtype(x.dtype)).unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[:, None, :].to(pairs.dtype), sin[:, None, :].to(pairs.dtype)
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).type_as(x)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(bsz, seqlen, n_kv_heads, head_dim) -> (bsz, seqlen, n_kv_heads * n_rep, head_dim)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=2)


def causal_mask(seqlen: int, start_pos: int, dtype: torch.dtype, device: torch.device) -> Optional[torch.Tensor]:
    """(seqlen, start_pos + seqlen) additive mask: query i sits at start_pos + i and sees keys 0..start_pos + i."""
    if seqlen == 1:
        return None
    mask = torch.full((seqlen, start_pos + seqlen), float("-inf"), dtype=dtype, device=device)
    return torch.triu(mask, diagonal=start_pos + 1)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        model_parallel_size = fs_init.get_model_parallel_world_size()
        n_kv_heads = args.n_kv_heads or args.n_heads
        if n_kv_heads % model_parallel_size or args.n_heads % n_kv_heads:
            raise ValueError(
                f"n_kv_heads={n_kv_heads} must divide n_heads={args.n_heads} and be divisible by the "
                f"model-parallel size {model_parallel_size}"
            )
        self.n_local_heads = args.n_heads // model_parallel_size
        self.n_local_kv_heads = n_kv_heads // model_parallel_size
        self.n_rep = self.n_local_heads // self.n_local_kv_heads
        self.head_dim = args.dim // args.n_heads

        self.wq = ColumnParallelLinear(args.dim, args.n_heads * self.head_dim, bias=False, gather_output=False)
        self.wk = ColumnParallelLinear(args.dim, n_kv_heads * self.head_dim, bias=False, gather_output=False)
        self.wv = ColumnParallelLinear(args.dim, n_kv_heads * self.head_dim, bias=False, gather_output=False)
        self.wo = RowParallelLinear(args.n_heads * self.head_dim, args.dim, bias=False, input_is_parallel=True)

        cache_shape = (args.max_batch_size, args.max_seq_len, self.n_local_kv_heads, self.head_dim)
        self.register_buffer("cache_k", torch.zeros(cache_shape), persistent=False)
        self.register_buffer("cache_v", torch.zeros(cache_shape), persistent=False)

        self.attention_probs = HookPoint()  # hook: (bsz, n_local_heads, seqlen, start_pos + seqlen)
        self.head_outputs = HookPoint()  # hook: (bsz, seqlen, n_local_heads, head_dim), each head's output before wo

    def forward(
        self,
        x: torch.Tensor,
        start_pos: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: Optional[torch.Tensor],
        use_cache: bool,
    ) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        xq = self.wq(x).view(bsz, seqlen, self.n_local_heads, self.head_dim)
        xk = self.wk(x).view(bsz, seqlen, self.n_local_kv_heads, self.head_dim)
        xv = self.wv(x).view(bsz, seqlen, self.n_local_kv_heads, self.head_dim)
        xq, xk = apply_rotary(xq, cos, sin), apply_rotary(xk, cos, sin)

        if use_cache:  # engineering: inference passes only (Transformer.start_chunk)
            self.cache_k[:bsz, start_pos : start_pos + seqlen] = xk
            self.cache_v[:bsz, start_pos : start_pos + seqlen] = xv
            xk = self.cache_k[:bsz, : start_pos + seqlen]
            xv = self.cache_v[:bsz, : start_pos + seqlen]

        queries = xq.transpose(1, 2)  # (bsz, n_local_heads, seqlen, head_dim)
        keys = repeat_kv(xk, self.n_rep).transpose(1, 2)  # (bsz, n_local_heads, start_pos + seqlen, head_dim)
        values = repeat_kv(xv, self.n_rep).transpose(1, 2)
        if self.attention_probs.active:  # hook: the probabilities are materialised only when recorded
            scores = queries @ keys.transpose(2, 3) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask
            probs = self.attention_probs(F.softmax(scores, dim=-1, dtype=compute_dtype(scores.dtype)).type_as(xq))
            output = probs @ values
        else:  # engineering: fused attention when nothing is recorded
            output = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)
        output = self.head_outputs(output.transpose(1, 2))
        return self.wo(output.reshape(bsz, seqlen, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = ColumnParallelLinear(dim, hidden_dim, bias=False, gather_output=False)
        self.w2 = RowParallelLinear(hidden_dim, dim, bias=False, input_is_parallel=True)
        self.w3 = ColumnParallelLinear(dim, hidden_dim, bias=False, gather_output=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, ffn_hidden_dim(args))
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.attention_output = HookPoint()  # hook: (bsz, seqlen, dim), what attention adds to the residual stream

    def forward(
        self,
        x: torch.Tensor,
        start_pos: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: Optional[torch.Tensor],
        use_cache: bool,
        prefix_len: int = 0,
    ) -> torch.Tensor:
        h = x + self.attention_output(self.attention(self.attention_norm(x), start_pos, cos, sin, mask, use_cache))
        h = h[:, prefix_len:]  # prefix-tuning: only the content positions go on to the feed-forward
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """LLaMA on fairscale's model-parallel layers, with a key/value cache for incremental decoding.

    Passes with gradients enabled are training passes: they neither read nor write the cache (so it never
    holds gradient-carrying or outdated tensors) and invalidate it. Inference passes (torch.no_grad or
    torch.inference_mode) fill the cache so that a later chunk can start at start_pos > 0.
    """

    family = "llama"  # engineering: the family interface both models implement (`core.family.PrefixLM`)
    # engineering: the linear layers of a block that each LoRA target adapts (`core.lora`)
    LORA_TARGETS = {"mlp": ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3"), "attn_out": ("attention.wo",),
                    "attn_qkv": ("attention.wq", "attention.wk", "attention.wv")}

    def __init__(self, params: ModelArgs):
        super().__init__()
        setup_model_parallel()
        self.params = params
        self.n_layers = params.n_layers
        self.tok_embeddings = ParallelEmbedding(params.vocab_size, params.dim)
        self.layers = nn.ModuleList(TransformerBlock(params) for _ in range(params.n_layers))
        self.norm = RMSNorm(params.dim, eps=params.norm_eps)
        self.output = ColumnParallelLinear(params.dim, params.vocab_size, bias=False)
        # engineering: plain attributes, not buffers: Module.to(dtype) must not round the float64 tables.
        self.rope_cos, self.rope_sin = rotary_tables(
            params.dim // params.n_heads, params.max_seq_len, params.rope_theta
        )
        self.cache_len = 0  # engineering: positions 0..cache_len-1 hold keys and values of the current sequence
        self.cache_batch = 0  # engineering: rows of the cache that hold them
        self.cache_prefix_len = 0  # prefix-tuning: the first cache_prefix_len cached positions are the prefix

    def forward(
        self,
        tokens: Optional[torch.Tensor] = None,
        start_pos: int = 0,
        *,
        input_embeds: Optional[torch.Tensor] = None,
        prefix: Optional[torch.Tensor] = None,
        logits_to_keep: int = 0,
    ) -> torch.Tensor:
        """Logits (bsz, seqlen, vocab_size) of a chunk of seqlen = n_virtual + n_tokens positions.

        tokens: (bsz, n_tokens) ids. input_embeds: (bsz, n_virtual, dim) virtual tokens, placed before the
        tokens. start_pos: position of the chunk in the sequence (0 for the first chunk).
        prefix (first chunk only): (n_layers, prefix_len, dim) shared, or (bsz, n_layers, prefix_len, dim)
        per sample; it takes positions 0..prefix_len-1, the chunk follows, and the next chunk starts at
        start_pos = prefix_len + seqlen. Logits are returned for the chunk, not for the prefix;
        logits_to_keep=n > 0 returns those of its last n positions only.
        """
        h = self.embed(tokens, input_embeds)  # paper: virtual tokens, then the tokens; (bsz, seqlen, dim)
        bsz, seqlen, _ = h.shape
        prefix = self.expand_prefix(prefix, bsz)  # prefix-tuning: (bsz, n_layers, prefix_len, dim) or None
        prefix_len = 0 if prefix is None else prefix.shape[2]  # prefix-tuning: positions taken by the prefix
        total_len = prefix_len + seqlen
        use_cache = self.start_chunk(bsz, start_pos, total_len, prefix_len)  # engineering: the checked cache

        cos = self.rope_cos[start_pos : start_pos + total_len].to(h.device, compute_dtype(h.dtype))
        sin = self.rope_sin[start_pos : start_pos + total_len].to(h.device, compute_dtype(h.dtype))
        mask = causal_mask(total_len, start_pos, h.dtype, h.device)
        for layer_id, layer in enumerate(self.layers):
            if prefix is not None:  # prefix-tuning: the input to layer l's attention at the prefix is prefix[l]
                h = torch.cat([prefix[:, layer_id].to(h.dtype), h], dim=1)
            h = layer(h, start_pos, cos, sin, mask, use_cache, prefix_len)  # prefix-tuning: content positions out
        if logits_to_keep:  # engineering: logits_to_keep
            h = h[:, -logits_to_keep:]
        h = self.norm(h)
        return self.output(h).to(compute_dtype(h.dtype))

    def embed(self, tokens: Optional[torch.Tensor], input_embeds: Optional[torch.Tensor]) -> torch.Tensor:
        """Virtual tokens (given as embeddings) followed by the embeddings of the token ids."""
        parts = []
        if input_embeds is not None:  # paper: virtual tokens, embeddings given directly
            if input_embeds.dim() != 3 or input_embeds.shape[-1] != self.params.dim:
                raise ValueError(
                    f"input_embeds has shape {tuple(input_embeds.shape)}; virtual tokens are given as "
                    f"(bsz, n_virtual, dim={self.params.dim})"
                )
            parts.append(input_embeds)
        if tokens is not None and tokens.shape[-1] > 0:
            parts.append(self.tok_embeddings(tokens))
        if not parts:
            raise ValueError("the chunk is empty: pass tokens, input_embeds (virtual tokens), or both")
        if len({part.shape[0] for part in parts}) > 1:
            raise ValueError(
                f"input_embeds has batch size {parts[0].shape[0]} but tokens has {parts[1].shape[0]}: "
                "each row's virtual tokens precede that row's tokens"
            )
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, first to last (what LoRA and the analyses walk)."""
        return self.layers

    @property
    def dims(self) -> Dims:
        p = self.params
        return Dims(n_layers=p.n_layers, n_heads=p.n_heads, width=p.dim, context=p.max_seq_len, vocab_size=p.vocab_size)

    def hyperparameters(self) -> dict:
        return asdict(self.params)

    def logits(self, tokens: torch.Tensor, prefix: Optional[torch.Tensor] = None, logits_to_keep: int = 0) -> torch.Tensor:
        """(bsz, seqlen, vocab_size) logits of a whole sequence from start_pos 0 (`forward`'s first chunk)."""
        return self(tokens, prefix=prefix, logits_to_keep=logits_to_keep)

    @torch.no_grad()
    def prefix_keys_values(self, prefix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """prefix-tuning: each layer's keys and values at the prefix positions as the cache holds them, two
        (n_layers, n_kv_heads, prefix_len, head_dim) tensors, keys rotated to positions 0..prefix_len-1."""
        n_s = prefix.shape[-2]
        keys, values = [], []
        for layer, s in zip(self.layers, prefix):
            attention, x = layer.attention, layer.attention_norm(s)
            k = attention.wk(x).view(1, n_s, attention.n_local_kv_heads, attention.head_dim)
            keys.append(apply_rotary(k, self.rope_cos[:n_s], self.rope_sin[:n_s])[0].transpose(0, 1))
            values.append(attention.wv(x).view(n_s, attention.n_local_kv_heads, attention.head_dim).transpose(0, 1))
        return torch.stack(keys), torch.stack(values)

    @torch.no_grad()
    def token_embeddings(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(bsz, seqlen, dim) the first block's input for tokens; positions enter in attention, so `start`
        changes nothing here (`run_layer` takes it)."""
        return self.tok_embeddings(tokens)

    @torch.no_grad()
    def run_layer(self, layer: int, h: torch.Tensor, start: int = 0) -> Dict[str, torch.Tensor]:
        """hook: block `layer` alone on input h (bsz, seqlen, dim) at positions start..start+seqlen-1, no cache
        (the keys are h's own positions), recorded: attention probabilities and head outputs."""
        total, dtype = h.shape[1], h.dtype
        cos = self.rope_cos[start:start + total].to(h.device, compute_dtype(dtype))
        sin = self.rope_sin[start:start + total].to(h.device, compute_dtype(dtype))
        with record(self, "attention_probs", "head_outputs") as recorded:
            self.layers[layer](h, 0, cos, sin, causal_mask(total, 0, dtype, h.device), False)
        return {name: tensors[layer] for name, tensors in recorded.items()}

    def complete(self, prompts: List[List[int]], max_new_tokens: int, prefix: Optional[torch.Tensor] = None,
                 temperature: float = 0.0, eos_id: Optional[int] = None) -> List[List[int]]:
        """engineering: the family interface's generation: each prompt's new tokens, greedy at temperature 0
        (else sampled, top-p 0.9), cut before eos_id, through `llama.generation.Llama.generate`."""
        from llama.generation import Llama  # generation builds on this module
        completions = Llama(self).generate(prompts, max_new_tokens, temperature=temperature, prefix=prefix)
        return [tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens for tokens in completions]

    def prefix_shape(self, prefix_len: int) -> Tuple[int, int, int]:
        """Prefix-tuning: the shape of a prefix of prefix_len positions, (n_layers, prefix_len, dim)."""
        return (self.n_layers, prefix_len, self.params.dim)

    def expand_prefix(self, prefix: Optional[torch.Tensor], bsz: int) -> Optional[torch.Tensor]:
        """Prefix-tuning: a shared (n_layers, n, dim) or per-sample (bsz, n_layers, n, dim) prefix as the latter."""
        if prefix is None:
            return None
        expected = (
            f"(n_layers={self.n_layers}, prefix_len, dim={self.params.dim}) or (bsz={bsz}, n_layers, prefix_len, dim)"
        )
        if prefix.dim() == 3:
            prefix = prefix.expand(bsz, *prefix.shape)
        if (
            prefix.dim() != 4
            or prefix.shape[0] != bsz
            or prefix.shape[1] != self.n_layers
            or prefix.shape[3] != self.params.dim
        ):
            raise ValueError(f"prefix has shape {tuple(prefix.shape)}; expected {expected}")
        return prefix

    def start_chunk(self, bsz: int, start_pos: int, total_len: int, prefix_len: int) -> bool:  # engineering
        """Check a chunk against the cache and record what it will hold; returns whether to use the cache."""
        params = self.params
        if bsz > params.max_batch_size or start_pos + total_len > params.max_seq_len:
            raise ValueError(
                f"a chunk of batch {bsz} ending at position {start_pos + total_len} exceeds the model's "
                f"max_batch_size={params.max_batch_size} / max_seq_len={params.max_seq_len}: build it larger"
            )
        if prefix_len and start_pos > 0:  # prefix-tuning: the prefix belongs to the first chunk
            raise ValueError(
                "a prefix goes with the first chunk only (start_pos=0): it occupies positions 0..prefix_len-1, "
                "whose keys and values later chunks read from the cache"
            )
        if torch.is_grad_enabled():
            if start_pos > 0:
                raise ValueError(
                    f"start_pos={start_pos} needs the key/value cache, which only inference passes fill: "
                    "for training, run the whole sequence from start_pos=0; for decoding, use torch.no_grad()"
                )
            self.cache_len = 0
            return False
        if start_pos > 0:
            if start_pos < self.cache_prefix_len:  # prefix-tuning: no chunk may start inside the cached prefix
                raise ValueError(
                    f"this chunk starts at position {start_pos}, inside the prefix (positions "
                    f"0..{self.cache_prefix_len - 1}) set by the first chunk; the prefix is fixed there, "
                    f"so later chunks start at start_pos >= {self.cache_prefix_len} (prefix_len + content so far)"
                )
            if start_pos > self.cache_len or bsz > self.cache_batch:
                raise ValueError(
                    f"the cache holds {self.cache_len} position(s) of {self.cache_batch} row(s), so a chunk of "
                    f"{bsz} row(s) cannot start at position {start_pos}: start at 0 or continue the cached sequence"
                )
        else:
            self.cache_batch = bsz
            self.cache_prefix_len = prefix_len  # prefix-tuning: remember where the cached prefix ends
        self.cache_len = start_pos + total_len
        return True
