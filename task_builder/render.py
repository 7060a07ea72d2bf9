"""Answers and prompts as annotators read them: markdown rendered to sanitised HTML, at delivery.

Model answers are markdown. :func:`render_markdown` turns one into HTML with ``markdown-it-py`` (CommonMark,
plus tables and strikethrough), then cleans it with ``nh3`` (an allow-list sanitiser):

- raw HTML in the text is not markup: ``<script>`` in an answer is shown as the characters the model wrote
  (markdown-it's ``html`` option is off), and the sanitiser drops whatever markup is not on its list anyway
  (scripts, event handlers, iframes, objects, forms, styles), so what reaches the browser runs nothing;
- links keep ``http``, ``https`` and ``mailto`` URLs only (``javascript:``, ``data:`` … are dropped) and open
  in a new tab with ``rel="noopener noreferrer nofollow"``;
- images are shown only when :attr:`RenderOptions.remote_images` allows it; otherwise an image becomes a link
  naming it (``image: <alt>``), so nothing is fetched when a task opens;
- fenced code keeps its indentation in a monospace block, highlighted by Pygments when the fence names a
  language Pygments knows (token classes, styled by :func:`stylesheet`);
- math (``\\( … \\)``, ``\\[ … \\]``, ``$$ … $$``) is set off as its source in a ``<code class="rlhf-math">``.

:func:`render_answer` adds what an annotator must know about an answer (its label: refused, cut off at the
length limit), the model's reasoning in a collapsed block when asked, and the raw text in a collapsed block.
The text an annotation is bound to (``task_builder.answer_hash``) is the answer's text, never this HTML: the
HTML is derived from that text at every delivery.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"
MAX_HIGHLIGHT_CHARS = 20_000
"""Longer code blocks are shown plain: highlighting is a comfort, not worth seconds per task."""

_OUR_CLASSES = {
    "rlhf-md",
    "rlhf-math",
    "rlhf-raw",
    "rlhf-reasoning",
    "rlhf-label",
    "rlhf-label-cut_off",
    "rlhf-label-refusal",
    "rlhf-rated-elsewhere",
    "rlhf-cutoff-end",
    "rlhf-turn",
    "rlhf-role",
    "highlight",
}
_TOKEN_CLASSES = {name for name in STANDARD_TYPES.values() if name}
_CLASSES = frozenset(_OUR_CLASSES | _TOKEN_CLASSES)

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "samp", "span", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "ol": {"start"},
    "td": {"style"},
    "th": {"style"},
    "img": {"src", "alt", "title"},
}
_STYLES = {"text-align"}  # markdown-it's table column alignment; no other CSS passes (no url(), no layout)


@dataclass(frozen=True)
class RenderOptions:
    """What a project allows in rendered text."""

    remote_images: bool = False  # show ![…](https://…) images (the annotator's browser fetches them)


def _math_rule(state: StateInline, silent: bool) -> bool:
    """Inline rule: ``\\( … \\)``, ``\\[ … \\]`` and ``$$ … $$`` as one ``math`` token holding the source."""
    src, pos = state.src, state.pos
    for opening, closing in (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$")):
        if src.startswith(opening, pos):
            end = src.find(closing, pos + len(opening))
            if end < 0 or end == pos + len(opening):
                return False
            if not silent:
                token = state.push("math", "code", 0)
                token.content = src[pos : end + len(closing)]
            state.pos = end + len(closing)
            return True
    return False


def _render_math(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    return f'<code class="rlhf-math">{html.escape(tokens[idx].content)}</code>'


def _highlight(code: str, lang: str, _attrs: Any) -> str:
    """Pygments' HTML for a fenced block naming a known language, else "" (markdown-it escapes it)."""
    if not lang or len(code) > MAX_HIGHLIGHT_CHARS:
        return ""
    try:
        lexer = get_lexer_by_name(lang.split()[0])
    except ClassNotFound:
        return ""
    body: str = highlight(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="highlight"><code>{body}</code></pre>'


@lru_cache(maxsize=2)
def _parser(remote_images: bool) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(["table", "strikethrough"])
    md.inline.ruler.before("escape", "math", _math_rule)
    md.add_render_rule("math", _render_math)
    if not remote_images:
        md.add_render_rule("image", _image_as_link)
    return md


def _image_as_link(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    src = html.escape(str(token.attrGet("src") or ""))
    return f'<a href="{src}">image: {html.escape(alt)}</a>'


def sanitise(fragment: str, options: RenderOptions = RenderOptions()) -> str:
    """``fragment`` cleaned to the allow-list (module docstring); links open in a new tab, no referrer."""
    tags = _TAGS | ({"img"} if options.remote_images else set())
    attributes = {tag: set(names) for tag, names in _ATTRIBUTES.items() if tag in tags}
    cleaned: str = nh3.clean(
        fragment,
        tags=tags,
        clean_content_tags={"script", "style"},
        attributes=attributes,
        link_rel=LINK_REL,
        url_schemes=set(URL_SCHEMES),
        allowed_classes={tag: set(_CLASSES) for tag in tags},
        filter_style_properties=_STYLES,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return cleaned


def render_markdown(text: str, options: RenderOptions = RenderOptions()) -> str:
    """``text`` (markdown) as sanitised HTML in a ``<div class="rlhf-md">``."""
    return f'<div class="rlhf-md">{sanitise(_parser(options.remote_images).render(text), options)}</div>'


def _raw_block(text: str) -> str:
    return f'<details class="rlhf-raw"><summary>Raw text</summary><pre>{html.escape(text)}</pre></details>'


def render_answer(
    text: str,
    label: str | None = None,
    shape: str | None = None,
    reasoning: Sequence[str] = (),
    options: RenderOptions = RenderOptions(),
    rated_elsewhere: bool = False,
) -> str:
    """An answer as annotators see it: its label (``shape``'s, e.g. "Cut off at the length limit") on top,
    the model's reasoning collapsed (when given), the rendered text, a mark where a cut-off answer stops,
    and the raw text collapsed. Everything from the answer is escaped or sanitised. ``rated_elsewhere``:
    the pairwise layout rates this answer in another pair (the form hides its ratings here)."""
    parts = []
    if rated_elsewhere:
        parts.append('<div class="rlhf-rated-elsewhere">Rated in another pair: compare only</div>')
    if label:
        kind = f" rlhf-label-{shape}" if shape in ("cut_off", "refusal") else ""
        parts.append(f'<div class="rlhf-label{kind}">{html.escape(label)}</div>')
    if reasoning:
        joined = "\n\n".join(reasoning)
        parts.append(
            f'<details class="rlhf-reasoning"><summary>Reasoning ({len(joined):,} characters)</summary>'
            f"{render_markdown(joined, options)}</details>"
        )
    parts.append(render_markdown(text, options))
    if shape == "cut_off":
        parts.append('<div class="rlhf-cutoff-end">[cut off here: the answer reached the length limit]</div>')
    parts.append(_raw_block(text))
    return "".join(parts)


def render_conversation(turns: Sequence[tuple[str, str]], options: RenderOptions = RenderOptions()) -> str:
    """A prompt as annotators see it: one message rendered as is, several each under its role, and the raw
    text of the whole prompt collapsed. ``turns`` are ``(role label, text)`` pairs."""
    if len(turns) == 1:
        body = render_markdown(turns[0][1], options)
    else:
        body = "".join(
            f'<div class="rlhf-turn"><div class="rlhf-role">{html.escape(role)}</div>'
            f"{render_markdown(text, options)}</div>"
            for role, text in turns
        )
    raw = "\n\n".join(text if len(turns) == 1 else f"{role}: {text}" for role, text in turns)
    return body + _raw_block(raw)


_BLOCK_CSS = """
.rlhf-md { line-height: 1.45; overflow-wrap: anywhere; }
.rlhf-md p { margin: 0 0 8px; }
.rlhf-md h1, .rlhf-md h2, .rlhf-md h3, .rlhf-md h4 { margin: 10px 0 6px; font-size: 15px; }
.rlhf-md pre, .rlhf-md pre *, .rlhf-md code, .rlhf-raw pre {
  font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace !important; }
.rlhf-md pre { font-size: 13px;
  background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 4px; padding: 6px 8px; overflow-x: auto;
  white-space: pre; tab-size: 4; }
.rlhf-md code { font-size: 13px;
  background: #f1f3f5; border-radius: 3px; padding: 0 3px; }
.rlhf-md pre code { background: none; padding: 0; }
.rlhf-md table { border-collapse: collapse; margin: 6px 0; }
.rlhf-md th, .rlhf-md td { border: 1px solid #d0d7de; padding: 2px 8px; }
.rlhf-md th { background: #f6f8fa; }
.rlhf-md blockquote { border-left: 3px solid #d0d7de; margin: 0 0 8px; padding-left: 8px; color: #444; }
.rlhf-md ul, .rlhf-md ol { margin: 0 0 8px; padding-left: 30px; }
code.rlhf-math { background: #fff7e0; border: 1px dashed #d9b44a; color: #5a4300; }
.rlhf-label { display: inline-block; font-weight: 600; font-size: 12px; padding: 1px 8px; margin: 2px 0 6px;
  border-radius: 10px; background: #eef1f4; color: #333; }
.rlhf-label-cut_off { background: #fff1d6; color: #8a5300; border: 1px solid #e8b04a; }
.rlhf-label-refusal { background: #fde8e8; color: #8a1f1f; border: 1px solid #e59a9a; }
.rlhf-rated-elsewhere { font-size: 12px; color: #5b6370; font-style: italic; margin: 2px 0 6px; }
.rlhf-cutoff-end { color: #8a5300; font-style: italic; font-size: 12px; margin: 4px 0; }
.rlhf-raw, .rlhf-reasoning { margin: 4px 0; font-size: 12px; color: #5b6370; }
.rlhf-raw pre { white-space: pre-wrap; font-size: 12px; }
.rlhf-reasoning .rlhf-md { color: #333; border-left: 3px solid #c8d1dc; padding-left: 8px; }
.rlhf-role { font-weight: 600; font-size: 12px; color: #5b6370; margin-top: 6px; }
"""


def stylesheet() -> str:
    """The CSS for rendered text: layout of our classes and Pygments' token colours."""
    pygments_css: str = HtmlFormatter().get_style_defs(".rlhf-md .highlight")
    return _BLOCK_CSS.strip() + "\n" + pygments_css
