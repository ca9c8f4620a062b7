"""The paper's diagnostics for a Hugging Face causal LM with a PEFT prefix-tuning or prompt-tuning adapter.

    python -m lm.diagnose --hf-model models/gpt2-standin --adapter results/peft/gpt2-classification-n10 \
        --task classification --out results/peft/gpt2-classification-n10/diagnosis
    python -m lm.diagnose --hf-model ~/gpt2 --adapter ~/my-adapter --inputs my_texts.txt --out runs/diagnosis

What the paper predicts and what holds, on each input (one at a time, in float64):

* Section 4 at layer 0: with the prefix's keys K and values V at positions 0..n_S-1, every head's attention
  over the content is the prefix-free attention scaled down, A^pt_ij = A_ij (1 - sum_k A^pt_ik), and its output
  is the prefix-free output pulled toward the span of V, t^pt_i = sum_k A^pt_ik V_k + (1 - sum_k A^pt_ik) t_i.
  Both hold for any keys and values (PEFT's free parametrisation). The prefix-free run puts the content at the
  same positions n_S.. (aligned), so the identities are exact up to rounding.
* Every layer given its own input: the same identities, the prefix-free side being that layer run on the
  prefixed run's input to it.
* Across the whole run: the total-variation distance between the prefixed run's renormalised content attention
  and the prefix-free run's, per layer and head: how far the prefix's biases reach into the attention pattern.
* Appendix B, at each input's last token: the 1st-99th percentile gap across inputs of the renormalised
  attention to each prefix position (heads averaged and per head), its effective number of positions, and the
  centred effective rank of the induced biases sum_k A^pt_ik V_k.

A prompt-tuning adapter (virtual tokens at the input only) is a prefix whose keys and values in every layer the
model computes from the virtual tokens: the attention identity and the reach across the run are measured the
same way; its per-layer values are not read out, so the output identity and the biases' rank are left out.
Supported families: GPT-2 and LLaMA (Hugging Face `model_type` gpt2 and llama).
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

import torch

from core.records import ROOT, shown
from lm import prefix_attention as pa
from lm import prefix_bias, text_tasks
from lm.peft_adapters import Adapter, AdapterError, read_adapter

FAMILIES = {  # model_type -> (the decoder layers, the attention output projection inside a layer)
    "gpt2": (lambda m: m.transformer.h, lambda layer: layer.attn.c_proj),
    "llama": (lambda m: m.model.layers, lambda layer: layer.self_attn.o_proj),
}


def exact_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Hugging Face's eager attention with the softmax in the inputs' precision (its LLaMA takes it in float32),
    so that a float64 run is float64 throughout; returns the output and the probabilities (output_attentions).
    query (B, H, T, hd), key and value (B, H_kv, S, hd), attention_mask additive (B, 1, T, S) or None."""
    groups = query.shape[1] // key.shape[1]                  # grouped-query attention: key/value heads shared
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = query @ key.transpose(-1, -2) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = scores.softmax(-1)
    return (probs @ value).transpose(1, 2).contiguous(), probs


def load_hf_model(folder: Path):
    """A Hugging Face causal LM in float64 whose attention returns its probabilities (exact_attention)."""
    from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    AttentionInterface.register("exact", exact_attention)
    AttentionMaskInterface.register("exact", eager_mask)   # the causal mask as eager attention gets it (additive)
    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: --hf-model is a Hugging Face model folder")
    model_type = AutoConfig.from_pretrained(folder).model_type
    if model_type not in FAMILIES:
        raise AdapterError(f"{folder} is a {model_type!r} model; the diagnostics support the GPT-2 and LLaMA families "
                         f"({', '.join(FAMILIES)})")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="exact")
    return model.double().eval().requires_grad_(False)


def check_adapter(model, adapter: Adapter) -> None:
    """The adapter's shapes against the model's: an adapter made for another base model is refused."""
    c = model.config
    n_kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    if adapter.kind == "PROMPT_TUNING":
        found, expected = tuple(adapter.embeddings.shape[1:]), (c.hidden_size,)
    else:
        found, expected = tuple(adapter.keys.shape[:2]) + (adapter.keys.shape[-1],), (c.num_hidden_layers, n_kv, head_dim)
    if found != expected:
        what = "(dim,)" if adapter.kind == "PROMPT_TUNING" else "(layers, key/value heads, head_dim)"
        raise AdapterError(f"the adapter has {what} = {found} but the model has {expected}: it was made for another base "
                         f"model ({adapter.base_model or 'not recorded'})")


