"""The one training loop: batched prefixes equal separate runs, resumption, methods, settings errors."""

import pytest
import torch

from core.loop import TrainSettings, train
from mingpt.model import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=10, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.1)
ROWS, T, N_S = 8, 12, 2


def fixed_batches(key: int, steps: int):
    """Deterministic (x, y) per step for one prefix; loss on the last 4 positions only."""
    g = torch.Generator().manual_seed(1000 + key)
    batches = []
    for _ in range(steps):
        x = torch.randint(0, 10, (ROWS, T), generator=g)
        y = torch.randint(0, 10, (ROWS, T), generator=g)
        y[:, :-4] = -1
        batches.append((x, y))
    return batches


def batch_fn(per_prefix):
    """get_batch that serves step k of every prefix's batches, stacked in prefix order."""
    step = iter(range(10 ** 6))

    def get_batch(generator):
        k = next(step)
        return torch.cat([b[k][0] for b in per_prefix]), torch.cat([b[k][1] for b in per_prefix])
    return get_batch


def base_model():
    torch.manual_seed(0)
    return GPT(CONFIG)


def prefix_settings(**kw):
    settings = dict(method="prefix", max_iters=5, batch_size=ROWS, learning_rate=0.05, prefix_len=N_S,
                    grad_clip=1e-5, progress=False, log_every=1)
    return TrainSettings(**{**settings, **kw})


def test_batched_prefixes_equal_separate_training():
    steps, seed = 5, 7
    data = [fixed_batches(k, steps) for k in range(3)]
    together = train(base_model(), prefix_settings(n_prefixes=3, seed=seed), batch_fn(data))
    for k in range(3):
        alone = train(base_model(), prefix_settings(n_prefixes=1, seed=seed + k), batch_fn([data[k]]))
        assert (together.prefixes[k] - alone.prefixes[0]).abs().max() <= 1e-5
        assert together.losses[-1][1][k] == pytest.approx(alone.losses[-1][1][0], abs=1e-5)
    # clipping was active (gradient norms ~1e-4 > 1e-5), so a clip over all prefixes at once would have coupled them
    unclipped = train(base_model(), prefix_settings(n_prefixes=3, seed=seed, grad_clip=1e9), batch_fn(data))
    assert (together.prefixes - unclipped.prefixes).abs().max() > 1e-3


def test_on_log_sees_every_logged_step_with_the_live_prefixes():
    seen = []
    on_log = lambda result: seen.append((result.step, result.prefixes.detach().clone()))
    result = train(base_model(), prefix_settings(max_iters=5, log_every=2), batch_fn([fixed_batches(0, 5)]),
                   on_log=on_log)
    assert [step for step, _ in seen] == [2, 4, 5] == [step for step, _ in result.losses]
    assert torch.equal(seen[-1][1], result.prefixes.detach())
    assert not torch.equal(seen[0][1], seen[-1][1])


def test_prefix_tuning_leaves_the_model_unchanged():
    model = base_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, prefix_settings(n_prefixes=2), batch_fn([fixed_batches(k, 5) for k in range(2)]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


@pytest.mark.parametrize("method", ["pretrain", "lora"])
def test_resume_equals_uninterrupted(tmp_path, method):
    data = [fixed_batches(0, 6)]
    settings = dict(method=method, batch_size=ROWS, learning_rate=1e-2, progress=False, log_every=1, seed=3,
                    checkpoint_every=3, lora_rank=2, lora_targets=("mlp", "attn_out"))
    straight = base_model()
    train(straight, TrainSettings(max_iters=6, **settings), batch_fn(data))

    resumed = base_model()
    path = str(tmp_path / "run.pt")
    train(resumed, TrainSettings(max_iters=3, checkpoint_path=path, **settings), batch_fn(data))
    resumed = base_model()       # a fresh process: new model, the checkpoint on disk
    get_batch = batch_fn(data)
    for _ in range(3):           # the data stream of this test is positional: skip the consumed steps
        get_batch(None)
    result = train(resumed, TrainSettings(max_iters=6, checkpoint_path=path, **settings), get_batch)
    assert result.step == 6 and [s for s, _ in result.losses] == [1, 2, 3, 4, 5, 6]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_lora_trains_only_adapters():
    model = base_model()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, TrainSettings(method="lora", max_iters=3, batch_size=ROWS, learning_rate=1e-2, progress=False,
                               lora_targets=("mlp",)), batch_fn([fixed_batches(0, 3)]))
    state = model.state_dict()
    adapted = [k for k in state if "lora_" in k]
    assert len(adapted) == 2 * 2 * CONFIG.n_layer
    assert all(torch.equal(v, state[_wrapped(k)]) for k, v in base.items())
    assert any(state[k].abs().sum() > 0 for k in adapted if k.endswith("lora_B"))


