"""The prefix measurements on both stand-ins: the Section 4 output identity at layer 0 built from them, and
the renormalised weights, quantile gaps, effective counts and ranks against hand-computed cases."""

import copy
import math

import pytest
import torch

from lm import prefix_attention as pa
from lm.stand_ins import STAND_INS, load_model
from recording import record


@pytest.mark.parametrize("family", STAND_INS)
def test_layer0_output_is_the_prefix_bias_plus_the_scaled_plain_output(family):
    model = load_model(family).double()
    prompts = [[5, 9, 13, 2, 7], [40, 41, 42, 43, 44]]
    prefix = torch.randn(model.prefix_shape(3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    attention = pa.last_token_prefix_attention(model, prompts, prefix, pad_id=0)       # (2, L, H, 3)
    bias = pa.prefix_biases(attention, pa.prefix_values(model, prefix))                 # (2, L, H, hd)
    x = torch.tensor(prompts)
    plain_model = model
    if family == "gpt2":  # absolute positions: the plain run must see the tokens where the prefixed run has them
        plain_model = copy.deepcopy(model)
        plain_model.transformer.wpe.weight[:-3] = model.transformer.wpe.weight[3:]
    with torch.no_grad(), record(plain_model, "head_outputs") as plain:
        plain_model.logits(x)
    with torch.no_grad(), record(model, "head_outputs") as prefixed:
        model.logits(x, prefix)
    t, t_pt = plain["head_outputs"][0][:, -1], prefixed["head_outputs"][0][:, -1]      # (2, H, hd)
    expected = bias[:, 0] + (1 - attention[:, 0].sum(-1, keepdim=True)) * t
    assert (t_pt - expected).abs().max().item() <= 1e-10
    assert (t_pt - t).abs().max().item() > 1e-3   # the prefix does move the output


def test_measures_on_hand_made_cases():
    w = pa.renormalised(torch.tensor([[0.2, 0.2], [0.1, 0.3]]))
    assert torch.allclose(w, torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert torch.allclose(pa.effective_positions(w), torch.tensor([2.0, math.exp(entropy)]))
    inputs = torch.arange(101, dtype=torch.float64)[:, None]                    # 0..100: quantiles are exact
    assert pa.percentile_gap(inputs).item() == pytest.approx(98.0)
    assert pa.effective_rank(torch.eye(4)) == pytest.approx(4.0)
    assert pa.effective_rank(torch.ones(5, 3)) == pytest.approx(1.0)


def test_centred_effective_rank_sees_the_variation_that_a_shared_mean_hides():
    """Rows = a large common vector + small noise in 3 directions: uncentred ~1, centred ~3."""
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 3, generator=generator, dtype=torch.float64)).Q.T   # (3, 16) orthonormal
    rows = 100.0 * torch.ones(16, dtype=torch.float64) + torch.randn(500, 3, generator=generator, dtype=torch.float64) @ basis
    assert pa.effective_rank(rows) < 1.2
    assert 2.8 < pa.effective_rank(rows, centred=True) <= 3.0 + 1e-9


def test_initial_prefixes_are_what_the_trainer_starts_from():
    from core.loop import TrainSettings, initial_prefixes, train
    from mingpt.model import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))
    seen = []
    settings = TrainSettings(method="prefix", max_iters=1, batch_size=2, n_prefixes=2, prefix_len=2, prefix_seeds=(5, 9),
                             learning_rate=0.0, progress=False, log_every=1)
    x = torch.zeros(4, 6, dtype=torch.long)
    train(model, settings, lambda g: (x, x), on_log=lambda r: seen.append(r.prefixes.detach().clone()))
    assert torch.equal(seen[0], initial_prefixes(model, 2, (5, 9)))  # lr 0: the step leaves them where they started
    assert not torch.equal(initial_prefixes(model, 2, (5,))[0], initial_prefixes(model, 2, (9,))[0])
