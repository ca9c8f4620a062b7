"""Tests of the Section 5 data module (mingpt.tasks) and the attention plots (mingpt.plots)."""

import math
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.nn as nn

from core.records import ROOT
from mingpt import plots, tasks
from mingpt.tasks import INPUT_LEN, TASKS

# a few fixed inputs and their pinned split: changing the hash changes every test set
PINNED_INPUTS = [[0] * 10, [7] * 10, [0, 1, 2, 3, 4, 5, 6, 7, 0, 1], [2, 6, 0, 1, 4, 6, 3, 0, 1, 2],
                 [1, 2, 3, 4, 5, 6, 7, 0, 1, 2], [7, 6, 5, 4, 3, 2, 1, 0, 7, 6],
                 [3, 3, 3, 3, 3, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]]
PINNED_IS_TEST = [True, False, True, False, True, False, False, False]


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def reference_solution(task, digits):
    """The task on one input, written directly in Python."""
    if task == "sort_asc":
        return sorted(digits)
    if task == "sort_desc":
        return sorted(digits, reverse=True)
    if task == "add1":
        return [d + 1 for d in digits]
    if task == "add2":
        return [d + 2 for d in digits]
    if task == "sort_asc_add1":
        return [d + 1 for d in sorted(digits)]
    if task == "double_hist":
        return [digits.count(d) for d in digits]
    raise AssertionError(task)


def p_few_distinct():
    """P(10 uniform digits from 8 have <= 5 distinct values), via Stirling numbers of the 2nd kind."""
    stirling = [[0] * 11 for _ in range(11)]  # stirling[n][k]: partitions of n items into k blocks
    stirling[0][0] = 1
    for n in range(1, 11):
        for k in range(1, n + 1):
            stirling[n][k] = k * stirling[n - 1][k] + stirling[n - 1][k - 1]
    strings = sum(math.perm(8, k) * stirling[10][k] for k in range(1, 6))
    return strings / 8 ** 10


def test_constants():
    assert TASKS == ("sort_asc", "sort_desc", "add1", "add2", "sort_asc_add1", "double_hist")
    assert tasks.PRETRAIN_TASKS == TASKS[:4]
    assert set(tasks.TASK_SYMBOLS) == set(TASKS)
    assert tasks.N_FEW_DISTINCT / tasks.N_INPUTS == pytest.approx(p_few_distinct(), abs=0)


@pytest.mark.parametrize("prefix_len", [0, 1, 10])
def test_batch_layout(prefix_len):
    task_ids = torch.arange(len(TASKS)).repeat(100)  # every task in one batch
    x, y = tasks.make_batch(task_ids, prefix_len, generator=generator())
    B, T = len(task_ids), prefix_len + 2 * INPUT_LEN - 1
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.long
    inputs = x[:, prefix_len:prefix_len + INPUT_LEN]
    assert (x[:, :prefix_len] == 0).all()  # pads
    assert ((inputs >= 0) & (inputs < tasks.N_INPUT_DIGITS)).all()
    assert (y[:, :prefix_len + INPUT_LEN - 1] == -1).all()  # no loss before the outputs
    assert (y[:, :-1] == -1).sum() == B * (prefix_len + INPUT_LEN - 1)
    outputs = y[:, -INPUT_LEN:]
    assert ((outputs >= 0) & (outputs < tasks.VOCAB_SIZE)).all()
    assert (x[:, -(INPUT_LEN - 1):] == outputs[:, :-1]).all()  # x is y shifted by one
    for i, task in enumerate(TASKS):
        rows = task_ids == i
        assert torch.equal(outputs[rows], tasks.solve(task, inputs[rows]))


def test_double_hist_rows_have_no_constant_input(monkeypatch):
    unmix = tasks._unmix  # make half of all candidates the constant input 0000000000
    monkeypatch.setattr(tasks, "_unmix", lambda h: torch.where(h % 2 == 0, 0, unmix(h)))
    task_ids = torch.tensor([TASKS.index("double_hist"), TASKS.index("add1")]).repeat(2000)
    x, y = tasks.make_batch(task_ids, 1, generator=generator())
    constant = tasks.is_constant(x[:, 1:1 + INPUT_LEN])
    assert not constant[0::2].any()  # double_hist rows
    assert constant[1::2].float().mean() > 0.3  # the add1 rows show that constants were on offer
    assert (y[:, -INPUT_LEN:] < tasks.VOCAB_SIZE).all()


def test_solutions_match_direct_implementation():
    inputs = tasks.sample_inputs(300, "train", generator(1), exclude_constant=True)
    for task in TASKS:
        expected = [reference_solution(task, row) for row in inputs.tolist()]
        assert tasks.solve(task, inputs).tolist() == expected, task