def _wrapped(name: str) -> str:
    """Name of a base weight after LoRA wrapped its layer."""
    for layer in ("mlp.c_fc.", "mlp.c_proj."):
        if layer in name:
            return name.replace(layer, layer + "base.")
    return name


def test_checkpoint_of_another_run_is_an_error(tmp_path):
    path = str(tmp_path / "run.pt")
    train(base_model(), prefix_settings(checkpoint_path=path), batch_fn([fixed_batches(0, 5)]))
    with pytest.raises(ValueError, match="holds a 'prefix' run, not 'pretrain'"):
        train(base_model(), TrainSettings(method="pretrain", checkpoint_path=path, progress=False),
              batch_fn([fixed_batches(0, 5)]))
    with pytest.raises(ValueError, match=r"other settings \(learning_rate: 0.05 there, 0.01 here\)"):
        train(base_model(), prefix_settings(checkpoint_path=path, learning_rate=0.01), batch_fn([fixed_batches(0, 5)]))
    other = GPT(GPTConfig(vocab_size=10, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="another model configuration"):
        train(other, prefix_settings(checkpoint_path=path), batch_fn([fixed_batches(0, 5)]))


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown training method 'adapter'"):
        TrainSettings(method="adapter")


@pytest.mark.parametrize("method", ["pretrain", "prefix"])
def test_loss_positions_give_the_same_training(method):
    """Computing the last layer at the loss positions only changes no number (float64, dropout off)."""
    config = GPTConfig(vocab_size=10, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    runs = []
    for loss_positions in (0, 4):
        torch.manual_seed(0)
        model = GPT(config).double()
        settings = TrainSettings(method=method, max_iters=4, batch_size=ROWS, learning_rate=1e-2, prefix_len=N_S,
                                 loss_positions=loss_positions, progress=False, log_every=1)
        result = train(model, settings, batch_fn([fixed_batches(0, 4)]))
        runs.append((model.state_dict(), result))
    (state0, run0), (state4, run4) = runs
    assert max((state0[k] - state4[k]).abs().max() for k in state0) <= 1e-12
    assert torch.tensor([l for _, l in run0.losses]).sub(torch.tensor([l for _, l in run4.losses])).abs().max() <= 1e-6
    if method == "prefix":  # the prefixes are float32 parameters
        assert (run0.prefixes - run4.prefixes).abs().max() <= 1e-6


def test_targets_outside_the_loss_positions_are_an_error():
    settings = TrainSettings(method="pretrain", max_iters=2, batch_size=ROWS, loss_positions=3, progress=False)
    with pytest.raises(ValueError, match="targets outside its last loss_positions=3 positions"):
        train(base_model(), settings, batch_fn([fixed_batches(0, 2)]))


def test_resume_mid_draw_equals_uninterrupted_bit_for_bit(tmp_path):
    """The runner's stream draws BATCHES_PER_DRAW batches a call; a checkpoint taken between draws keeps
    the unused ones, so resuming at a step that is not a multiple of the draw size changes nothing."""
    from mingpt import tasks
    from mingpt.components import BATCHES_PER_DRAW, BatchStream
    ids = torch.tensor([tasks.TASKS.index("sort_asc"), tasks.TASKS.index("add1")])
    stream = lambda: BatchStream(lambda g: ids[torch.randint(2, (ROWS,), generator=g)], N_S, "cpu")
    config = GPTConfig(vocab_size=10, block_size=N_S + 20, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
    settings = dict(method="pretrain", batch_size=ROWS, learning_rate=1e-2, progress=False, seed=5,
                    checkpoint_every=1000)
    stop, total = BATCHES_PER_DRAW + 5, 2 * BATCHES_PER_DRAW + 3
    torch.manual_seed(0)
    straight = GPT(config)
    train(straight, TrainSettings(max_iters=total, **settings), stream())
    path = str(tmp_path / "run.pt")
    torch.manual_seed(0)
    train(GPT(config), TrainSettings(max_iters=stop, checkpoint_path=path, **settings), stream())
    torch.manual_seed(0)
    resumed = GPT(config)        # a fresh process: new model, new stream, the checkpoint on disk
    train(resumed, TrainSettings(max_iters=total, checkpoint_path=path, **settings), stream())
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_lora_twice_on_one_model_is_a_clear_error():
    model = base_model()
    settings = TrainSettings(method="lora", max_iters=1, batch_size=ROWS, progress=False)
    train(model, settings, batch_fn([fixed_batches(0, 1)]))
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        train(model, settings, batch_fn([fixed_batches(0, 1)]))


def test_lora_weights_of_other_adapters_do_not_load():
    from core.lora import add_lora, load_lora, lora_parameters
    trained = base_model()
    add_lora(trained, 1, ("mlp", "attn_out"))
    state = {k: v.detach() for k, v in lora_parameters(trained).items()}
    model = base_model()
    add_lora(model, 1, ("mlp",))
    with pytest.raises(ValueError, match=r"does not match the model's LoRA adapters \(missing \[\], unexpected "
                                         r"\['transformer.h.0.attn.c_proj.lora_A'"):
        load_lora(model, state)
    plain = base_model()
    with pytest.raises(ValueError, match=r"0 expected\): add_lora with the rank and targets"):
        load_lora(plain, state)
    same = base_model()
    add_lora(same, 1, ("mlp", "attn_out"))
    load_lora(same, state)
    assert all(torch.equal(v, lora_parameters(same)[k]) for k, v in state.items())


def test_training_time_adds_up_over_the_pieces_of_a_resumed_run(tmp_path):
    """A long first piece and a one-step second: the total must hold the first piece's seconds too."""
    data = [fixed_batches(0, 41)]
    settings = dict(method="pretrain", batch_size=ROWS, progress=False, checkpoint_path=str(tmp_path / "run.pt"))
    first = train(base_model(), TrainSettings(max_iters=40, checkpoint_every=40, **settings), batch_fn(data))
    get_batch = batch_fn(data)
    for _ in range(40):
        get_batch(None)
    second = train(base_model(), TrainSettings(max_iters=41, **settings), get_batch)
    assert first.train_time_s > 0
    assert second.train_time_s > first.train_time_s


def greedy_accuracy(model, prefix, x, y):
    """A stand-in held-out metric: share of the last-4 targets the model's argmax gets right (no random state)."""
    with torch.no_grad():
        logits = model.eval().logits(x, prefix)
    return ((logits[:, -4:].argmax(-1) == y[:, -4:]).float().mean() * 100).item()


def test_evaluating_along_the_way_changes_no_training_and_survives_resumption(tmp_path):
    """Fine-tuning with dropout: a run evaluated at steps 2 and 5 ends with the same weights as one never
    evaluated, and a run resumed after step 3 keeps the step-2 evaluation and adds step 5's."""
    data, (x, y) = [fixed_batches(0, 6)], fixed_batches(9, 1)[0]
    settings = dict(method="finetune", batch_size=ROWS, learning_rate=1e-2, progress=False, seed=3, max_iters=6)
    plain = base_model()
    train(plain, TrainSettings(**settings), batch_fn(data))
    watched = base_model()
    evaluate = lambda result: [greedy_accuracy(watched, None, x, y)]
    result = train(watched, TrainSettings(eval_steps=(2, 5), **settings), batch_fn(data), evaluate=evaluate)
    assert [step for step, _ in result.evals] == [2, 5]
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), watched.state_dict().values()))

    path = str(tmp_path / "run.pt")
    first = base_model()
    evaluate = lambda result: [greedy_accuracy(first, None, x, y)]
    train(first, TrainSettings(eval_steps=(2, 5), checkpoint_path=path, stop_at=3, **settings), batch_fn(data),
          evaluate=evaluate)
    second = base_model()
    get_batch = batch_fn(data)
    for _ in range(3):
        get_batch(None)
    evaluate = lambda result: [greedy_accuracy(second, None, x, y)]
    resumed = train(second, TrainSettings(eval_steps=(2, 5), checkpoint_path=path, **settings), get_batch,
                    evaluate=evaluate)
    assert resumed.evals == result.evals


