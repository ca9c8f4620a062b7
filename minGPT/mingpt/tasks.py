"""
The Section 5 tasks of Petrov, Torr & Bibi (2024): data, train/test split and evaluation.

An input is 10 digits from {0..7}. The training sequence is
    placeholders zero pads | 10 input digits | 10 output digits
and the loss is taken on the 10 output digits only. The zero pads hold the positions where a prefix
sits (n_S of them, the paper's layout); when a prefix is trained or used, it takes those positions
itself and the sequence starts at the input (placeholders = 0). The vocabulary has 10 tokens, so +2 still fits.

Input distribution (the paper's): with probability 1/2 the 10 digits are uniform; with probability
1/2 they are re-drawn until at most 5 distinct digits occur. Everything is then restricted to the
train or the test split. All sampling happens in whole batches on any device.

Train/test split. Each input is a 30-bit code (its digits in base 8). A fixed bijection `_mix` of the
30-bit codes scrambles it, and the input is in the test split iff the top two bits of the scrambled
code are 0: exactly 1/4 of all inputs, the same in every process and on every device. Because `_mix`
is invertible, an input of a given split is drawn exactly by drawing a scrambled code in the split's
range and un-mixing it; no rejection is needed for the split.

Double histogram: output_i = count of input_i in the input, 1..10. A count of 10 (all ten digits
equal) does not fit the vocabulary, so those 8 constant inputs (out of 8^10) are excluded from that
task: `make_batch` never gives them to it, `eval_inputs` contains none, and `solve` rejects them.
"""

from functools import lru_cache
from math import comb

import torch

INPUT_LEN = 10
OUTPUT_LEN = INPUT_LEN  # every task maps 10 digits to 10; the loss sits on these last positions
N_INPUT_DIGITS = 8  # input digits are 0..7
VOCAB_SIZE = 10
TASKS = ("sort_asc", "sort_desc", "add1", "add2", "sort_asc_add1", "double_hist")
TASK_SYMBOLS = {"sort_asc": "↗", "sort_desc": "↘", "add1": "+1", "add2": "+2",
                "sort_asc_add1": "↗+1", "double_hist": "H"}
PRETRAIN_TASKS = TASKS[:4]
MAX_DISTINCT = 5  # the "few distinct digits" inputs that half of the samples are re-drawn into
SPLITS = ("train", "test")

# -----------------------------------------------------------------------------
# the six tasks

def _sort_asc(inputs):
    return inputs.sort(dim=-1).values

def _sort_desc(inputs):
    return inputs.sort(dim=-1, descending=True).values

def _double_hist(inputs):
    return (inputs[..., :, None] == inputs[..., None, :]).sum(-1)  # (..., 10, 10) -> (..., 10)

_SOLVERS = {
    "sort_asc": _sort_asc,
    "sort_desc": _sort_desc,
    "add1": lambda inputs: inputs + 1,
    "add2": lambda inputs: inputs + 2,
    "sort_asc_add1": lambda inputs: _sort_asc(inputs) + 1,
    "double_hist": _double_hist,
}

def _every_solution(inputs):
    """(B, 10) -> (n_tasks, B, 10): every task's outputs in TASKS order."""
    return torch.stack([_SOLVERS[task](inputs) for task in TASKS])

def task_index(task: str) -> int:
    """Position of `task` in TASKS (the task ids that make_batch takes)."""
    if task not in _SOLVERS:
        raise ValueError(f"unknown task {task!r}; valid tasks are {', '.join(TASKS)}")
    return TASKS.index(task)

def solve(task: str, inputs: torch.Tensor) -> torch.Tensor:
    """The correct outputs of `task`: LongTensor (B, 10) of inputs -> (B, 10) of outputs."""
    task_index(task)  # raises on an unknown task
    if task == "double_hist" and is_constant(inputs).any():
        raise ValueError("double_hist is undefined for inputs with all ten digits equal "
                         "(a count of 10 does not fit the 10-token vocabulary)")
    return _SOLVERS[task](inputs)

def is_constant(inputs: torch.Tensor) -> torch.Tensor:
    """(B, 10) -> (B,) bool: all ten digits equal."""
    return (inputs == inputs[..., :1]).all(-1)

# -----------------------------------------------------------------------------
# encoding inputs as 30-bit codes, and the split

CODE_BITS = 3 * INPUT_LEN  # 30
_CODE_MASK = (1 << CODE_BITS) - 1
_TEST_CODES = 1 << (CODE_BITS - 2)  # scrambled codes below this are the test split: exactly 1/4
_MULTIPLIERS = (0x1E3779B9, 0x05EBCA6B, 0x02B2AE35)  # odd, so invertible modulo 2^30
_INVERSES = tuple(pow(m, -1, 1 << CODE_BITS) for m in _MULTIPLIERS)
_XORSHIFT = 15  # >= CODE_BITS / 2, so h ^ (h >> 15) is its own inverse on 30-bit codes

