"""The stand-ins' tokenizers: each of its family's kind, lossless on any text, read from the model folder."""

import random

import pytest

from core.records import ROOT
from llama.tokenizer import Tokenizer
from mingpt.gpt2_tokenizer import GPT2Tokenizer

LLAMA_DIR, GPT2_DIR = ROOT / "models" / "llama-standin", ROOT / "models" / "gpt2-standin"

ODD_TEXTS = ["", " ", "  leading and trailing  ", "\ttab\r\nCRLF\n\n\n", "nul\x00 bell\x07", "x" * 300,
             "emoji 😀👍🏽, runes ᚠᛇᚻ, math ∑ √ ≈, CJK 数据, RTL שלום, zero\u200bwidth", "12345678901234567890",
             "def f(x):\n    return {'a': [1, 2.5e-3]}  # comment"]


def random_texts(n=300, seed=0):
    rng = random.Random(seed)
    pools = [(32, 126), (0x80, 0x2FFF), (0x3000, 0x9FFF), (0x1F300, 0x1F6FF), (9, 13)]
    return ["".join(chr(rng.randint(*rng.choice(pools))) for _ in range(rng.randint(1, 60))) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizers():
    return {"llama": Tokenizer(str(LLAMA_DIR / "tokenizer.model")), "gpt2": GPT2Tokenizer(GPT2_DIR)}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_round_trip_of_any_text(tokenizers, family):
    tokenizer = tokenizers[family]
    for text in ODD_TEXTS + random_texts():
        ids = tokenizer.encode(text, bos=False, eos=False)
        assert all(0 <= i < tokenizer.n_words for i in ids)
        assert tokenizer.decode(ids) == text, repr(text)


def test_llama_tokenizer_is_a_bpe_with_byte_fallback_as_llamas(tokenizers):
    from sentencepiece import sentencepiece_model_pb2 as model_pb2
    proto = model_pb2.ModelProto()
    proto.ParseFromString((LLAMA_DIR / "tokenizer.model").read_bytes())
    spec = proto.trainer_spec
    assert spec.model_type == model_pb2.TrainerSpec.BPE and spec.byte_fallback and spec.split_digits
    assert proto.normalizer_spec.name == "identity"
    tokenizer = tokenizers["llama"]
    assert (tokenizer.n_words, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (4096, 1, 2, -1)
    pieces = [proto.pieces[i].piece for i in range(len(proto.pieces))]
    assert pieces[3:3 + 256] == [f"<0x{b:02X}>" for b in range(256)]  # the 256 byte pieces, as in LLaMA's
    # a character the vocabulary lacks falls back to its UTF-8 bytes
    ids = tokenizer.encode("ᚻ", bos=False, eos=False)
    assert [pieces[i] for i in ids][-3:] == ["<0xE1>", "<0x9A>", "<0xBB>"]


def test_gpt2_tokenizer_matches_transformers_on_the_same_files(tokenizers):
    """The same vocab.json and merges.txt read by Hugging Face's GPT-2 tokenizer give the same ids."""
    from transformers import GPT2TokenizerFast
    reference = GPT2TokenizerFast(vocab=str(GPT2_DIR / "vocab.json"), merges=str(GPT2_DIR / "merges.txt"))
    ours = tokenizers["gpt2"]
    assert ours.n_words == len(reference) == 4096
    assert ours.eos_id == ours.bos_id == reference.eos_token_id
    for text in ODD_TEXTS + random_texts(100, seed=1):
        assert ours.encode(text, bos=False, eos=False) == reference.encode(text), repr(text)
    assert ours.encode("a b", bos=True, eos=True) == [ours.bos_id] + reference.encode("a b") + [ours.eos_id]


def test_a_folder_without_tokenizer_files_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.json and merges.txt"):
        GPT2Tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer.model"):
        Tokenizer(str(tmp_path / "tokenizer.model"))
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 1}')
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match="not a GPT-2 vocabulary"):
        GPT2Tokenizer(tmp_path)
