"""Building a LLaMA from a Meta checkpoint, and batched generation with the key/value cache."""

import os
from pathlib import Path
from typing import List, Optional, TypedDict

import torch
from fairscale.nn.model_parallel import initialize as fs_init

from llama.checkpoint import load_shard, load_strict, read_params
from llama.distributed import setup_model_parallel
from llama.model import ModelArgs, Transformer
from llama.tokenizer import Tokenizer


class CompletionPrediction(TypedDict):
    generation: str


class Llama:
    @staticmethod
    def build(
        ckpt_dir: str,
        tokenizer_path: str,
        max_seq_len: int,
        max_batch_size: int,
        model_parallel_size: Optional[int] = None,
        device: Optional[str] = None,
        dtype: Optional[torch.dtype] = None,
        seed: int = 1,
    ) -> "Llama":
        """Load this rank's shard of a Meta checkpoint; under torchrun each process loads its own shard.

        device defaults to CUDA when available (process group: nccl) and the CPU otherwise (gloo);
        dtype defaults to float16 on CUDA and float32 on the CPU. The model is frozen and in eval mode.
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        model_parallel_size = setup_model_parallel(model_parallel_size, device)
        torch.manual_seed(seed)  # all ranks must sample the same tokens

        params = read_params(ckpt_dir)
        tokenizer = Tokenizer(tokenizer_path)
        rank = fs_init.get_model_parallel_rank()
        state_dict = load_shard(ckpt_dir, rank, model_parallel_size)
        args = ModelArgs(max_seq_len=max_seq_len, max_batch_size=max_batch_size, **params)
        if args.vocab_size <= 0:
            args.vocab_size = tokenizer.n_words
        model = Transformer(args).to(device, dtype or (torch.float16 if device.type == "cuda" else torch.float32))
        load_strict(model, state_dict, str(Path(ckpt_dir) / f"consolidated.{rank:02d}.pth"))
        return Llama(model.eval().requires_grad_(False), tokenizer)

    def __init__(self, model: Transformer, tokenizer: Optional[Tokenizer] = None):
        self.model = model
        self.tokenizer = tokenizer  # without one, generation does not stop at EOS and text_completion is unavailable

    @torch.inference_mode()
    def generate(
        self,
        prompt_tokens: List[List[int]],
        max_gen_len: int,
        temperature: float = 0.6,
        top_p: float = 0.9,
        *,
        virtual_tokens: Optional[torch.Tensor] = None,
        prefix: Optional[torch.Tensor] = None,
        use_cache: bool = True,
    ) -> List[List[int]]:
        """Continue each prompt by up to max_gen_len tokens (temperature 0: greedy), stopping at EOS.

        virtual_tokens: (bsz, n_virtual, dim) embeddings placed before the prompt tokens (a prompt may then be
        empty). prefix: (n_layers, prefix_len, dim) or (bsz, n_layers, prefix_len, dim) prefix-tuning vectors.
        use_cache=False recomputes the whole sequence at every step instead of reading the cache.
        """
        params = self.model.params
        bsz = len(prompt_tokens)
        lengths = torch.tensor([len(t) for t in prompt_tokens])
        if bsz > params.max_batch_size:
            raise ValueError(f"{bsz} prompts exceed max_batch_size={params.max_batch_size}")
        if virtual_tokens is None and lengths.min() == 0:
            raise ValueError("an empty prompt needs virtual tokens to start from")
        prefix_len = 0 if prefix is None else prefix.shape[-2]  # prefix-tuning: positions taken by the prefix
        n_virtual = 0 if virtual_tokens is None else virtual_tokens.shape[1]
        n_before = prefix_len + n_virtual  # positions before the first prompt token
        total_len = min(params.max_seq_len - n_before, max_gen_len + int(lengths.max()))
        if lengths.max() > total_len:
            raise ValueError(
                f"a prompt of {int(lengths.max())} tokens leaves no room in max_seq_len={params.max_seq_len}"
            )

        device = self.model.tok_embeddings.weight.device
        tokens = torch.full((bsz, total_len), -1, dtype=torch.long, device=device)  # -1: not yet generated
        for row, prompt in enumerate(prompt_tokens):
            tokens[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        is_prompt = torch.arange(total_len, device=device) < lengths.to(device)[:, None]
        eos_id = -1 if self.tokenizer is None else self.tokenizer.eos_id
        finished = torch.zeros(bsz, dtype=torch.bool, device=device)

        prev_pos = 0
        for cur_pos in range(int(lengths.min()), total_len):
            start = prev_pos if use_cache else 0
            first = start == 0  # the first chunk carries the virtual tokens and the prefix
            logits = self.model.forward(
                tokens[:, start:cur_pos],
                0 if first else n_before + start,
                input_embeds=virtual_tokens if first else None,
                prefix=prefix if first else None,
            )
            next_token = self.sample(logits[:, -1], temperature, top_p)
            next_token = torch.where(is_prompt[:, cur_pos], tokens[:, cur_pos], next_token)
            tokens[:, cur_pos] = next_token
            finished |= ~is_prompt[:, cur_pos] & (next_token == eos_id)
            prev_pos = cur_pos
            if finished.all():
                break

        return self.completions(tokens, prompt_tokens, max_gen_len, eos_id)

    @staticmethod
    def completions(tokens: torch.Tensor, prompt_tokens: List[List[int]], max_gen_len: int, eos_id: int) -> List[List[int]]:
        """Each row's generated tokens after its prompt, at most max_gen_len, cut before the first EOS."""
        completions = []
        for row, prompt in enumerate(prompt_tokens):
            generated = tokens[row, len(prompt) : len(prompt) + max_gen_len].tolist()
            if eos_id in generated:
                generated = generated[: generated.index(eos_id)]
            completions.append(generated)
        return completions

    @staticmethod
    def sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
        """(bsz, vocab) logits -> (bsz,) next tokens: greedy when temperature is 0, else nucleus sampling."""
        if temperature == 0:
            return logits.argmax(dim=-1)
        return sample_top_p(torch.softmax(logits / temperature, dim=-1), top_p)

    def text_completion(
        self, prompts: List[str], temperature: float = 0.6, top_p: float = 0.9, max_gen_len: Optional[int] = None
    ) -> List[CompletionPrediction]:
        """Complete each prompt (encoded with BOS) by up to max_gen_len tokens (default: to max_seq_len)."""
        if self.tokenizer is None:
            raise ValueError("text_completion needs a tokenizer: Llama(model, tokenizer)")
        prompt_tokens = [self.tokenizer.encode(p, bos=True, eos=False) for p in prompts]
        max_gen_len = max_gen_len or self.model.params.max_seq_len - 1
        generations = self.generate(prompt_tokens, max_gen_len, temperature, top_p)
        return [{"generation": self.tokenizer.decode(t)} for t in generations]


def sample_top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Sample from the smallest set of most likely tokens whose total probability reaches p.

    probs: (bsz, vocab) -> (bsz,) token ids.
    """
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    beyond_nucleus = sorted_probs.cumsum(dim=-1) - sorted_probs > p
    choice = torch.multinomial(sorted_probs.masked_fill(beyond_nucleus, 0.0), num_samples=1)
    return order.gather(-1, choice).squeeze(-1)