def prefix_cache(adapter: Adapter):
    """The adapter's keys and values as a Hugging Face cache of its n_S positions (float64)."""
    from transformers import DynamicCache
    cache = DynamicCache()
    for layer, (k, v) in enumerate(zip(adapter.keys, adapter.values)):
        cache.update(k[None].double(), v[None].double(), layer)
    return cache


class Recorder:
    """Each layer's per-head outputs (the attention output projection's input), for one forward pass."""

    def __init__(self, model):
        layers, out_proj = FAMILIES[model.config.model_type]
        self.n_heads = model.config.num_attention_heads
        self.outputs: Dict[int, torch.Tensor] = {}
        self.handles = [out_proj(layer).register_forward_pre_hook(self._hook(i)) for i, layer in enumerate(layers(model))]

    def _hook(self, index):
        def hook(module, args):
            x = args[0]
            self.outputs[index] = x.view(*x.shape[:2], self.n_heads, -1)[0]     # (T, H, head_dim)
        return hook

    def close(self):
        for handle in self.handles:
            handle.remove()


def run(model, ids: torch.Tensor, adapter: Optional[Adapter], first: int,
        replace_input: Optional[tuple] = None) -> dict:
    """One forward pass on ids (1, T) at positions first.. (a prompt-tuning adapter's virtual tokens at 0.., the
    content after them): attention (per layer (H, T_q, T_k)), per-head outputs
    (per layer (T_q, H, hd)) and each layer's input (T_q, dim). With the adapter, first = n_S; the prefix-free
    runs put the content at the same positions (aligned). replace_input=(layer, hidden) runs that layer on
    `hidden` instead of its own input."""
    positions = torch.arange(first, first + ids.shape[1])[None]
    kwargs = dict(output_attentions=True, output_hidden_states=True, use_cache=False)
    if adapter is not None and adapter.kind == "PROMPT_TUNING":
        embeddings = torch.cat([adapter.embeddings.double(), model.get_input_embeddings()(ids)[0]])[None]
        kwargs.update(inputs_embeds=embeddings, position_ids=torch.arange(embeddings.shape[1])[None])
    else:
        kwargs.update(input_ids=ids, position_ids=positions)
        if adapter is not None:
            kwargs.update(cache=prefix_cache(adapter), use_cache=True)
    handle = None
    if replace_input is not None:
        index, hidden = replace_input
        layer = FAMILIES[model.config.model_type][0](model)[index]

        def swap(module, args, kw):
            if args:
                return (hidden[None],) + tuple(args[1:]), kw
            return args, {**kw, "hidden_states": hidden[None]}
        handle = layer.register_forward_pre_hook(swap, with_kwargs=True)
    recorder = Recorder(model)
    try:
        with torch.no_grad():
            out = model(**kwargs)
    finally:
        recorder.close()
        if handle is not None:
            handle.remove()
    return {"attention": [a[0] for a in out.attentions], "outputs": [recorder.outputs[i] for i in range(len(out.attentions))],
            "inputs": [h[0] for h in out.hidden_states[:-1]], "logits": out.logits[0]}


def identity_errors(A_pt: torch.Tensor, A: torch.Tensor, t_pt: torch.Tensor, t: torch.Tensor, n_s: int,
                    values: Optional[torch.Tensor]) -> dict:
    """Per head, for one input: the identities' max errors over content queries i and keys j, absolute and
    relative to the largest magnitude compared (`lm.prefix_bias.identity_errors`, the one implementation).
    A_pt (H, T, n_s + T), A (H, T, T), t_pt and t (T, H, hd), values (H, n_s, hd) or None."""
    e = {k: v[0] for k, v in prefix_bias.identity_errors(A[None], t[None], A_pt[None], t_pt[None], values,
                                                          [A.shape[-1]], n_s).items()}
    errors = {"attention": e["attention"], "attention_relative": e["attention"] / e["attention_scale"]}
    if values is not None:
        errors.update(output=e["output"], output_relative=e["output"] / e["output_scale"])
    return errors


