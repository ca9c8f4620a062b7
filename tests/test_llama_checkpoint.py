"""Meta checkpoints: tokenizer, Llama.build, strict loading errors, re-sharding, and a 2-process torchrun run.

Run as a script (by torchrun, from test_two_process_run_matches_merged_checkpoint) it is the worker.
"""

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece
import torch

from core.records import ROOT
from llama import CheckpointError, Llama, ModelArgs, Tokenizer, Transformer
from llama.checkpoint import checkpoint_params, save_checkpoint
from llama.shards import main as shards_main
from llama.shards import reshard

TOKENS = [[5, 17, 3, 40, 22, 9], [33, 2, 12, 8, 61, 4]]
TEXT = [
    "prompting prepends real tokens to the input",
    "soft prompting prepends free vectors at the input embedding layer",
    "prefix tuning learns vectors at the prefix positions of every layer",
    "a prefix cannot change the relative attention over the content",
]


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    """A one-shard checkpoint of a random model, with a SentencePiece tokenizer trained on the fly."""
    directory = tmp_path_factory.mktemp("ckpt")
    model_file = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT * 10), model_writer=model_file, vocab_size=64, model_type="bpe", minloglevel=2
    )
    (directory / "tokenizer.model").write_bytes(model_file.getvalue())
    torch.manual_seed(0)
    args = ModelArgs(
        dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64, multiple_of=16, max_batch_size=2, max_seq_len=32
    )
    state_dict = Transformer(args).state_dict()
    params = {**checkpoint_params(args), "vocab_size": -1}  # as in Meta's params.json: taken from the tokenizer
    save_checkpoint(str(directory), params, [state_dict])
    return directory


def build(directory: Path, **kwargs) -> Llama:
    kwargs.setdefault("device", "cpu")
    return Llama.build(str(directory), str(directory / "tokenizer.model"), max_seq_len=32, max_batch_size=2, **kwargs)


def logits_and_generations(generator: Llama):
    with torch.no_grad():
        logits = generator.model(torch.tensor(TOKENS))
    return logits, generator.generate(TOKENS, max_gen_len=8, temperature=0.0)