def test_stop_at_keeps_the_schedule_of_the_full_run(tmp_path):
    """A run stopped at step 3 of a 6-step cosine schedule, then continued, equals the 6-step run: the
    screening of a Search is the beginning of its full run."""
    data = [fixed_batches(0, 6)]
    settings = dict(n_prefixes=1, max_iters=6, lr_schedule="cosine", learning_rate=0.5, grad_clip=1.0, seed=4)
    straight = train(base_model(), prefix_settings(**settings), batch_fn(data))
    path = str(tmp_path / "screen.pt")
    stopped = train(base_model(), prefix_settings(stop_at=3, checkpoint_path=path, **settings), batch_fn(data))
    assert stopped.step == 3
    get_batch = batch_fn(data)
    for _ in range(3):
        get_batch(None)
    continued = train(base_model(), prefix_settings(checkpoint_path=path, **settings), get_batch)
    assert torch.allclose(continued.prefixes, straight.prefixes, atol=1e-6)


def test_continuing_one_prefix_of_a_batched_run_equals_training_it_alone(tmp_path):
    """Screen 3 prefixes together for 3 steps, continue prefix 1 alone for 3 more: the same prefix as
    training that init alone for 6 steps on the same data (its Adam moments and step were carried over)."""
    steps, seeds = 6, (11, 12, 13)
    data = [fixed_batches(k, steps) for k in range(3)]
    common = dict(max_iters=steps, lr_schedule="cosine", learning_rate=0.5, grad_clip=1.0, seed=4)
    alone = train(base_model(), prefix_settings(n_prefixes=1, prefix_seeds=(12,), **common), batch_fn([data[1]]))
    path = tmp_path / "screen.pt"
    train(base_model(), prefix_settings(n_prefixes=3, prefix_seeds=seeds, stop_at=3, checkpoint_path=str(path),
                                        **common), batch_fn(data))
    get_batch = batch_fn([data[1]])
    for _ in range(3):
        get_batch(None)
    continued = train(base_model(), prefix_settings(n_prefixes=1, prefix_seeds=(12,), resume_from=str(path),
                                                    resume_prefix=1, checkpoint_path=str(tmp_path / "c.pt"), **common),
                      get_batch)
    assert continued.step == steps and [s for s, _ in continued.losses] == list(range(1, steps + 1))
    assert torch.allclose(continued.prefixes[0], alone.prefixes[0], atol=1e-5)
    assert continued.losses[-1][1][0] == pytest.approx(alone.losses[-1][1][0], abs=1e-5)
    with pytest.raises(ValueError, match="holds 3 prefixes; resume_prefix=3"):
        train(base_model(), prefix_settings(n_prefixes=1, resume_from=str(path), resume_prefix=3,
                                            checkpoint_path=str(tmp_path / "d.pt"), **common), get_batch)
    with pytest.raises(ValueError, match="learning_rate"):
        train(base_model(), prefix_settings(n_prefixes=1, resume_from=str(path), checkpoint_path=str(tmp_path / "e.pt"),
                                            **{**common, "learning_rate": 0.1}), get_batch)


