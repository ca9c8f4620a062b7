"""The budget probe: one component trained on a stored pretrained model, evaluated along the way."""

import pytest

from mingpt import probe


def test_probe_evaluates_along_the_way_and_counts_lora_parameters():
    record = probe.probe("C", "lora", "double_hist", samples=256, lr=5e-3, evals=2, eval_samples=64, progress=False)
    assert [point["samples"] for point in record["curve"]] == [128, 256]
    assert record["model"] == "2/4/64"
    assert record["trained_params"] == 10 * 64 * 2  # MLP-only rank-1 LoRA: 10·d·L, as an n_S = 10 prefix
    assert 0 <= record["final_accuracy"] <= 100


@pytest.mark.parametrize("kwargs, message", [
    (dict(experiment="E"), "unknown experiment 'E'"),
    (dict(method="finetune"), "unknown method 'finetune'"),
    (dict(task="reverse"), "unknown task 'reverse'"),
    (dict(model="4x4x64"), "--model takes layers/heads/width"),
])
def test_probe_refuses_bad_arguments(kwargs, message):
    args = {**dict(experiment="C", method="prefix", task="sort_asc_add1", samples=64, lr=1e-2), **kwargs}
    with pytest.raises(ValueError, match=message):
        probe.probe(**args)
