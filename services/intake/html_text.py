"""HTML email bodies as plain text, with inscriptis (keeps paragraphs, lists and tables readable).

The visible text of an HTML reply drops the quote containers the common clients write
(Gmail's `gmail_quote`, `<blockquote>`, Yahoo's `yahoo_quoted`, Thunderbird's `moz-cite-prefix`,
Outlook's `divRplyFwdMsg` / `OLK_SRC_BODY_SECTION` and everything after them), then applies the
plain-text rules of reply_text.
"""

from __future__ import annotations

from inscriptis import get_text
from lxml import etree, html

from services.intake.reply_text import split_reply

_QUOTES = ("//blockquote"
           " | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
           " | //*[contains(@class, 'yahoo_quoted')] | //*[contains(@class, 'moz-cite-prefix')]")
# Outlook puts the quoted message after a header block in these, not inside them.
_OUTLOOK_MARKERS = "//*[@id='divRplyFwdMsg' or @id='OLK_SRC_BODY_SECTION' or @id='appendonsend']"


def html_to_text(markup: str) -> str:
    if not markup.strip():
        return ""
    try:
        return _tidy(get_text(markup))
    except (ValueError, etree.ParserError):  # markup lxml cannot parse at all
        return markup.strip()


def html_visible_text(markup: str) -> str:
    if not markup.strip():
        return ""
    try:
        tree = html.fromstring(markup)
        for rule in tree.iter("hr"):
            # inscriptis renders <hr> as nothing; a rule line lets reply_text see the divider.
            rule.tag, rule.text = "div", "_" * 20
        for marker in tree.xpath(_OUTLOOK_MARKERS):
            _drop_from(marker)
        for quote in tree.xpath(_QUOTES):
            if quote.getparent() is not None:
                quote.getparent().remove(quote)
        text = _tidy(get_text(html.tostring(tree, encoding="unicode")))
    except (ValueError, etree.ParserError):
        text = html_to_text(markup)
    return split_reply(text).visible


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


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and out and not out[-1]:
            continue  # collapse runs of blank lines
        out.append(line)
    return "\n".join(out).strip()
