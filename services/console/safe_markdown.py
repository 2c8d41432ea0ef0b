"""The warm-transfer packet's Markdown as HTML, safe for untrusted customer text.

The packet quotes customers verbatim (names, subjects, what they said), so its Markdown is
untrusted input. markdown-it-py renders it with raw HTML off (`<script>` stays text, escaped),
and with links, autolinks and images off as well: a customer's `[refund](javascript:...)` or
`![](https://tracker.example/pixel)` is shown as the characters they typed, never something a
supervisor can click or a page that loads a stranger's address. The page's Content-Security-Policy
(no inline script, images from the console only) is a second wall behind this one.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

# `breaks`: the packet's lines (Assigned, Next step) stay lines.
_MD = (MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False,
                                 "breaks": True})
       .enable("table")
       .disable(["link", "image", "autolink", "html_inline", "html_block"]))


def render(markdown: str) -> Markup:
    """HTML for `markdown`; every character of the input is escaped or Markdown syntax."""
    return Markup(_MD.render(markdown))  # markdown-it escaped it: raw HTML is off
