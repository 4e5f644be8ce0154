import pytest

from tasks.core.pages import clean_pages, join_hyphenated, reflow, strip_running_lines

pytestmark = pytest.mark.unit

HEADER = "ACME Handbook — Confidential"


def page(n: int, of: int, *body: str) -> str:
    return "\n".join([HEADER, *body, f"Page {n} of {of}"])


def test_headers_and_numbered_footers_repeated_on_every_page_are_removed() -> None:
    body = {1: ("Travel", "Book early."), 9: ("Leave", "Ask first."), 10: ("Badges", "Wear it.")}
    pages = [page(n, 10, *lines) for n, lines in body.items()]
    assert strip_running_lines(pages) == ["\n".join(lines) for lines in body.values()]


def test_a_bare_page_number_footer_is_removed_whatever_its_digits() -> None:
    pages = [
        f"Intro {word}\nMiddle {word}\n{n}" for n, word in zip((9, 10, 11, 12), "abcd", strict=True)
    ]
    assert strip_running_lines(pages) == [f"Intro {word}\nMiddle {word}" for word in "abcd"]


def test_running_lines_match_whatever_their_spacing_and_case() -> None:
    pages = ["ACME  handbook\nbody one", "acme HANDBOOK \nbody two", "Acme Handbook\nbody three"]
    assert strip_running_lines(pages) == ["body one", "body two", "body three"]


def test_a_line_repeated_mid_page_stays() -> None:
    pages = [f"{w} 1\n{w} 2\nAlways said here.\n{w} 3\n{w} 4" for w in ("apple", "pear", "plum")]
    assert strip_running_lines(pages) == pages


def test_a_line_on_fewer_than_half_the_pages_stays() -> None:
    pages = [f"Draft\nbody {c}" if c in "abc" else f"Final {c}\nbody {c}" for c in "abcdefg"]
    assert strip_running_lines(pages) == pages


def test_a_line_on_half_the_pages_and_three_of_them_is_removed() -> None:
    pages = [f"Draft\nbody {c}" if c in "abc" else f"Final {c}\nbody {c}" for c in "abcdef"]
    assert strip_running_lines(pages) == ["body a", "body b", "body c", *pages[3:]]


def test_two_pages_are_too_few_to_tell_a_running_line() -> None:
    pages = [page(1, 2, "one"), page(2, 2, "two")]
    assert strip_running_lines(pages) == pages


def test_blank_and_one_line_pages_neither_break_nor_count() -> None:
    pages = ["", "Only line", "\n\n", HEADER, f"{HEADER}\nbody a", f"{HEADER}\nbody b"]
    assert strip_running_lines(pages) == ["", "Only line", "\n\n", "", "body a", "body b"]
    assert strip_running_lines([]) == []


def test_a_running_line_is_removed_only_where_it_stands_at_an_edge() -> None:
    pages = [f"{HEADER}\n{w} 1\n{w} 2\n{HEADER}\n{w} 3\n{w} 4" for w in ("apple", "pear", "plum")]
    pages.append(f"top\nnext\n{HEADER}\nmiddle\nend\nlast")
    out = strip_running_lines(pages)
    assert out[0] == f"apple 1\napple 2\n{HEADER}\napple 3\napple 4"
    assert out[3] == pages[3]


def test_a_word_broken_with_a_hyphen_is_joined() -> None:
    assert join_hyphenated("kept for exam-\nination by") == "kept for examination by"
    assert join_hyphenated("Über-  \n  prüfung") == "Überprüfung"


def test_a_hyphen_before_an_uppercase_letter_or_a_digit_is_real() -> None:
    assert join_hyphenated("we value co-\nOperation") == "we value co-Operation"
    assert join_hyphenated("in 2023-\n2024 and COVID-\n19") == "in 2023-2024 and COVID-19"
    assert join_hyphenated("class B-\n12 files") == "class B-12 files"


def test_a_hyphen_after_a_digit_stays_before_a_word() -> None:
    assert join_hyphenated("a 19-\nrelated case") == "a 19-related case"


def test_dashes_and_bullets_are_not_broken_words() -> None:
    text = "so -\nthe end\n- item\nlast-\n\nnext"
    assert join_hyphenated(text) == text