def test_a_lora_trains_on_the_llama_stand_in_through_the_one_loop_and_the_base_stays_frozen():
    """LoRA on LLaMA's feed-forward and attention output (its declared targets): the loss falls, the adapters
    move, and every weight of the base model is bit for bit what it was."""
    from core.lora import lora_parameters
    from lm.stand_ins import load_model
    model = load_model("llama").float()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = torch.randint(0, model.params.vocab_size, (4, 17), generator=torch.Generator().manual_seed(0))
    get_batch = lambda generator: (tokens[:, :-1], tokens[:, 1:])       # one batch, to be memorised
    settings = TrainSettings(method="lora", lora_rank=2, lora_targets=("mlp", "attn_out"), max_iters=12,
                             batch_size=4, learning_rate=1e-2, weight_decay=0.0, log_every=1, progress=False)
    result = train(model, settings, get_batch)
    adapters = lora_parameters(model)
    assert len(adapters) == 2 * 4 * model.n_layers       # A and B of w1, w2, w3 and wo in every layer
    assert result.losses[-1][1][0] < result.losses[0][1][0] - 0.1
    assert all(v.abs().sum() > 0 for k, v in adapters.items() if k.endswith("lora_B"))   # B starts at zero
    now = {k.replace(".base.", "."): v for k, v in model.state_dict().items() if ".lora_" not in k}
    assert now.keys() == base.keys() and all(torch.equal(now[k], base[k]) for k in base)


def test_a_lora_target_the_family_does_not_declare_is_named():
    from core.lora import add_lora
    from lm.stand_ins import load_model
    with pytest.raises(ValueError, match=r"unknown LoRA target\(s\) \['c_fc'\] for Transformer; choose from "
                                         r"\['attn_out', 'attn_qkv', 'mlp'\]"):
        add_lora(load_model("llama"), 1, ("c_fc",))