HAND_SOLVED = {  # worked out by hand for two inputs
    (2, 6, 0, 1, 4, 6, 3, 0, 1, 2): {
        "sort_asc": [0, 0, 1, 1, 2, 2, 3, 4, 6, 6], "sort_desc": [6, 6, 4, 3, 2, 2, 1, 1, 0, 0],
        "add1": [3, 7, 1, 2, 5, 7, 4, 1, 2, 3], "add2": [4, 8, 2, 3, 6, 8, 5, 2, 3, 4],
        "sort_asc_add1": [1, 1, 2, 2, 3, 3, 4, 5, 7, 7], "double_hist": [2, 2, 2, 2, 1, 2, 1, 2, 2, 2]},
    (7, 7, 7, 5, 0, 7, 5, 3, 3, 7): {
        "sort_asc": [0, 3, 3, 5, 5, 7, 7, 7, 7, 7], "sort_desc": [7, 7, 7, 7, 7, 5, 5, 3, 3, 0],
        "add1": [8, 8, 8, 6, 1, 8, 6, 4, 4, 8], "add2": [9, 9, 9, 7, 2, 9, 7, 5, 5, 9],
        "sort_asc_add1": [1, 4, 4, 6, 6, 8, 8, 8, 8, 8], "double_hist": [5, 5, 5, 2, 1, 5, 2, 2, 2, 5]},
}


def test_solutions_match_hand_worked_cases():
    inputs = torch.tensor(list(HAND_SOLVED))
    every = tasks._every_solution(inputs)
    for i, task in enumerate(TASKS):
        expected = torch.tensor([HAND_SOLVED[tuple(x)][task] for x in inputs.tolist()])
        assert torch.equal(tasks.solve(task, inputs), expected), task
        assert torch.equal(every[i], expected), task


def test_solve_errors():
    with pytest.raises(ValueError, match="unknown task 'sort'.*sort_asc, sort_desc"):
        tasks.solve("sort", torch.zeros(1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="all ten digits equal"):
        tasks.solve("double_hist", torch.full((2, 10), 3))
    with pytest.raises(ValueError, match="unknown split"):
        tasks.sample_inputs(2, "validation")


def test_few_distinct_proportion():
    n = 100_000
    expected = 0.5 + 0.5 * p_few_distinct()
    standard_error = math.sqrt(expected * (1 - expected) / n)
    for split in tasks.SPLITS:
        inputs = tasks.sample_inputs(n, split, generator(2))
        n_distinct = (inputs[:, :, None] == torch.arange(8)).any(dim=1).sum(dim=1)
        observed = (n_distinct <= 5).double().mean().item()
        assert abs(observed - expected) < 3 * standard_error, (split, observed, expected)


def test_digits_uniform_in_each_position():
    n = 100_000
    inputs = tasks.sample_inputs(n, "train", generator(3))
    frequencies = torch.nn.functional.one_hot(inputs, 8).double().mean(dim=0)  # (10, 8)
    standard_error = math.sqrt(1 / 8 * 7 / 8 / n)
    assert ((frequencies - 1 / 8).abs() < 4 * standard_error).all()


def test_resampling_path_keeps_the_distribution(monkeypatch):
    monkeypatch.setattr(tasks, "N_CANDIDATES", 1)  # every row without a candidate is re-sampled
    n = 50_000
    inputs = tasks.sample_inputs(n, "test", generator(4))
    assert tasks.is_test(inputs).all()
    expected = 0.5 + 0.5 * p_few_distinct()
    n_distinct = (inputs[:, :, None] == torch.arange(8)).any(dim=1).sum(dim=1)
    observed = (n_distinct <= 5).double().mean().item()
    assert abs(observed - expected) < 3 * math.sqrt(expected * (1 - expected) / n)


def test_split_fraction_and_sampling_respects_it():
    n = 400_000
    uniform = torch.randint(0, 8, (n, 10), generator=generator(5))
    observed = tasks.is_test(uniform).double().mean().item()
    assert abs(observed - 0.25) < 3 * math.sqrt(0.25 * 0.75 / n)
    assert tasks.is_test(tasks.sample_inputs(5000, "test", generator(6))).all()
    assert not tasks.is_test(tasks.sample_inputs(5000, "train", generator(6))).any()


def test_encode_decode_and_hash_are_bijections():
    codes = torch.randint(0, 1 << 30, (100_000,), generator=generator(7))
    assert torch.equal(tasks.encode(tasks.decode(codes)), codes)
    assert torch.equal(tasks._unmix(tasks._mix(codes)), codes)
    assert torch.equal(tasks._mix(tasks._unmix(codes)), codes)


def test_split_is_pinned_and_same_in_a_fresh_process():
    assert tasks.is_test(torch.tensor(PINNED_INPUTS)).tolist() == PINNED_IS_TEST
    inputs = torch.randint(0, 8, (1000, 10), generator=generator(8))
    script = ("import sys, torch; from mingpt import tasks; "
              "inputs = torch.tensor(eval(sys.stdin.read())); "
              "print(''.join('1' if t else '0' for t in tasks.is_test(inputs).tolist()))")
    result = subprocess.run([sys.executable, "-c", script], input=str(inputs.tolist()),
                            capture_output=True, text=True, check=True, cwd=ROOT,
                            env={**os.environ, "PYTHONHASHSEED": "random"})
    here = "".join("1" if t else "0" for t in tasks.is_test(inputs).tolist())
    assert result.stdout.strip() == here


def test_sampling_is_seeded_the_same_in_a_fresh_process():
    """The same seed draws the same inputs in another process; another seed draws others."""
    script = ("import torch; from mingpt import tasks; "
              "print(tasks.sample_inputs(100, 'train', torch.Generator().manual_seed(9)).tolist())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": "random"})
    here = tasks.sample_inputs(100, "train", generator(9))
    assert torch.equal(torch.tensor(eval(result.stdout)), here)
    assert not torch.equal(tasks.sample_inputs(100, "train", generator(10)), here)


