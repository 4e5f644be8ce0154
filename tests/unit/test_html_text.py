"""A web page's text without its chrome: what `html_to_text` keeps, leaves out and how it
lays the rest out."""

import pytest

from tasks.core.text import html_to_text

pytestmark = pytest.mark.unit

CHROME = """<html><head><title>Page</title><style>.x{}</style></head><body>
<header><a href="/">Logo text</a></header>
<nav>Main menu</nav><div role="navigation">Breadcrumbs</div>
<div role="banner">Banner text</div><div role="contentinfo">Legal text</div>
<aside>Sidebar text</aside><form><label>Search box</label><button>Go</button></form>
<script>var tracking = 1;</script><noscript>Enable JavaScript</noscript>
<svg><title>Icon title</title><text>Icon text</text></svg>
<iframe>Frame text</iframe><template>Template text</template>
<div hidden>Hidden text</div><span aria-hidden="true">Decoration</span>
<p>The content.</p>
<footer>Footer text</footer></body></html>"""


def test_the_pages_chrome_is_left_out_and_its_content_kept() -> None:
    title, text = html_to_text(CHROME)
    assert (title, text) == ("Page", "The content.")


def test_only_main_is_taken_when_the_page_has_one() -> None:
    html = "<body><div>Promo above</div><main><p>Inside main.</p></main><p>Below.</p></body>"
    assert html_to_text(html)[1] == "Inside main."


def test_every_article_is_taken_and_a_header_inside_one_is_its_heading() -> None:
    html = (
        "<body><header>Site banner</header><p>Teaser list</p>"
        "<article><header><h1>First</h1></header><p>One.</p><footer>Share this</footer></article>"
        "<article><h2>Second</h2><p>Two.</p></article></body>"
    )
    assert html_to_text(html)[1] == "First\n\nOne.\n\nSecond\n\nTwo."


def test_a_main_with_no_text_falls_back_to_the_whole_page() -> None:
    html = "<body><main><script>render()</script></main><p>Rendered on the server.</p></body>"
    assert html_to_text(html)[1] == "Rendered on the server."


def test_blocks_become_lines_and_paragraphs_and_spaces_collapse() -> None:
    html = (
        "<h1>Title</h1><p>A   paragraph\n   over two lines with <b>bold</b>"
        " text.</p><ul><li>one</li><li>two</li></ul>Line<br>break"
        "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
        "<div></div><p>  </p><section><p>Last &amp; least&nbsp;.</p></section>"
    )
    assert html_to_text(html)[1] == (
        "Title\n\nA paragraph over two lines with bold text.\n\none\ntwo\n\nLine\nbreak"
        "\n\na b\nc d\n\nLast & least ."
    )


def test_preformatted_text_keeps_its_lines() -> None:
    assert html_to_text("<pre>for x in y:\n    print(x)</pre>")[1] == "for x in y:\nprint(x)"


def test_nested_chrome_of_the_same_tag_is_left_out_whole() -> None:
    html = "<nav>Menu<nav>Submenu</nav>More menu</nav><p>Kept.</p><aside><aside>x</aside></aside>"
    assert html_to_text(html)[1] == "Kept."


def test_the_title_is_the_pages_not_an_icons_and_its_spaces_collapse() -> None:
    html = "<svg><title>Icon</title></svg><title>\n  Real\n  title </title><p>Body</p>"
    assert html_to_text(html) == ("Real title", "Body")


def test_a_page_without_markup_or_title_is_its_text() -> None:
    assert html_to_text("just words") == ("", "just words")
    assert html_to_text("") == ("", "")


def test_a_malformed_marked_section_is_skipped_not_the_end_of_the_page() -> None:
    assert html_to_text("<p>Before</p><![bogus[ x ]]><p>After</p>")[1] == "Before\n\nAfter"
