"""The learning-curve summaries the notebooks print (mingpt.report), on hand-made results with known answers."""

import json

import pytest

from mingpt import report


def results(**curves_by_seed):
    """A results file's shape: {"spec": {...}, "seeds": {seed: {"curves": {row: [[samples, accuracy], ...]}}}}."""
    return {"spec": {"eval_samples": 3200}, "seeds": {seed: {"curves": curves} for seed, curves in curves_by_seed.items()}}


DATA = results(**{
    "0": {"lora": [[100, 10.0], [1000, 50.0], [3000, 90.0]], "prefix": [[100, 0.0], [1000, 1.0], [2000, 1.5]]},
    "1": {"lora": [[100, 20.0], [1000, 70.0], [3000, 80.0]], "prefix": [[100, 0.5], [1000, 0.5], [2500, 3.5]]},
})


def test_equal_samples_take_each_curves_last_point_within_the_shortest_run():
    # the shortest curve ends at 2,000 samples: the LoRA's points there are those at 1,000 (50 and 70 -> 60);
    # the prefix's at 2,000 (seed 0: 1.5) and 1,000 (seed 1: 0.5) -> 1.0; the sample counts read are named
    assert report.at_equal_samples(DATA, "lora", "prefix") == \
        "at 2,000 samples, the most that both reach (seeds 0, 1): lora 60.00 % (read at 1,000), " \
        "prefix 1.00 % (read at 1,000 / 2,000)"


def test_equal_samples_need_both_rows():
    assert report.at_equal_samples(results(**{"0": {"lora": [[1, 2.0]]}}), "lora", "prefix") is None


@pytest.mark.parametrize("samples, accuracy, n_eval, trend", [
    # from the point at 1,000 (half of 2,000): two sampling errors of 10 % and 12 % on 3,200 inputs are 1.56 points
    ([100, 1000, 2000], [0.0, 10.0, 12.0], 3200, "still rising"),   # +2 > 1.56
    ([100, 1000, 2000], [0.0, 10.0, 11.0], 3200, "flat"),           # +1 < 1.56: within the noise
    ([100, 1000, 2000], [0.0, 10.0, 11.0], 100_000, "still rising"),  # on 100,000 inputs the bar is 0.27
    ([100, 1000, 2000], [0.0, 0.2, 1.0], 3200, "still rising"),     # near zero the bar is 0.39: +0.8 counts
    ([1500, 2000], [0.0, 50.0], 3200, "too short to tell"),        # no point in the first half
])
def test_trend_compares_the_last_half_with_its_sampling_error(samples, accuracy, n_eval, trend):
    assert report.trend(samples, accuracy, n_eval) == trend


def test_curve_lines_name_the_last_point_and_the_trend():
    assert report.curve_lines(DATA, ["prefix"]) == [
        "prefix seed 0: 1.50 % after 2,000 samples; flat over the last half of its samples",
        "prefix seed 1: 3.50 % after 2,500 samples; still rising over the last half of its samples"]


def test_search_lines_list_every_screened_run():
    data = {"seeds": {"2": {"search": {"prefix_double_hist": [
        {"lr": 0.01, "restart": 3, "screen_accuracy": 0.25, "screen_samples": 1_000_000, "screen_loss": 0.4567,
         "chosen": False},
        {"lr": 0.03, "restart": 0, "screen_accuracy": 1.5, "screen_samples": 1_000_000, "screen_loss": 0.4,
         "chosen": True}]}}}}
    assert report.search_lines(data, "prefix_double_hist") == \
        ["seed 2: lr 0.01   init 3:   0.25 % after 1,000,000 samples, loss 0.457",
         "seed 2: lr 0.03   init 0:   1.50 % after 1,000,000 samples, loss 0.400  ← chosen"]


def test_mean_curve_averages_the_shared_sample_counts_and_refuses_curves_that_share_none():
    samples, mean = report.mean_curve({"0": ([10, 20, 40], [1.0, 2.0, 4.0]), "1": ([20, 40, 80], [4.0, 6.0, 9.0])})
    assert (samples, mean) == ([20, 40], [3.0, 5.0])
    with pytest.raises(ValueError, match="share no sample count"):
        report.mean_curve({"0": ([10, 20], [1.0, 2.0]), "1": ([30, 40], [3.0, 4.0])})


def test_the_glance_shows_each_seed_the_samples_and_how_many_seeds_meet_our_threshold(tmp_path):
    """A made-up results file of D with two seeds: one meets both thresholds, one has its LoRA at 80 %."""
    spec = {"prefix_groups": [[["double_hist"], {"samples": 3_000_000}]],
            "loras": [{"name": "lora_mlp_attn_out", "phase": {"samples": 250_000}}]}
    run = lambda lora: {"accuracy": {"prefix_double_hist": {"double_hist": 1.0}, "lora_mlp_attn_out": {"double_hist": lora}},
                        "param_counts": {"prefix": 4608, "lora_mlp_attn_out": 4608}}
    folder = tmp_path / "results" / "section5" / "cpu"
    folder.mkdir(parents=True)
    (folder / "D.json").write_text(json.dumps({"spec": spec, "seeds": {"0": run(96.0), "1": run(80.0)}}))
    lines = {line.split(" | ")[0]: line for line in report.glance(["cpu", "gpu"], root=tmp_path)}
    assert lines["| D: an n_S = 12 prefix cannot learn H"] == (
        "| D: an n_S = 12 prefix cannot learn H | 0.31 | ≤ 3 | 1.00 / 1.00 (seeds 0, 1; 3M samples; 4,608 parameters) "
        "✓ 2 of 2 | — |")
    assert lines["| D: a rank-1 LoRA of MLP + attention output, as many parameters, learns H"].endswith(
        "| 92.38 | ≥ 85 | 96.00 / 80.00 (seeds 0, 1; 250k samples; 4,608 parameters) ✗ 1 of 2 | — |")
    assert lines["| A: a prefix cannot learn ↘"].endswith("| 0.00 | ≤ 2 | — | — |")


def test_probes_reads_every_record_in_file_name_order_and_keeps_those_matching_every_field(tmp_path):
    folder = tmp_path / "results" / "probes"
    folder.mkdir(parents=True)
    records = {"b.json": {"method": "finetune", "task": "double_hist", "seed": 1},
               "a.json": {"method": "finetune", "task": "double_hist", "seed": 0},
               "c.json": {"method": "prefix", "task": "double_hist", "seed": 0}}
    for name, record in records.items():
        (folder / name).write_text(json.dumps(record))
    assert [name for name, _ in report.probes(tmp_path)] == ["a.json", "b.json", "c.json"]
    assert report.probes(tmp_path, method="finetune", seed=1) == [("b.json", records["b.json"])]
    assert report.probes(tmp_path, method="lora") == []