def test_consecutive_broken_words_are_all_joined() -> None:
    assert join_hyphenated("a long-\nish-\nword") == "a longishword"


def test_soft_hyphens_are_removed_and_join_their_lines() -> None:
    assert join_hyphenated("hy\u00adphen\u00ad\nation here") == "hyphenation here"


def test_wrapped_lines_of_a_paragraph_are_joined_with_a_space() -> None:
    text = (
        "The handbook applies to every member of staff and\n"
        "to every contractor who works on our premises or\n"
        "on our systems.\n"
    )
    assert reflow(text) == (
        "The handbook applies to every member of staff and to every contractor who works on "
        "our premises or on our systems."
    )


def test_a_blank_line_keeps_one_paragraph_break() -> None:
    assert reflow("\n\nFirst paragraph.\n\n\n\nSecond paragraph.\n\n") == (
        "First paragraph.\n\nSecond paragraph."
    )


def test_list_items_keep_their_lines() -> None:
    long = "Before you travel, ask your manager and fill in the request form for these items:"
    text = f"{long}\n• a ticket\n- a hotel\n* a car\n1. the form\n12) the receipt\n– the rest"
    assert reflow(text) == text


def test_a_short_heading_keeps_its_line_and_the_paragraph_under_it_is_joined() -> None:
    text = (
        "Travel\n"
        "Before you travel, ask your manager and fill in the request form in the\n"
        "portal; it takes two days to approve a request of this kind.\n"
        "Expenses\n"
        "Keep every receipt."
    )
    assert reflow(text) == (
        "Travel\n"
        "Before you travel, ask your manager and fill in the request form in the portal; it "
        "takes two days to approve a request of this kind.\n"
        "Expenses\n"
        "Keep every receipt."
    )


def test_a_paragraphs_short_last_line_ends_it() -> None:
    text = (
        "Every record is kept for the period its class sets, and then destroyed by\n"
        "the office.\n"
        "Records under a legal hold are kept until the hold is lifted, whatever\n"
        "their class."
    )
    assert reflow(text).split("\n") == [
        "Every record is kept for the period its class sets, and then destroyed by the office.",
        "Records under a legal hold are kept until the hold is lifted, whatever their class.",
    ]


def test_table_rows_keep_their_lines() -> None:
    text = (
        "The classes of records and how long each is kept are listed in this table below.\n"
        "Class Retention Owner\nA 30 days Records office\nB 90 days Legal team"
    )
    assert reflow(text).split("\n")[1:] == [
        "Class Retention Owner",
        "A 30 days Records office",
        "B 90 days Legal team",
    ]


def test_a_short_line_followed_by_lowercase_text_continues() -> None:
    text = "A long first line of the paragraph that sets the width of it all\nshort but\ncontinues"
    assert reflow(text) == (
        "A long first line of the paragraph that sets the width of it all short but continues"
    )


def test_reflow_of_empty_text_is_empty() -> None:
    assert reflow("") == ""
    assert reflow("\n \n") == ""


def test_clean_pages_strips_running_lines_then_joins_words_and_lines() -> None:
    pages = [
        page(
            n,
            3,
            f"Section {'ABC'[n - 1]}",
            f"The records of class {n} are kept for exam-",
            "ination by the auditors for a period of",
            f"{years} years.",
        )
        for n, years in ((1, "ten"), (2, "five"), (3, "two"))
    ]
    assert clean_pages(pages) == [
        f"Section {c}\nThe records of class {n} are kept for examination by the auditors for a "
        f"period of {years} years."
        for n, c, years in ((1, "A", "ten"), (2, "B", "five"), (3, "C", "two"))
    ]


def test_pages_that_are_all_running_lines_keep_their_text() -> None:
    """A form letter printed three times: every line repeats, so nothing is a header."""
    pages = [f"Dear customer {n},\nYour order {n} has shipped.\nRegards" for n in (1, 2, 3)]
    cleaned = clean_pages(pages)
    assert all(f"Your order {n} has shipped." in cleaned[n - 1] for n in (1, 2, 3)), cleaned