def test_eval_inputs_fixed():
    a = tasks.eval_inputs()
    assert a.shape == (3200, 10)
    assert tasks.is_test(a).all() and not tasks.is_constant(a).any()
    a[0, 0] = 99  # callers get a copy
    assert torch.equal(tasks.eval_inputs(), tasks._eval_inputs.__wrapped__(3200, tasks.EVAL_SEED))
    assert tasks.eval_inputs(100).shape == (100, 10)
    # pinned: a change here (new sampler, new torch RNG) makes numbers incomparable with earlier runs
    assert tasks.eval_inputs()[:2].tolist() == [[4, 1, 4, 5, 5, 7, 4, 6, 4, 3], [7, 7, 2, 7, 5, 5, 6, 4, 6, 7]]
    assert tasks.eval_inputs().sum().item() == 112285


class StandIn(nn.Module):
    """Follows the GPT interface (generate, prefix) and answers a fixed task, ignoring the prefix."""

    def __init__(self, task):
        super().__init__()
        self.task = task
        self.weight = nn.Parameter(torch.zeros(1))  # gives the module a device
        self.calls = []

    def generate(self, idx, max_new_tokens, prefix=None):
        self.calls.append((idx.shape, None if prefix is None else prefix.shape, self.training))
        inputs = idx[:, -INPUT_LEN:]
        return torch.cat([idx, tasks._SOLVERS[self.task](inputs)[:, :max_new_tokens]], dim=1)


def test_evaluate_with_stand_in_models():
    oracle = StandIn("sort_desc")
    oracle.train()
    assert tasks.evaluate(oracle, "sort_desc", n=1000, batch_size=300) == 1.0
    assert oracle.training  # mode restored
    assert [shape for shape, _, _ in oracle.calls] == [(300, 10)] * 3 + [(100, 10)]
    assert not any(training for _, _, training in oracle.calls)  # evaluated in eval mode
    assert tasks.evaluate(StandIn("sort_asc"), "sort_desc", n=1000) < 0.01
    assert tasks.evaluate(StandIn("double_hist"), "double_hist", n=3200) == 1.0

    prefix = torch.randn(2, 3, 8)  # (n_layer, prefix_len, n_embd)
    tasks.evaluate(oracle, "sort_desc", prefix=prefix, n=100, placeholders=3)
    assert oracle.calls[-1][:2] == ((100, 10), prefix.shape)  # the prefix takes the placeholders' positions
    tasks.evaluate(oracle, "sort_desc", n=100, placeholders=5)
    assert oracle.calls[-1][:2] == ((100, 15), None)

    matrix = tasks.accuracy_matrix(oracle, {"none": None, "desc": prefix}, TASKS[:2], n=200)
    assert matrix == {"none": {"sort_asc": 0.0, "sort_desc": 100.0},
                      "desc": {"sort_asc": 0.0, "sort_desc": 100.0}}


def test_content_attention_and_plot():
    T, prefix_len = 13, 3
    scores = torch.randn(T, T).masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -torch.inf)
    pattern = scores.softmax(dim=-1)
    content = plots.content_attention(pattern, prefix_len)
    assert content.shape == (T - prefix_len, T - prefix_len)
    assert torch.allclose(content.sum(dim=-1), torch.ones(T - prefix_len))
    # without the prefix the content block is the softmax over content scores alone (Section 4)
    assert torch.allclose(content, scores[prefix_len:, prefix_len:].softmax(dim=-1))

    tokens = [0] * prefix_len + [2, 6, 0, 1, 4, 6, 3, 0, 1, 2]
    ax = plots.plot_attention(pattern, tokens, prefix_len, title="raw")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["P"] * 3 + [str(t) for t in tokens[3:]]
    ax = plots.plot_attention(pattern, tokens, prefix_len, rescale=True)
    assert len(ax.get_xticklabels()) == T - prefix_len
    with pytest.raises(ValueError, match="tokens"):
        plots.plot_attention(pattern, tokens[1:], prefix_len)
    plots.plt.close("all")


def test_batch_task_mixture_counts():
    task_ids = torch.randint(len(tasks.PRETRAIN_TASKS), (400,), generator=generator(10))
    x, y = tasks.make_batch(task_ids, 1, generator=generator(11))
    inputs = x[:, 1:1 + INPUT_LEN]
    counts = Counter()
    for row, task_id in zip(range(len(task_ids)), task_ids.tolist()):
        task = TASKS[task_id]
        assert y[row, -INPUT_LEN:].tolist() == reference_solution(task, inputs[row].tolist())
        counts[task] += 1
    assert set(counts) == set(tasks.PRETRAIN_TASKS)
