"""HTML email bodies as plain text, with inscriptis (keeps paragraphs, lists and tables readable).

The visible text of an HTML reply drops the quote containers the common clients write
(Gmail's `gmail_quote`, `<blockquote>`, Yahoo's `yahoo_quoted`, Thunderbird's `moz-cite-prefix`,
Outlook's `divRplyFwdMsg` / `OLK_SRC_BODY_SECTION` and everything after them), then applies the
plain-text rules of reply_text.

inscriptis lays tables out and costs ~5 µs per character of markup, ~0.2 ms per table cell
(48 s for a table of 700 x 200 cells): markup above `RICH_MAX_CHARS` or with more than
`RICH_MAX_CELLS` cells is rendered by `_plain_texts` instead, one lxml parse and one pass over
the tree (blocks on their own lines, cells separated by spaces), recorded as `SimplifiedHtml`.
"""

from __future__ import annotations

import re
from typing import Any

from inscriptis import get_text
from lxml import etree, html

from services.intake.safe_text import split_reply_bounded

_QUOTES = ("//blockquote"
           " | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
           " | //*[contains(@class, 'yahoo_quoted')] | //*[contains(@class, 'moz-cite-prefix')]")
# Outlook puts the quoted message after a header block in these, not inside them.
_OUTLOOK_MARKERS = "//*[@id='divRplyFwdMsg' or @id='OLK_SRC_BODY_SECTION' or @id='appendonsend']"

RICH_MAX_CHARS = 64_000
RICH_MAX_CELLS = 1_000
REPLY_MAX_CHARS = 32_768
_MAY_QUOTE = re.compile(r"<hr|blockquote|gmail_quote|yahoo_quoted|moz-cite-prefix|divRplyFwdMsg"
                        r"|OLK_SRC_BODY_SECTION|appendonsend", re.IGNORECASE)
_CELL = re.compile(r"<t[dh][\s>/]", re.IGNORECASE)
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "br", "center", "dd", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
})


def html_texts(markup: str, defects: list[str],
               reply_max_chars: int = REPLY_MAX_CHARS) -> tuple[str, str]:
    """(full text, visible new text) of an HTML body, in bounded time."""
    cells = len(_CELL.findall(markup, 0, RICH_MAX_CHARS + 1)) if "<" in markup else 0
    if len(markup) <= RICH_MAX_CHARS and cells <= RICH_MAX_CELLS:
        full = html_to_text(markup)
        if not _MAY_QUOTE.search(markup):  # nothing to drop: render once
            return full, split_reply_bounded(full[:reply_max_chars]).visible
        return full, html_visible_text(markup, reply_max_chars)
    defects.append("SimplifiedHtml")
    return _plain_texts(markup, reply_max_chars)


def html_to_text(markup: str) -> str:
    if not markup.strip():
        return ""
    try:
        return _tidy(get_text(markup))
    except (ValueError, etree.ParserError):  # markup lxml cannot parse at all
        return markup.strip()


def html_visible_text(markup: str, reply_max_chars: int = REPLY_MAX_CHARS) -> str:
    if not markup.strip():
        return ""
    try:
        tree = html.fromstring(markup)
        for rule in tree.iter("hr"):
            # inscriptis renders <hr> as nothing; a rule line lets reply_text see the divider.
            rule.tag, rule.text = "div", "_" * 20
        _drop_quotes(tree)
        text = _tidy(get_text(html.tostring(tree, encoding="unicode")))
    except (ValueError, etree.ParserError):
        text = html_to_text(markup)
    return split_reply_bounded(text[:reply_max_chars]).visible


def _drop_quotes(tree: html.HtmlElement) -> None:
    for marker in tree.xpath(_OUTLOOK_MARKERS):
        _drop_from(marker)
    for quote in tree.xpath(_QUOTES):
        if quote.getparent() is not None:
            quote.getparent().remove(quote)


def _plain_texts(markup: str, reply_max_chars: int) -> tuple[str, str]:
    """Large HTML as text: one parse and one pass over the tree, no table layout, no XPath."""
    try:
        root = etree.fromstring(markup, _PARSER)
    except (ValueError, etree.ParserError, etree.XMLSyntaxError):
        root = None
    if root is None:  # nothing lxml can read as HTML
        text = _tidy(markup, squeeze=True)
        return text, split_reply_bounded(text[:reply_max_chars]).visible
    hidden, quotes, markers = [], [], []
    for element in root.iter(etree.Element):
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in _BLOCKS:
            element.text = "\n" + ("_" * 20 if tag == "hr" else element.text or "")
            element.tail = "\n" + (element.tail or "")
        elif tag in ("td", "th"):
            element.tail = " " + (element.tail or "")
        elif tag in _HIDDEN_TAGS:
            hidden.append(element)
        if tag == "blockquote" or _quote_class(element.get("class")):
            quotes.append(element)
        if element.get("id") in _MARKER_IDS:
            markers.append(element)
    for element in hidden:
        _detach(element)
    full = _tidy(_text_of(root)[:_TEXT_SCAN], squeeze=True)
    for marker in markers:
        _drop_from(marker)
    for quote in quotes:
        _detach(quote)
    visible = _tidy(_text_of(root)[:_TEXT_SCAN], squeeze=True)
    return full, split_reply_bounded(visible[:reply_max_chars]).visible


_TEXT_SCAN = 400_000  # characters of rendered text tidied (the contact keeps 100,000)
_PARSER = etree.HTMLParser(remove_comments=True, remove_pis=True)
_HIDDEN_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template"})
_MARKER_IDS = frozenset({"divRplyFwdMsg", "OLK_SRC_BODY_SECTION", "appendonsend"})


def _quote_class(classes: str | None) -> bool:
    """The class tests of `_QUOTES`, on the attribute's text."""
    if not classes:
        return False
    return ("gmail_quote" in classes.split() or "yahoo_quoted" in classes
            or "moz-cite-prefix" in classes)


def _detach(element: Any) -> None:
    """Remove an element and its content, keeping the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    parent.remove(element)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail


def _text_of(tree: Any) -> str:
    return str(etree.tostring(tree, method="text", encoding="unicode", with_tail=False))


def _drop_from(element: html.HtmlElement) -> None:
    """Remove `element` and everything after it in document order."""
    node = element
    while node is not None and node.getparent() is not None:
        parent = node.getparent()
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        if node is element:
            parent.remove(node)
        node = parent


def _tidy(text: str, squeeze: bool = False) -> str:
    lines = [" ".join(line.split()) if squeeze else line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and out and not out[-1]:
            continue  # collapse runs of blank lines
        out.append(line)
    return "\n".join(out).strip()
