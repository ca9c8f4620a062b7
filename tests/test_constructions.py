"""Section 3 constructions: exhaustive exactness checks and target validation."""
import pytest
import torch

from constructions import (
    PRINTABLE,
    build_char_map,
    build_pair_map,
    build_response_map,
    build_string_generator,
    digits,
    verify,
)
from constructions.decoding import decode_logits
from constructions.report import largest_working_base, sweep_bases
from constructions.unpacking import pack


def test_vocabulary_is_94_printable_characters_with_space():
    assert PRINTABLE.size == 94 and " " in PRINTABLE and "~" not in PRINTABLE


def test_decoding_picks_nearest_code():
    codes = torch.arange(94, dtype=torch.float64) / 94
    assert torch.equal(decode_logits(codes, 94).argmax(-1), torch.arange(94))


def test_demo_string():
    assert build_string_generator("I love transformers!")() == "I love transformers!"


def test_string_generator_exact_on_100_random_strings_and_demo():
    result = verify.check_string_generator()
    assert (result.n_targets, result.n_exact, result.n_queries) == (101, 101, 101)
    assert result.min_margin > 0


def test_char_map_exact_on_all_inputs_of_20_random_maps():
    result = verify.check_char_map()
    assert result.n_targets == 20 and result.n_queries == 20 * 94 and result.all_exact
    assert result.min_margin > 0


def test_case_flip():
    flip = build_char_map({x: x.swapcase() for x in PRINTABLE.chars})
    assert flip("f") == "F" and flip("F") == "f" and flip("7") == "7"


def test_response_map_exact_on_all_inputs_of_10_random_maps():
    result = verify.check_response_map()
    assert result.n_targets == 10 and result.n_queries == 10 * 94 and result.all_exact
    assert result.min_margin > 0


def test_blueberries():
    responses = build_response_map({"b": "lueberries", "A": "nt"})
    assert "b" + responses("b") == "blueberries"
    assert responses("A") == "nt" + " " * 8


def test_pair_map_exact_on_all_pairs_of_20_random_maps():
    result = verify.check_pair_map()
    assert result.n_targets == 21 and result.n_queries == 21 * 100 and result.all_exact  # + the all-9 map
    assert result.min_margin > 0


def test_pair_map_weights_do_not_depend_on_the_map():
    one, other = build_pair_map({"12": "3"}), build_pair_map({"12": "4", "99": "9"})
    assert torch.equal(one.model.layers[1].w_in, other.model.layers[1].w_in)
    assert not torch.equal(one.prompt, other.prompt)


@pytest.mark.parametrize(
    "construction, sequence",
    [
        (build_string_generator("I love transformers!"), "I love transformers"),
        (build_char_map({"f": "F"}), "f"),
        (build_response_map({"b": "lueberries"}), "blueberrie"),
        (build_pair_map({"37": "5"}), "37"),
    ],
    ids=["string", "char", "response", "pair"],
)
def test_layers_write_only_into_zero_dimensions(construction, sequence):
    """So adding each layer's output to the stream is the same as concatenating it."""
    model = construction.model
    x = model.embed(construction.prompt, torch.tensor([construction.vocab.encode(sequence)]))
    for layer in model.layers:
        update = layer(x, x)
        assert not ((update != 0) & (x != 0)).any()
        x = x + update


def test_pack_is_exact_for_base_10():
    assert pack([1, 2, 3, 4, 5, 6, 7, 8, 9, 9], 10) == 0.1234567899


def test_largest_base_is_13():
    results = sweep_bases(max_base=15, n_maps=1)
    assert largest_working_base(results) == 13
    assert [r.packing_exact for r in results[-2:]] == [False, False]  # V = 14, 15 lose digits in the float


@pytest.mark.parametrize(
    "build, target, message",
    [
        (build_string_generator, "x" * 21, "too long: 21 characters, at most 20"),
        (build_string_generator, "caf\u00e9", "character '\u00e9' is not in the vocabulary"),
        (build_string_generator, "tilde~", "character '~' is not in the vocabulary"),
        (build_string_generator, "", "empty"),
        (build_char_map, {"a": "bc"}, "too long: 2 characters, at most 1"),
        (build_char_map, {"ab": "c"}, "map key 'ab' is too long"),
        (build_char_map, {"\n": "a"}, "character '\\\\n' is not in the vocabulary"),
        (build_char_map, {"a": ""}, "must have exactly 1 character"),
        (build_response_map, {"b": "blueberries"}, "too long: 11 characters, at most 10"),
        (build_response_map, {"b": "\u00fc"}, "value for key 'b'"),
        (lambda m: build_pair_map(m, digits(10)), {"1a": "2"}, "character 'a' is not in the vocabulary of 10"),
        (lambda m: build_pair_map(m, digits(10)), {"1": "2"}, "must have exactly 2 character"),
    ],
)
def test_malformed_targets_get_clear_errors(build, target, message):
    with pytest.raises(ValueError, match=message):
        build(target)


def test_query_of_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="expects 2 user characters"):
        build_pair_map({})("1")
