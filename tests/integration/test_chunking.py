import itertools

import pytest

from tasks.core.chunking import check_chunk_size, chunk_tokens

pytestmark = pytest.mark.integration

ENGLISH = (
    "A function definition defines a user-defined function object. Decorators wrap the "
    "function: the decorator expression is evaluated when the function is defined. "
) * 20
JAPANESE = "関数定義はユーザー定義関数オブジェクトを定義します。デコレータは関数を包みます。" * 20
CHINESE = "函数定义会定义一个用户自定义函数对象。装饰器表达式在定义函数时求值。" * 20
MIXED = ENGLISH[:400] + JAPANESE[:200] + " Ünïcödé façade naïve " * 10 + CHINESE[:200]


def _chunks(tokenizer, text: str, size: int, overlap: int):
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)

    def count(t: str) -> int:
        return len(tokenizer(t, add_special_tokens=False)["input_ids"])

    return chunk_tokens(text, enc["offset_mapping"], size, overlap, count), count


@pytest.mark.parametrize(
    "text", [ENGLISH, JAPANESE, CHINESE, MIXED], ids=["en", "ja", "zh", "mixed"]
)
@pytest.mark.parametrize(("size", "overlap"), [(32, 0), (64, 16), (254, 32)])
def test_chunks_respect_the_token_limit_and_cover_the_text(tokenizer, text, size, overlap) -> None:
    chunks, count = _chunks(tokenizer, text, size, overlap)
    assert len(chunks) >= 1
    for c in chunks:
        assert c.n_tokens <= size
        assert count(c.text) == c.n_tokens  # what the model will see, re-tokenized
        assert c.text == text[c.start : c.end]
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text.rstrip())
    # Windows advance and skip nothing but whitespace.
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start
        assert b.start <= a.end or text[a.end : b.start].strip() == ""


def test_neighbouring_chunks_overlap_by_about_the_asked_tokens(tokenizer) -> None:
    chunks, count = _chunks(tokenizer, ENGLISH, 64, 16)
    for a, b in itertools.pairwise(chunks):
        shared = count(ENGLISH[b.start : a.end])
        assert 8 <= shared <= 24


def test_no_overlap_means_adjacent_windows(tokenizer) -> None:
    chunks, _ = _chunks(tokenizer, ENGLISH, 48, 0)
    for a, b in itertools.pairwise(chunks):
        assert ENGLISH[a.end : b.start].strip() == ""


def test_one_giant_word_is_cut_hard_but_still_within_the_limit(tokenizer) -> None:
    text = "x" * 5000 + "yz" * 800
    chunks, count = _chunks(tokenizer, text, 50, 10)
    assert all(count(c.text) <= 50 for c in chunks)


def test_empty_text_gives_no_chunks(tokenizer) -> None:
    assert _chunks(tokenizer, "", 50, 10)[0] == []
    assert _chunks(tokenizer, "   \n ", 50, 10)[0] == []


def test_sizes_beyond_the_model_or_endless_overlap_are_refused() -> None:
    check_chunk_size(254, 32, 254)
    with pytest.raises(ValueError, match="exceeds the embedding model's maximum of 254"):
        check_chunk_size(300, 32, 254)
    with pytest.raises(ValueError, match="overlap"):
        check_chunk_size(64, 64, 254)
    with pytest.raises(ValueError, match="at least 1"):
        check_chunk_size(0, 0, 254)
