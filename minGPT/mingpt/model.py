"""A minGPT-style GPT with prefix-tuning hooks.

The architecture is Karpathy's minGPT `model.py` (GPT-2's: pre-LayerNorm blocks, causal self-attention,
tanh-GELU MLP, learned positions, dropout, GPT-2's initialisation), written anew. Every difference from it
is listed here and marked on the line that makes it, with one of four markers:

`# prefix-tuning:` the paper's mechanism (Petrov, Torr, Bibi 2024, Section 4)
  * `forward(prefix=...)`: the prefix takes positions 0..prefix_len-1 (the paper's n_S) before the input
    tokens; in every layer the input to the attention block at those positions is a learned vector, shared
    by the batch ``(n_layer, prefix_len, n_embd)`` or one per sample ``(B, n_layer, prefix_len, n_embd)``;
    only the token positions go on to the MLP and the next layer, so logits are for the tokens only (the
    convention LLaMA's model shares); `prefix_shape`, `_check_prefix`.
`# paper:` another change the paper's experiments need
  * `GPTConfig.attn_layernorm=False`: no LayerNorm before attention (experiment B's model).
`# hook:` recording points, identities unless recorded (`recording.record`, shared with LLaMA's model):
  attention probabilities, each head's output, what attention adds to the residual stream.
`# engineering:` additions that change no result
  * a key/value cache for `generate` (minGPT recomputes the whole sequence at each new token);
  * `logits_to_keep` (and the attention's `queries_from`): the last layer computes only the positions
    whose logits are kept;
  * fused attention (`scaled_dot_product_attention`) unless the probabilities are recorded;
  * the family interface (`core.family.PrefixLM`): `family`, `dims`, `blocks`, `hyperparameters`, `logits`,
    `token_embeddings`, `run_layer`, `complete`, and `LORA_TARGETS`, what `core.lora` adapts;
  * `layer_norm_eps`, so that GPT-2's and the paper's checkpoints load exactly.
"""

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn import functional as F

from core.family import Dims
from recording import HookPoint, record  # noqa: F401 - record is part of this module's interface


@dataclass
class GPTConfig:
    vocab_size: int = 10
    block_size: int = 30            # longest sequence, placeholder (prefix) positions included
    n_layer: int = 1
    n_head: int = 1
    n_embd: int = 96
    dropout: float = 0.1
    attn_layernorm: bool = True     # paper: False drops the LayerNorm before attention (experiment B)
    layer_norm_eps: float = 1e-5    # engineering: GPT-2's, stated so that checkpoints load exactly


