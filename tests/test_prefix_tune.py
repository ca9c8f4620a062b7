"""The prefix-tuning command on both families: it learns, batches, shards and decodes correctly, names bad input,
and its committed runs hold what their manifests say.

Run as a script (by torchrun, from test_two_processes_give_one_process_loss_and_gradient) it is the worker.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.loop import _learning_rate, _loss_per_prefix, train
from core.records import ROOT
from lm import prefix_tune, text_tasks
from lm.stand_ins import STAND_INS, load_model
from lm.text_tasks import Example

EXAMPLES = [Example("TABLE: cos | kind | function ; cos | module | math TEXT:", " Return the cosine of x."),
            Example("TABLE: Queue | kind | class ; Queue | module | queue TEXT:", " Create a queue object."),
            Example("TABLE: sleep | kind | function TEXT:", " Delay execution for a given number of seconds."),
            Example("TEXT: Open a socket. LABEL:", " internet", "internet")]
RUNS = sorted((ROOT / "results" / "prefix_tuning").glob("*/manifest.json"))


def tokenizer_of(family):
    from lm.pretrain import tokenizer_of as of
    return of(family, STAND_INS[family].folder)


def encoded(family, eos=True):
    tokenizer = tokenizer_of(family)
    return [text_tasks.encode(tokenizer, e, eos) for e in EXAMPLES], tokenizer


def loss_and_gradient(model, items, pad_id):
    """The loss of a fixed prefix on the examples, and its gradient."""
    prefix = torch.randn(model.prefix_shape(2), generator=torch.Generator().manual_seed(0)).requires_grad_()
    x, y = text_tasks.training_batch(items, pad_id)
    loss = _loss_per_prefix(model.logits(x, prefix), y, 1)[0]
    loss.backward()
    return loss.detach(), prefix.grad


def three_steps(model, items, pad_id, seeds=(3,)):
    s = prefix_tune.settings(steps=3, batch_size=2, lr=0.01, prefix_len=2, seeds=seeds, progress=False)
    return train(model, s, text_tasks.batch_source(items, 2, len(seeds), pad_id))


@pytest.mark.parametrize("family", STAND_INS)
def test_a_few_steps_lower_the_loss(family):
    items, tokenizer = encoded(family)
    model = load_model(family)
    x, y = text_tasks.training_batch(items, tokenizer.eos_id)
    s = prefix_tune.settings(steps=12, batch_size=4, lr=0.1, prefix_len=2, seeds=(5,), progress=False)
    initial = torch.randn(model.prefix_shape(2), generator=torch.Generator().manual_seed(5))
    result = train(model, s, lambda g: (x, y))
    with torch.no_grad():
        before, after = (_loss_per_prefix(model.logits(x, p), y, 1).item() for p in (initial, result.prefixes[0]))
    assert after < before - 0.5, (before, after)


def test_batched_prefixes_equal_separate_ones():
    items, tokenizer = encoded("gpt2")
    model = load_model("gpt2")
    together = three_steps(model, items, tokenizer.eos_id, seeds=(3, 8))
    for k, seed in enumerate((3, 8)):
        alone = three_steps(model, items, tokenizer.eos_id, seeds=(seed,))
        torch.testing.assert_close(together.prefixes[k], alone.prefixes[0], rtol=1e-5, atol=1e-6)
        assert together.losses[-1][1][k] == pytest.approx(alone.losses[-1][1][0], rel=1e-5)


def test_the_step_schedule_is_the_papers():
    s = prefix_tune.settings(steps=5000, batch_size=1, lr=0.01, prefix_len=1, seeds=(0,))
    assert [_learning_rate(step, s) for step in (0, 999, 1000, 2999, 3000)] == \
        pytest.approx([0.01, 0.01, 0.00975, 0.01 * 0.975 ** 2, 0.01 * 0.975 ** 3], rel=1e-12)


def greedy_by_recomputing(model, prompt, prefix, eos_id, max_new_tokens):
    """Greedy decoding of one prompt, the whole sequence recomputed at every step (no cache, no padding)."""
    ids = list(prompt)
    for _ in range(max_new_tokens):
        token = model.logits(torch.tensor([ids]), prefix)[0, -1].argmax().item()
        if token == eos_id:
            break
        ids.append(token)
    return ids[len(prompt):]


@pytest.mark.parametrize("family", STAND_INS)
def test_greedy_continuations_equal_decoding_one_prompt_without_cache(family):
    model = load_model(family)
    tokenizer = tokenizer_of(family)
    prompts = [text_tasks.encode(tokenizer, e, eos=False).prompt for e in EXAMPLES] + [[7, 8, 9]]
    prefix = torch.randn(model.prefix_shape(3), generator=torch.Generator().manual_seed(1))
    batched = prefix_tune.greedy_continuations(model, prompts, prefix, tokenizer.eos_id, max_new_tokens=8)
    assert batched == [greedy_by_recomputing(model, p, prefix, tokenizer.eos_id, 8) for p in prompts]


def test_target_log_probs_equal_a_direct_sum():
    items, tokenizer = encoded("llama")
    model = load_model("llama")
    scores = prefix_tune.target_log_probs(model, items, None, tokenizer.eos_id, batch_size=3)
    for item, score in zip(items, scores):
        ids = torch.tensor([item.prompt + item.target])
        log_probs = model.logits(ids)[0].double().log_softmax(-1)
        positions = range(len(item.prompt) - 1, len(item.prompt) + len(item.target) - 1)
        direct = sum(log_probs[t, ids[0, t + 1]].item() for t in positions)
        assert score.item() == pytest.approx(direct, abs=1e-4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_give_one_process_loss_and_gradient(tmp_path):
    from llama.shards import reshard
    reshard(str(STAND_INS["llama"].folder), str(tmp_path / "two"), parts=2)
    (tmp_path / "two" / "tokenizer.model").write_bytes((STAND_INS["llama"].folder / "tokenizer.model").read_bytes())
    out = tmp_path / "rank0.pt"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, str(tmp_path / "two"), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    parallel = torch.load(out, weights_only=True)
    items, tokenizer = encoded("llama")
    model = load_model("llama")
    loss, gradient = loss_and_gradient(model, items, tokenizer.eos_id)
    assert parallel["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(parallel["gradient"], gradient, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(parallel["prefixes"], three_steps(model, items, tokenizer.eos_id).prefixes,
                               rtol=1e-4, atol=1e-5)


def worker(folder: str, out: str) -> None:
    """One torchrun process: this rank's shard; rank 0 saves the loss, the gradient and the trained prefix."""
    model = prefix_tune.load("llama", Path(folder), rows=4, max_seq_len=256, device="cpu")[0]
    assert torch.distributed.get_world_size() == 2 and model.layers[0].attention.n_local_heads == 4
    items, tokenizer = encoded("llama")
    loss, gradient = loss_and_gradient(model, items, tokenizer.eos_id)
    prefixes = three_steps(model, items, tokenizer.eos_id).prefixes.detach()
    if torch.distributed.get_rank() == 0:
        torch.save({"loss": loss, "gradient": gradient, "prefixes": prefixes}, out)
    torch.distributed.destroy_process_group()