@lru_cache(maxsize=None)
def _digit_shifts(device):
    return CODE_BITS - 3 * torch.arange(1, INPUT_LEN + 1, device=device)  # first digit is the top

def encode(inputs: torch.Tensor) -> torch.Tensor:
    """(..., 10) digits -> (...) int64 codes in [0, 2^30), the digits read in base 8."""
    return (inputs.long() << _digit_shifts(inputs.device)).sum(-1)

def decode(codes: torch.Tensor) -> torch.Tensor:
    """Inverse of encode: (...) codes -> (..., 10) digits."""
    return (codes[..., None] >> _digit_shifts(codes.device)) & (N_INPUT_DIGITS - 1)

def _mix(h):
    """A fixed bijection of [0, 2^30) that scrambles all bits (products stay below 2^60: no overflow)."""
    h = (h * _MULTIPLIERS[0]) & _CODE_MASK
    h = h ^ (h >> _XORSHIFT)
    h = (h * _MULTIPLIERS[1]) & _CODE_MASK
    h = h ^ (h >> _XORSHIFT)
    return (h * _MULTIPLIERS[2]) & _CODE_MASK  # the last product carries every bit into the top two

def _unmix(h):
    h = (h * _INVERSES[2]) & _CODE_MASK
    h = h ^ (h >> _XORSHIFT)
    h = (h * _INVERSES[1]) & _CODE_MASK
    h = h ^ (h >> _XORSHIFT)
    return (h * _INVERSES[0]) & _CODE_MASK

def is_test(inputs: torch.Tensor) -> torch.Tensor:
    """(B, 10) -> (B,) bool: the input belongs to the test split (exactly 25 % of all inputs)."""
    return _mix(encode(inputs)) < _TEST_CODES

# -----------------------------------------------------------------------------
# sampling inputs

def _count_few_distinct() -> int:
    """Number of 10-digit strings over 8 digits with at most 5 distinct digits (inclusion-exclusion)."""
    def onto(k):  # strings using exactly a given set of k digits
        return sum((-1) ** j * comb(k, j) * (k - j) ** INPUT_LEN for j in range(k + 1))
    return sum(comb(N_INPUT_DIGITS, k) * onto(k) for k in range(1, MAX_DISTINCT + 1))

N_INPUTS = N_INPUT_DIGITS ** INPUT_LEN  # 2^30
N_FEW_DISTINCT = _count_few_distinct()  # 346,227,904, so p = P(<= 5 distinct) = 0.32245
# The input distribution gives each input weight 1/2 + [few distinct] / (2p), relative to uniform.
# Rejection from the uniform distribution accepts a few-distinct candidate always and any other one
# with probability p / (1 + p) = N_FEW / (N_INPUTS + N_FEW), drawn exactly with integers below.
# A candidate is then accepted with probability 2p / (1 + p) = 0.4877 (minus ~1e-8 when constant
# inputs are excluded). With K candidates per row, a row has none accepted with probability
# 0.5123^K, and such rows are re-sampled exactly. The work grows with K (on a CPU at batch 64 most
# of the sampling time is per-candidate work), so K is set for cost, not to make the re-sampling
# impossible: K = 16 leaves a row without a candidate with probability 2.2e-5 (batch 64: one call
# in 700 re-samples a row, which costs one more small call).
N_CANDIDATES = 16

@lru_cache(maxsize=None)
def _popcount_table(device):
    """(256,) number of set bits of each byte."""
    return torch.tensor([bin(m).count("1") for m in range(256)], device=device)

def _n_distinct(codes):
    """(...) codes -> (...) number of distinct digits."""
    bits = 1 << decode(codes)  # (..., 10) one bit per digit value
    bits = bits[..., :5] | bits[..., 5:]  # (..., 5) OR-reduce the ten positions
    present = bits[..., 0] | bits[..., 1] | bits[..., 2] | bits[..., 3] | bits[..., 4]
    return _popcount_table(codes.device)[present]

def _sample_codes(n, split, generator, device, exclude_constant):
    """(n,) codes of inputs from the input distribution restricted to `split`."""
    low, high = (0, _TEST_CODES) if split == "test" else (_TEST_CODES, 1 << CODE_BITS)
    shape = (n, N_CANDIDATES)
    codes = _unmix(torch.randint(low, high, shape, generator=generator, device=device))
    n_distinct = _n_distinct(codes)
    coin = torch.randint(N_INPUTS + N_FEW_DISTINCT, shape, generator=generator, device=device)
    accept = (n_distinct <= MAX_DISTINCT) | (coin < N_FEW_DISTINCT)
    accept &= ~(exclude_constant[:, None] & (n_distinct == 1))
    first = accept.byte().argmax(dim=1, keepdim=True)  # the first accepted candidate of each row
    chosen = codes.gather(1, first).squeeze(1)
    missing = ~accept.any(dim=1)
    if missing.any():  # probability 2.2e-5 per row; this check is the only host synchronisation
        chosen[missing] = _sample_codes(int(missing.sum()), split, generator, device,
                                        exclude_constant[missing])
    return chosen