def head_values(adapter: Adapter, layer: int, n_heads: int) -> Optional[torch.Tensor]:
    """(H, n_S, hd) values of a layer, key/value heads repeated to the query heads (grouped-query attention)."""
    if adapter.values is None:
        return None
    v = adapter.values[layer].double()
    return v.repeat_interleave(n_heads // v.shape[0], dim=0)


def diagnose_input(model, ids: torch.Tensor, adapter: Adapter) -> dict:
    """Every measure of one input (1, T)."""
    n_s, n_layers = adapter.n_virtual, model.config.num_hidden_layers
    n_heads = model.config.num_attention_heads
    prefixed, plain = run(model, ids, adapter, n_s), run(model, ids, None, n_s)
    content = slice(n_s, None) if adapter.kind == "PROMPT_TUNING" else slice(0, None)   # query rows of the content
    A_pt = [a[:, content] for a in prefixed["attention"]]                                # (H, T, n_s + T)
    t_pt = [o[content] for o in prefixed["outputs"]]
    own_input = []
    for layer in range(n_layers):
        alone = run(model, ids, None, n_s, replace_input=(layer, prefixed["inputs"][layer][content]))
        own_input.append(identity_errors(A_pt[layer], alone["attention"][layer], t_pt[layer], alone["outputs"][layer],
                                         n_s, head_values(adapter, layer, n_heads)))
    layer0 = own_input[0]  # layer 0's own input is the embeddings: the prefix-free run's input, at the same positions
    tv = torch.stack([0.5 * (pa.renormalised(a[..., n_s:]) - b).abs().sum(-1).mean(-1)
                      for a, b in zip(A_pt, plain["attention"])])                           # (L, H)
    last = torch.stack([a[:, -1, :n_s] for a in A_pt])                                     # (L, H, n_s)
    biases = None
    if adapter.values is not None:
        biases = torch.stack([torch.einsum("hk,hkd->hd", last[l], head_values(adapter, l, n_heads)) for l in range(n_layers)])
    return {"layer0": layer0, "own_input": own_input, "tv": tv, "last_token_attention": last, "biases": biases,
            "logits": prefixed["logits"][content]}


def worst(errors: List[dict]) -> dict:
    """Per key: the maximum over inputs and heads."""
    return {k: max(float(e[k].max()) for e in errors) for k in errors[0]}


def summarise(per_input: List[dict]) -> dict:
    """The record: identities (max over inputs and heads), reach and Appendix B measures per layer."""
    n_layers = len(per_input[0]["own_input"])
    last = torch.stack([p["last_token_attention"] for p in per_input])                  # (N, L, H, n_s)
    weights = pa.renormalised(last)
    gap = pa.percentile_gap(weights)                                                     # (L, H, n_s)
    record = {
        "n_inputs": len(per_input),
        "layer0": worst([p["layer0"] for p in per_input]),
        "own_input": [worst([p["own_input"][l] for p in per_input]) for l in range(n_layers)],
        "tv_per_layer_head": torch.stack([p["tv"] for p in per_input]).mean(0).tolist(),
        "prefix_share": last.sum(-1).mean((0, 2)).tolist(),
        "gap_over_heads": gap.mean((1, 2)).tolist(),
        "gap_per_head": gap.mean(-1).tolist(),
        "effective_positions": pa.effective_positions(weights).mean((0, 2)).tolist(),
    }
    if per_input[0]["biases"] is not None:
        biases = torch.stack([p["biases"] for p in per_input])                           # (N, L, H, hd)
        record["effective_rank_centred"] = [
            sum(pa.effective_rank(biases[:, l, h], centred=True) for h in range(biases.shape[2])) / biases.shape[2]
            for l in range(n_layers)]
    return record


def plot(record: dict, title: str, path: Optional[Path] = None):
    import matplotlib.pyplot as plt
    layers = range(len(record["own_input"]))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for key in ("attention", "output"):
        if key in record["own_input"][0]:
            axes[0].semilogy(layers, [max(e[key], 1e-300) for e in record["own_input"]], "o-", label=f"{key} identity")
    axes[0].set(xlabel="layer", ylabel="max deviation over inputs and heads (float64)", title="Section 4, each layer given its input")
    axes[0].legend()
    image = axes[1].imshow(torch.tensor(record["tv_per_layer_head"]).T, aspect="auto", cmap="magma")
    fig.colorbar(image, ax=axes[1], label="TV distance")
    axes[1].set(xlabel="layer", ylabel="head", title="reach: renormalised content attention vs prefix-free")
    axes[2].plot(layers, record["gap_over_heads"], "o-", label="1st-99th percentile gap (heads averaged)")
    axes[2].plot(layers, record["prefix_share"], "s-", label="attention on the prefix (last token)")
    axes[2].set(xlabel="layer", title="Appendix B at the last token", ylim=(0, 1.05))
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def read_inputs(task: Optional[str], inputs: Optional[Path], n: int) -> List[str]:
    if inputs is not None:
        if not inputs.is_file():
            raise FileNotFoundError(f"--inputs {inputs} does not exist (one input text per line)")
        texts = [line.strip() for line in inputs.read_text().splitlines() if line.strip()]
    else:
        texts = [e.prompt for e in text_tasks.corpus_task(task, ROOT / "data" / "corpus").examples("test")]
    if not texts:
        raise AdapterError("the inputs are empty: give --inputs a file with one input text per line")
    return texts[:n]


def diagnose(hf_model: Path, adapter_dir: Path, texts: List[str]) -> dict:
    from transformers import AutoTokenizer
    model = load_hf_model(hf_model)
    adapter = read_adapter(adapter_dir)
    check_adapter(model, adapter)
    tokenizer = AutoTokenizer.from_pretrained(hf_model)
    per_input = []
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]])  # as the model reads text: LLaMA's BOS first, none for GPT-2
        per_input.append(diagnose_input(model, ids, adapter))
    record = summarise(per_input)
    record.update(kind=adapter.kind, n_virtual=adapter.n_virtual, model_type=model.config.model_type)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lm.diagnose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf-model", type=Path, required=True, help="a Hugging Face GPT-2 or LLaMA model folder")
    parser.add_argument("--adapter", type=Path, required=True, help="a PEFT prefix-tuning or prompt-tuning adapter folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--task", choices=text_tasks.TASKS, help="the test prompts of a stand-in text task")
    source.add_argument("--inputs", type=Path, help="a text file, one input per line")
    parser.add_argument("--n-inputs", type=int, default=64, help="inputs used, at least 2 (default 64)")
    parser.add_argument("--out", type=Path, required=True, help="folder for diagnosis.json and diagnosis.png")
    args = parser.parse_args(argv)
    if args.n_inputs < 2:
        parser.error(f"--n-inputs {args.n_inputs}: the spread across inputs needs at least 2")
    try:
        texts = read_inputs(args.task, args.inputs, args.n_inputs)
        record = diagnose(args.hf_model, args.adapter, texts)
    except (AdapterError, FileNotFoundError) as e:  # a wrong folder, adapter or input file: say which, no traceback
        parser.error(str(e))
    record.update(hf_model=shown(args.hf_model), adapter=shown(args.adapter), inputs=args.task or shown(args.inputs))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diagnosis.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(record, f"{args.adapter.name}: {record['kind'].lower()}, n_S = {record['n_virtual']}", args.out / "diagnosis.png")
    print(report(record))
    print(f"wrote {args.out / 'diagnosis.json'} and diagnosis.png")


