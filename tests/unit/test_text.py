import pytest

from tasks.core.text import content_id, html_to_text, is_valid_unicode, looks_binary, normalize_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cafe\u0301", "café"),  # NFD → NFC
        ("a\x00b\x07c\x1bd", "abcd"),  # control characters dropped
        ("a \t  b\u00a0 c", "a b c"),  # runs of spaces, tabs and no-break spaces collapse
        ("line one\r\nline two\rthree", "line one\nline two\nthree"),
        ("para\n\n\n\n\nnext", "para\n\nnext"),  # paragraphs kept, blank runs shortened
        ("  padded  \n", "padded"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalisation_makes_equal_content_share_an_id() -> None:
    assert content_id(normalize_text("cafe\u0301  au lait")) == content_id(
        normalize_text("café au lait")
    )
    assert content_id("a") != content_id("b")
    assert content_id("same text") == content_id("same text")  # stable across calls
    assert len(content_id("x")) == 32


def test_lone_surrogates_are_not_valid_unicode() -> None:
    assert is_valid_unicode("日本語 and English")
    assert not is_valid_unicode("broken \ud800 text")


def test_html_to_text_strips_markup_scripts_and_styles() -> None:
    title, text = html_to_text(
        "<html><head><title>Doc</title><style>p{color:red}</style></head>"
        "<body><h1>Head</h1><script>alert(1)</script><p>Body &amp; more</p></body></html>"
    )
    assert title == "Doc"
    assert "alert" not in text and "color" not in text and "<" not in text
    assert normalize_text(text) == "Head\n\nBody & more"


def test_binary_detection() -> None:
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert not looks_binary("plain text, ünïcode".encode())