def sample_inputs(n: int, split: str = "train", generator: torch.Generator = None, device=None,
                  exclude_constant=False) -> torch.Tensor:
    """
    (n, 10) LongTensor of inputs from the paper's distribution restricted to `split`.
    exclude_constant: bool, or (n,) bool tensor per row: never return an input with all digits equal.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")
    exclude_constant = torch.as_tensor(exclude_constant, dtype=torch.bool, device=device).expand(n)
    return decode(_sample_codes(n, split, generator, device, exclude_constant))

# -----------------------------------------------------------------------------
# training batches

def make_batch(task_ids: torch.Tensor, placeholders: int, split: str = "train",
               generator: torch.Generator = None, device=None):
    """
    One training batch, a task per sample. task_ids: (B,) LongTensor of indices into TASKS.
    placeholders: zero tokens before the input (0 when a prefix takes their positions).
    Returns x, y of shape (B, placeholders + 19): x = sequence[:, :-1], y = sequence[:, 1:] with -1
    (ignored by the loss) everywhere except at the 10 output digits.
    """
    device = task_ids.device if device is None else device
    task_ids = task_ids.to(device)
    B = task_ids.shape[0]
    inputs = sample_inputs(B, split, generator, device,
                           exclude_constant=task_ids == TASKS.index("double_hist"))
    outputs = _every_solution(inputs)[task_ids, torch.arange(B, device=device)]  # (B, 10)
    pads = torch.zeros(B, placeholders, dtype=torch.long, device=device)
    sequence = torch.cat([pads, inputs, outputs], dim=1)  # (B, placeholders + 20)
    x = sequence[:, :-1]
    y = sequence[:, 1:].clone()
    y[:, :placeholders + INPUT_LEN - 1] = -1  # predictions of pads and inputs carry no loss
    return x, y

# -----------------------------------------------------------------------------
# evaluation

EVAL_SEED = 20240501

@lru_cache(maxsize=None)
def _eval_inputs(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return sample_inputs(n, "test", generator, "cpu", exclude_constant=True)

def eval_inputs(n: int = 3200, seed: int = EVAL_SEED) -> torch.Tensor:
    """
    The fixed evaluation set: (n, 10) test-split inputs, identical on every run and machine
    (generated on the CPU from a seeded generator). One set serves all tasks: it holds no constant
    input, so double_hist is defined on all of it.
    """
    return _eval_inputs(n, seed).clone()

def _model_device(model):
    return next(model.parameters()).device

@torch.no_grad()
def greedy_outputs(model, prefix: torch.Tensor = None, n: int = 3200, batch_size: int = 800,
                   placeholders: int = 0) -> torch.Tensor:
    """
    The model's greedy 10-token outputs (n, 10) on the fixed evaluation set (eval_inputs(n)).
    prefix: (n_layer, prefix_len, n_embd) or None. The prefix takes the first prefix_len positions;
    without one, the sequence starts with `placeholders` zero pads in their place (as in pretraining).
    """
    device = _model_device(model)
    if prefix is not None:
        prefix = prefix.to(device)
        placeholders = 0  # the prefix takes the pads' positions
    was_training = model.training
    model.eval()
    try:
        outputs = []
        for inputs in eval_inputs(n).to(device).split(batch_size):
            pads = torch.zeros(len(inputs), placeholders, dtype=torch.long, device=device)
            generated = model.generate(torch.cat([pads, inputs], dim=1), INPUT_LEN, prefix=prefix)
            outputs.append(generated[:, -INPUT_LEN:].cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs)

def evaluate_tasks(model, tasks, prefix: torch.Tensor = None, n: int = 3200, batch_size: int = 800,
                   placeholders: int = 0) -> dict:
    """
    Exact-match accuracy (0..1) on each task of the model's greedy outputs on the fixed evaluation
    set: {task: accuracy}. The outputs do not depend on the task, so they are generated once.
    """
    for task in tasks:
        task_index(task)
    outputs = greedy_outputs(model, prefix, n, batch_size, placeholders)
    inputs = eval_inputs(n)
    return {task: (outputs == solve(task, inputs)).all(dim=1).sum().item() / n for task in tasks}

def evaluate(model, task: str, prefix: torch.Tensor = None, n: int = 3200, batch_size: int = 800,
             placeholders: int = 0) -> float:
    """Exact-match accuracy (0..1) of the greedy 10-token outputs on one task (see evaluate_tasks)."""
    return evaluate_tasks(model, (task,), prefix, n, batch_size, placeholders)[task]

def accuracy_matrix(model, prefixes: dict, tasks=PRETRAIN_TASKS, n: int = 3200,
                    batch_size: int = 800, placeholders: int = 0) -> dict:
    """
    Accuracy in percent of each prefix on each task: {prefix name: {task: percent}}.
    A prefix of None means no prefix, with `placeholders` zero pads.
    """
    return {name: {task: 100 * acc for task, acc in
                   evaluate_tasks(model, tasks, prefix, n, batch_size, placeholders).items()}
            for name, prefix in prefixes.items()}