def report(record: dict) -> str:
    """What the paper predicts and what holds, in a few lines."""
    l0, own = record["layer0"], record["own_input"]
    lines = [f"{record['kind']} adapter, n_S = {record['n_virtual']}, {record['n_inputs']} inputs ({record['model_type']})",
             f"layer 0 (aligned, float64): attention identity max {l0['attention']:.1e} (relative {l0['attention_relative']:.1e})"
             + (f", output identity max {l0['output']:.1e} (relative {l0['output_relative']:.1e})" if "output" in l0 else ""),
             "each layer given its input: attention " + " ".join(f"{e['attention']:.0e}" for e in own)
             + ("; output " + " ".join(f"{e['output']:.0e}" for e in own) if "output" in own[0] else ""),
             "TV of renormalised content attention from the prefix-free run, per layer (heads averaged): "
             + " ".join(f"{sum(row) / len(row):.3f}" for row in record["tv_per_layer_head"]),
             "1st-99th percentile gap per layer (heads averaged): " + " ".join(f"{g:.3f}" for g in record["gap_over_heads"]),
             "effective positions per layer: " + " ".join(f"{g:.2f}" for g in record["effective_positions"])]
    if "effective_rank_centred" in record:
        lines.append("centred effective rank of the biases per layer: " + " ".join(f"{g:.2f}" for g in record["effective_rank_centred"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
