"""Markdown rendered to sanitised HTML for annotators (task_builder.render): what renders, what never passes."""

from __future__ import annotations

import re

import pytest

from task_builder.render import RenderOptions, render_answer, render_markdown, sanitise


def test_markdown_renders_headings_emphasis_lists_tables_and_math_as_set_off_source() -> None:
    out = render_markdown(
        "# Title\n**Hugh Jackman**\n\n- one\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n\\( f(x) \\) and $$x^2$$"
    )
    assert "<h1>Title</h1>" in out and "<strong>Hugh Jackman</strong>" in out and "<li>one</li>" in out
    assert "<table>" in out and '<td style="text-align:right">2</td>' in out
    assert '<code class="rlhf-math">\\( f(x) \\)</code>' in out and '<code class="rlhf-math">$$x^2$$</code>' in out


def test_code_keeps_its_indentation_and_is_highlighted_when_the_language_is_known() -> None:
    out = render_markdown("```python\ndef f(x):\n    return x\n```\n\n```\n  plain\n```")
    assert '<pre class="highlight"><code><span class="k">def</span>' in out
    assert "\n    <span" in out  # indentation kept inside <pre>
    assert "<pre><code>  plain\n</code></pre>" in out


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>window.__pwned = 1</script>",
        '<img src=x onerror="window.__pwned=1">',
        '<a href="javascript:alert(1)">x</a>',
        "[x](javascript:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        '<iframe src="https://example.com"></iframe>',
        "<style>body{background:url(https://evil.example/x)}</style>",
    ],
)
def test_answers_never_carry_markup_that_runs_or_fetches(hostile: str) -> None:
    out = render_answer(hostile, "Refused", "refusal").lower()
    assert "<script" not in out and "<iframe" not in out and "<style" not in out and "<img" not in out
    assert not re.search(r"<a\s[^>]*href=\"(javascript|data):", out)  # as text it is only characters
    assert not re.search(r"<[a-z][^>]*\son[a-z]+=", out)  # no tag carries an event handler (text may name one)


def test_the_sanitiser_itself_drops_what_is_not_on_its_list() -> None:
    dirty = (
        '<p onclick="x()">a<iframe src="https://x"></iframe><object data="x"></object><script>1</script>'
        '<a href="javascript:alert(1)">j</a><a href="https://ok.example">ok</a>'
        '<table><tr><td style="background:url(http://x);text-align:left">q</td></tr></table></p>'
    )
    out = sanitise(dirty)
    assert "onclick" not in out and "iframe" not in out and "object" not in out and "<script" not in out
    assert "javascript" not in out and "url(" not in out and 'style="text-align:left"' in out
    assert '<a href="https://ok.example" target="_blank" rel="noopener noreferrer nofollow">ok</a>' in out


def test_remote_images_only_when_the_project_allows_them() -> None:
    text = "![a chart](https://example.com/chart.png)"
    assert "<img" not in render_markdown(text) and ">image: a chart</a>" in render_markdown(text)
    assert '<img src="https://example.com/chart.png" alt="a chart">' in render_markdown(
        text, RenderOptions(remote_images=True)
    )


def test_labels_reasoning_and_raw_text_go_with_the_answer() -> None:
    out = render_answer("37. Oreg", "Cut off at the length limit", "cut_off", reasoning=["Think **first**."])
    assert out.startswith('<div class="rlhf-label rlhf-label-cut_off">Cut off at the length limit</div>')
    assert '<details class="rlhf-reasoning"><summary>Reasoning' in out and "<strong>first</strong>" in out
    assert (
        "rlhf-cutoff-end" in out and '<details class="rlhf-raw"><summary>Raw text</summary><pre>37. Oreg</pre>' in out
    )
    assert "rlhf-reasoning" not in render_answer("x") and "rlhf-label" not in render_answer("x")