def test_tokenizer_wrapper(ckpt_dir):
    tokenizer = Tokenizer(str(ckpt_dir / "tokenizer.model"))
    assert tokenizer.n_words == 64 and (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 2, -1)
    ids = tokenizer.encode("prefix tuning", bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and 2 < len(ids)
    assert tokenizer.encode("prefix tuning", bos=False, eos=False) == ids[1:-1]
    assert tokenizer.decode(ids) == "prefix tuning"
    with pytest.raises(FileNotFoundError, match="SentencePiece tokenizer.model"):
        Tokenizer(str(ckpt_dir / "missing.model"))


def test_build_loads_every_weight(ckpt_dir):
    generator = build(ckpt_dir)
    state_dict = torch.load(ckpt_dir / "consolidated.00.pth", weights_only=True)
    loaded = generator.model.state_dict()
    assert loaded.keys() == state_dict.keys() and all(torch.equal(loaded[k], v) for k, v in state_dict.items())
    assert generator.model.params.vocab_size == 64  # from the tokenizer
    assert not any(p.requires_grad for p in generator.model.parameters())
    completions = generator.text_completion(["prefix tuning", "soft"], temperature=0.0, max_gen_len=5)
    assert len(completions) == 2 and all(isinstance(c["generation"], str) for c in completions)


def test_reshard_round_trip_and_cli(ckpt_dir, tmp_path, capsys):
    reshard(str(ckpt_dir), str(tmp_path / "two"), parts=2)
    shards_main([str(tmp_path / "two"), str(tmp_path / "one")])
    first, second = (torch.load(tmp_path / "two" / f"consolidated.0{i}.pth", weights_only=True) for i in (0, 1))
    assert first["layers.0.attention.wk.weight"].shape == (8, 32)  # 2 key/value heads of 8: one per rank
    assert first["tok_embeddings.weight"].shape == (64, 16) and torch.equal(first["norm.weight"], second["norm.weight"])
    original = torch.load(ckpt_dir / "consolidated.00.pth", weights_only=True)
    merged = torch.load(tmp_path / "one" / "consolidated.00.pth", weights_only=True)
    assert merged.keys() == original.keys() and all(torch.equal(merged[k], v) for k, v in original.items())
    assert (tmp_path / "one" / "tokenizer.model").is_file()
    with pytest.raises(
        CheckpointError,
        match="tok_embeddings.weight has 32 rows/columns along dimension 1, not divisible into 3 shards",
    ):
        reshard(str(ckpt_dir), str(tmp_path / "three"), parts=3)
    with pytest.raises(SystemExit):
        shards_main(["--help"])
    assert "Re-shard a Meta LLaMA checkpoint" in capsys.readouterr().out


def copy_checkpoint(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


def test_bad_checkpoints_raise_clear_errors(ckpt_dir, tmp_path):
    broken = copy_checkpoint(ckpt_dir, tmp_path / "no_params")
    (broken / "params.json").unlink()
    with pytest.raises(CheckpointError, match="params.json not found: a Meta checkpoint directory holds params.json"):
        build(broken)

    reshard(str(ckpt_dir), str(tmp_path / "two"), parts=2)
    with pytest.raises(
        CheckpointError,
        match=r"holds 2 shard\(s\) but the model-parallel size is 1: launch with `torchrun --nproc_per_node 2`",
    ):
        build(tmp_path / "two")
    wrong_size = (
        r"(does not fit 1 process\(es\)|already runs model parallelism of size 1, not 2).*torchrun --nproc_per_node 2"
    )
    with pytest.raises(ValueError, match=wrong_size):
        build(tmp_path / "two", model_parallel_size=2)

    missing_shard = copy_checkpoint(tmp_path / "two", tmp_path / "gap")
    (missing_shard / "consolidated.00.pth").unlink()
    with pytest.raises(CheckpointError, match=r"holds shards \['consolidated.01.pth'\]"):
        build(missing_shard)

    wrong_params = copy_checkpoint(ckpt_dir, tmp_path / "wrong_shape")
    params = json.loads((wrong_params / "params.json").read_text())
    (wrong_params / "params.json").write_text(json.dumps({**params, "n_kv_heads": 4}))
    with pytest.raises(
        CheckpointError,
        match=r"layers.0.attention.wk.weight in .* has shape \(16, 32\) but the model built from params.json expects \(32, 32\)",
    ):
        build(wrong_params)

    missing_weight = copy_checkpoint(ckpt_dir, tmp_path / "missing_weight")
    state_dict = torch.load(missing_weight / "consolidated.00.pth", weights_only=True)
    del state_dict["layers.1.ffn_norm.weight"]
    torch.save(
        {**state_dict, "rope.freqs": torch.ones(4), "extra.weight": torch.ones(1)},
        missing_weight / "consolidated.00.pth",
    )
    with pytest.raises(CheckpointError, match=r"missing \['layers.1.ffn_norm.weight'\], unexpected \['extra.weight'\]"):
        build(missing_weight)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_run_matches_merged_checkpoint(ckpt_dir, tmp_path):
    reshard(str(ckpt_dir), str(tmp_path / "two"), parts=2)
    out = tmp_path / "rank0.pt"
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        __file__,
        str(tmp_path / "two"),
        str(out),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    parallel_logits, parallel_generations = torch.load(out, weights_only=True)
    logits, generations = logits_and_generations(build(ckpt_dir))
    assert (parallel_logits - logits).abs().max() <= 1e-5
    assert parallel_generations == generations


def worker(ckpt_dir: str, out: str) -> None:
    """One torchrun process: build from its shard, save rank 0's logits and greedy generations."""
    generator = build(Path(ckpt_dir))
    assert torch.distributed.get_world_size() == 2 and generator.model.layers[0].attention.n_local_kv_heads == 1
    result = logits_and_generations(generator)
    if torch.distributed.get_rank() == 0:
        torch.save(result, out)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    worker(*sys.argv[1:])
