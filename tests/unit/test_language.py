import pytest

from tasks.core.language import detect_language, tokens_by_language

pytestmark = pytest.mark.unit


def test_detects_the_languages_of_the_corpus() -> None:
    assert detect_language("A function definition defines a user-defined function object.") == "en"
    assert detect_language("関数定義はユーザー定義関数オブジェクトを定義します。") == "ja"
    assert detect_language("这是一个关于编程语言的中文文档，介绍函数和装饰器的使用方法。") == "zh"
    assert (
        detect_language("Die Funktion wird definiert, wenn der Dekorator ausgewertet wird.") == "de"
    )
    assert detect_language("   ") == "und"


def test_tokens_by_language_sums_and_orders_by_tokens() -> None:
    rows = [("en", 10, 50), ("ja", 30, 20), ("en", 5, 25)]
    totals = {t.language: t for t in tokens_by_language(rows)}
    assert [t.language for t in tokens_by_language(rows)] == ["ja", "en"]
    assert (totals["en"].chunks, totals["en"].tokens, totals["en"].chars) == (2, 15, 75)
    assert totals["ja"].tokens_per_100_chars == 150.0


def test_the_same_sentence_costs_more_tokens_in_japanese_and_chinese(tokenizer) -> None:
    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    english = n("The decorator is evaluated when the function is defined.")
    assert n("デコレータは関数が定義されたときに評価されます。") > 1.5 * english
    assert n("装饰器在定义函数时被求值。") > english