LayerCache = Tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, n_head, T_cached, head_dim)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.attention_probs = HookPoint()  # hook: (B, n_head, T, T_keys)
        self.head_outputs = HookPoint()     # hook: (B, T, n_head, head_dim), each head's sum_j A_ij v_j

    def forward(self, x: torch.Tensor, cache: Optional[LayerCache] = None,  # engineering: the cache
                queries_from: int = 0) -> Tuple[torch.Tensor, LayerCache]:      # engineering: queries_from
        """x (B, T, C) -> output (B, T - queries_from, C): keys and values come from every position,
        queries only from positions queries_from.. (the others' outputs would be discarded)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        q = q[:, :, queries_from:]  # engineering: only the queries whose outputs are kept
        T = q.size(2)
        if cache is not None:  # engineering: keys and values of earlier positions come from the cache
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        start = k.size(2) - T  # position of the first query
        dropout_p = self.dropout if self.training else 0.0
        if self.attention_probs.active:  # hook: materialise the probabilities only when they are recorded
            mask = _causal_mask(T, start, x.device)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
            att = self.attention_probs(att.masked_fill(~mask, float("-inf")).softmax(dim=-1))
            y = F.dropout(att, dropout_p, self.training) @ v
        elif start == 0:  # engineering: fused attention when nothing is recorded
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            mask = None if T == 1 else _causal_mask(T, start, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = self.head_outputs(y.transpose(1, 2)).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


def _causal_mask(T: int, start: int, device) -> torch.Tensor:
    """(T, start+T) bool: query i (at position start+i) may attend to keys 0..start+i."""
    q_pos = torch.arange(start, start + T, device=device)[:, None]
    return torch.arange(start + T, device=device)[None, :] <= q_pos


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        # paper: experiment B's model has no LayerNorm before attention
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps) if config.attn_layernorm else nn.Identity()
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.attention_output = HookPoint()  # hook: (B, T, C), what attention adds to the residual stream

    def forward(self, x, layer_prefix: Optional[torch.Tensor] = None, cache: Optional[LayerCache] = None,
                outputs_from: int = 0):
        """x (B, T, C) at the token positions -> (B, T - outputs_from, C): the outputs at token positions
        outputs_from.. only. Keys and values cover the prefix, the cache and the tokens."""
        prefix_len = 0
        if layer_prefix is not None:  # prefix-tuning: prefix[l] is the attention input at positions 0..prefix_len-1
            prefix_len = layer_prefix.size(-2)
            x = torch.cat([layer_prefix.expand(x.size(0), -1, -1).to(x.dtype), x], dim=1)
        queries_from = prefix_len + outputs_from if outputs_from else 0  # engineering: all, or the kept outputs
        attn_out, new_cache = self.attn(self.ln_1(x), cache, queries_from=queries_from)
        x = x[:, queries_from:] + self.attention_output(attn_out)
        x = x[:, prefix_len + outputs_from - queries_from:]  # prefix-tuning: only the tokens go on to the MLP
        x = x + self.mlp(self.ln_2(x))
        return x, new_cache


class GPT(nn.Module):
    """GPT language model; ``forward(idx, prefix=None, targets=None)``."""

    family = "gpt"  # engineering: the family interface both models implement (`core.family.PrefixLM`)
    # engineering: the linear layers of a block that each LoRA target adapts (`core.lora`)
    LORA_TARGETS = {"mlp": ("mlp.c_fc", "mlp.c_proj"), "attn_out": ("attn.c_proj",), "attn_qkv": ("attn.c_attn",)}

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, prefix: Optional[torch.Tensor] = None,
                targets: Optional[torch.Tensor] = None, cache: Optional[List[LayerCache]] = None,
                logits_to_keep: int = 0) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (B, T) token ids; prefix (n_layer, prefix_len, C) or (B, n_layer, prefix_len, C) takes positions
        0..prefix_len-1 in every layer, the tokens follow; targets (B, T) with -1 where no loss is taken.

        Returns (logits (B, T, vocab), mean cross-entropy or None). ``logits_to_keep=n`` > 0 returns
        the logits of the last n positions only, (B, n, vocab), and skips the last layer's work at
        the other positions (the same numbers, less compute: training losses sit on the last outputs);
        targets then have shape (B, n). With ``cache`` (a list that `generate` passes), the pass
        continues from the cached positions and appends to the list.
        """
        logits, _ = self._forward(idx, prefix, cache, logits_to_keep)
        loss = None
        if targets is not None:
            if targets.shape != logits.shape[:2]:
                raise ValueError(f"targets have shape {tuple(targets.shape)} but the logits {tuple(logits.shape[:2])}; "
                                 "with logits_to_keep=n pass the targets of the last n positions")
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def _forward(self, idx, prefix, cache, logits_to_keep=0):
        B, T = idx.shape
        if not 0 <= logits_to_keep <= T:  # engineering: logits_to_keep
            raise ValueError(f"logits_to_keep={logits_to_keep} must lie in 0..T={T} (0 keeps every position)")
        start = cache[0][0].size(2) if cache else 0  # engineering: cached positions, the prefix's included
        prefix = self._check_prefix(prefix, B, start)  # prefix-tuning
        first = start + (0 if prefix is None else prefix.size(-2))  # prefix-tuning: the tokens follow the prefix
        if first + T > self.config.block_size:
            raise ValueError(f"sequence of {first + T} positions (prefix and cache included) exceeds block_size="
                             f"{self.config.block_size}; build the model with a larger GPTConfig.block_size")
        pos = torch.arange(first, first + T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        new_cache = []
        last = self.config.n_layer - 1
        for layer, block in enumerate(self.transformer.h):
            layer_prefix = None if prefix is None else prefix[..., layer, :, :]  # prefix-tuning: layer l's prefix
            outputs_from = T - logits_to_keep if layer == last and logits_to_keep else 0
            x, layer_cache = block(x, layer_prefix, cache[layer] if cache else None, outputs_from)
            new_cache.append(layer_cache)
        if cache is not None:
            cache[:] = new_cache
        return self.lm_head(self.transformer.ln_f(x)), new_cache

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, first to last (what LoRA and the analyses walk)."""
        return self.transformer.h

    @property
    def dims(self) -> Dims:
        c = self.config
        return Dims(n_layers=c.n_layer, n_heads=c.n_head, width=c.n_embd, context=c.block_size, vocab_size=c.vocab_size)

    def hyperparameters(self) -> dict:
        return asdict(self.config)

    def logits(self, tokens: torch.Tensor, prefix: Optional[torch.Tensor] = None, logits_to_keep: int = 0) -> torch.Tensor:
        """(B, T, vocab) logits (of the last logits_to_keep positions when > 0): `forward` without the loss."""
        return self(tokens, prefix=prefix, logits_to_keep=logits_to_keep)[0]

    @torch.no_grad()
    def prefix_keys_values(self, prefix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """prefix-tuning: each layer's keys and values at the prefix positions, two (n_layer, n_head, prefix_len,
        head_dim) tensors, from prefix (n_layer, prefix_len, n_embd) as the attention computes them."""
        keys, values = [], []
        for block, s in zip(self.blocks, prefix):
            _, k, v = block.attn.c_attn(block.ln_1(s)).split(self.config.n_embd, dim=-1)
            keys.append(k.view(len(s), self.config.n_head, -1).transpose(0, 1))
            values.append(v.view(len(s), self.config.n_head, -1).transpose(0, 1))
        return torch.stack(keys), torch.stack(values)

    @torch.no_grad()
    def token_embeddings(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T, n_embd) the first block's input for tokens at positions start..start+T-1 (no dropout)."""
        pos = torch.arange(start, start + tokens.shape[-1], device=tokens.device)
        return self.transformer.wte(tokens) + self.transformer.wpe(pos)

    @torch.no_grad()
    def run_layer(self, layer: int, h: torch.Tensor, start: int = 0) -> Dict[str, torch.Tensor]:
        """hook: block `layer` alone on its input h (B, T, n_embd), recorded (positions enter GPT through the
        embedding, so `start` changes nothing): attention probabilities and head outputs."""
        with record(self, "attention_probs", "head_outputs") as recorded:
            self.blocks[layer](h)
        return {name: tensors[layer] for name, tensors in recorded.items()}

    def prefix_shape(self, prefix_len: int) -> Tuple[int, int, int]:
        """prefix-tuning: the shape of a prefix of prefix_len positions, (n_layer, prefix_len, n_embd)."""
        return (self.config.n_layer, prefix_len, self.config.n_embd)

    def _check_prefix(self, prefix, batch_size, start):
        """Validate a prefix and return it shaped (n_layer, prefix_len, C) or (B, n_layer, prefix_len, C)."""
        if prefix is None:
            return None
        c = self.config
        if prefix.dim() not in (3, 4) or prefix.shape[-3] != c.n_layer or prefix.shape[-1] != c.n_embd:
            raise ValueError(f"prefix has shape {tuple(prefix.shape)}; expected (n_layer={c.n_layer}, prefix_len, "
                             f"n_embd={c.n_embd}) shared by the batch or (batch, {c.n_layer}, prefix_len, {c.n_embd})")
        if prefix.dim() == 4 and prefix.size(0) != batch_size:
            raise ValueError(f"per-sample prefix has batch {prefix.size(0)} but the input has batch {batch_size}")
        if start > 0:
            raise ValueError(f"a prefix is applied in the first pass only, but this pass starts at position {start}; "
                             "pass prefix=None when continuing from a cache")
        return prefix

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, prefix: Optional[torch.Tensor] = None,
                 do_sample: bool = False, temperature: float = 1.0, top_k: Optional[int] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens tokens, greedy or sampled, with a key/value cache."""
        cache: List[LayerCache] = []  # engineering: one pass over the prompt, then one position at a time
        logits, _ = self(idx, prefix=prefix, cache=cache)
        out = [idx]
        for step in range(max_new_tokens):
            next_logits = logits[:, -1, :].float()
            if do_sample:
                next_logits = next_logits / temperature
                if top_k is not None:
                    kth = torch.topk(next_logits, min(top_k, next_logits.size(-1))).values[:, [-1]]
                    next_logits = next_logits.masked_fill(next_logits < kth, float("-inf"))
                next_token = torch.multinomial(next_logits.softmax(-1), 1, generator=generator)
            else:
                next_token = next_logits.argmax(-1, keepdim=True)
            out.append(next_token)
            if step + 1 < max_new_tokens:
                logits, _ = self(next_token, cache=cache)
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def complete(self, prompts: List[List[int]], max_new_tokens: int, prefix: Optional[torch.Tensor] = None,
                 temperature: float = 0.0, eos_id: Optional[int] = None,
                 generator: Optional[torch.Generator] = None) -> List[List[int]]:
        """engineering: the family interface's generation: each prompt's new tokens, greedy at temperature 0
        (else sampled), cut before eos_id; prompts of one length run together through `generate`. A per-row
        prefix (B, n_layer, prefix_len, C) gives row i prefix[i]."""
        device = self.transformer.wte.weight.device
        by_length: Dict[int, List[int]] = {}
        for row, prompt in enumerate(prompts):
            by_length.setdefault(len(prompt), []).append(row)
        completions: List[List[int]] = [[] for _ in prompts]
        for length, rows in by_length.items():
            idx = torch.tensor([prompts[row] for row in rows], device=device)
            row_prefix = prefix if prefix is None or prefix.dim() == 3 else prefix[rows]
            new = self.generate(idx, max_new_tokens, row_prefix, do_sample=temperature > 0,
                                temperature=temperature or 1.0, generator=generator)[:, length:].tolist()
            for row, tokens in zip(rows, new):
                completions[row] = tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens
        return completions

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