def test_bad_input_is_named(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"a prefix of 300 positions and the task's longest example need \d+ "
                                         r"positions, but the model takes 256: shorten the prefix"):
        prefix_tune.main(["--task", "classification", "--gpt2", "--prefix-len", "300", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit):
        prefix_tune.main(["--task", "sentiment", "--gpt2"])
    assert "invalid choice: 'sentiment'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"pass both --train and --test"):
        prefix_tune.main(["--task", "classification", "--gpt2", "--train", str(tmp_path / "t.csv")])
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "manifest.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"finished holds a finished run \(its manifest.json\), which notebooks "
                                              r"and records may read: pass --out another folder, or --force to replace it"):
        prefix_tune.main(["--task", "classification", "--gpt2", "--out", str(finished)])
    with pytest.raises(ValueError, match=r"--seeds '1,1' repeats a seed"):
        prefix_tune.parse_seeds("1,1")
    with pytest.raises(ValueError, match=r"--seeds '3-1': the range '3-1' runs backwards"):
        prefix_tune.parse_seeds("3-1")
    assert prefix_tune.parse_seeds("1-3,7") == [1, 2, 3, 7]
    model = load_model("gpt2")
    torch.save({"prefixes": torch.zeros(2, 4, 1, 256)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"holds prefixes of shape \(2, 4, 1, 256\), but this model takes "
                                         r"\(n_prefixes, \*\(6, 1, 256\)\): they were trained for another model"):
        prefix_tune.load_prefixes(tmp_path / "other.pt", model)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "not.pt")
    with pytest.raises(ValueError, match=r"is not a prefix file"):
        prefix_tune.load_prefixes(tmp_path / "not.pt", model)


@pytest.mark.parametrize("manifest_path", RUNS, ids=[p.parent.name for p in RUNS])
def test_committed_run_beats_the_untuned_model_and_the_majority_class(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    metric = manifest["metric"]
    assert prefix_tune.sha256(manifest_path.parent / "prefixes.pt") == manifest["prefixes_sha256"]
    floor = max(manifest["untuned"][metric], manifest.get("majority", {}).get("accuracy", 0.0))
    assert all(p[metric] > floor for p in manifest["prefixes"]), ([p[metric] for p in manifest["prefixes"]], floor)


@pytest.mark.parametrize("manifest_path", RUNS, ids=[p.parent.name for p in RUNS])
def test_committed_metric_reproduces_from_the_committed_prefix(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    model = load_model(manifest["family"], ROOT / manifest["model_folder"])
    saved = prefix_tune.load_prefixes(manifest_path.parent / "prefixes.pt", model)
    task = text_tasks.corpus_task(manifest["task"], ROOT / manifest["data"]["corpus"])
    metrics = prefix_tune.evaluate(task, model, tokenizer_of(manifest["family"]), saved["prefixes"][0])
    assert metrics[manifest["metric"]] == pytest.approx(manifest["prefixes"][0][manifest["metric"]], abs=1e-9)


def test_the_plateau_rule_reads_the_last_fifth_of_the_steps():
    from lm.prefix_tune import plateaued
    rising = [(10, [20.0, 30.0]), (20, [30.0, 40.0]), (30, [40.0, 50.0]), (40, [41.0, 51.0]), (50, [42.0, 52.0])]
    # at step 50 the last 20 % start at step 40: the means rose 46 -> 47, a gain of 1.0 > 0.5
    assert not plateaued(rising)
    assert plateaued(rising[:-1] + [(50, [41.2, 51.2])])          # 46 -> 46.2: gained 0.2
    assert plateaued(rising[:-1] + [(50, [30.0, 40.0])])          # fell: no gain
    assert not plateaued([(10, [5.0])])                            # nothing earlier to compare with


if __name__ == "__main__":
    worker(*sys.argv[1:])


def test_re_evaluating_a_run_keeps_the_metrics_before_and_names_bad_input(tmp_path):
    from lm import evaluate_run
    with pytest.raises(FileNotFoundError, match="has no manifest.json: pass a folder written by `python -m lm.prefix_tune`"):
        evaluate_run.reevaluate(tmp_path, "a reason")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"model_folder": "models/gpt2-standin", "data": {"train": "t.jsonl"}}))
    with pytest.raises(ValueError, match=r"was trained on files .*; re-evaluate it where they are"):
        evaluate_run.reevaluate(run, "a reason")
    recorded = json.loads((ROOT / "results" / "prefix_tuning" / "llama-table_to_text-n1" / "manifest.json").read_text())
    assert recorded["reevaluated"][0]["before"]["prefixes"] == [0.4548778316347701]   # kept, as the README says
