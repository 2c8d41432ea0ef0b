"""Building blocks for the redaction patterns, shaped for Python's `re` engine.

Two properties keep every pattern fast on any input:
- Word lists are compiled as tries, so an attempt reads each character once, however many words.
- A pattern *starts* with a plain character class of its possible first characters (no
  IGNORECASE at the top, no lookbehind first). `re` then skips every other position in a C loop
  instead of starting an attempt there; the word-start check and the case-insensitive rest come
  after the first character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_Trie = dict[str, "_Trie"]  # one level a character; "" marks the end of a word


def trie(words: Iterable[str], space: str = r"[ \t\-]?") -> str:
    """An alternation of the literal `words` (lower case) as a trie; " " in a word is `space`."""
    root: _Trie = {}
    for word in words:
        node = root
        for char in word.lower():
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: _Trie) -> str:
        branches = [(space if c == " " else re.escape(c)) + emit(child)
                    for c, child in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


def _cases(char: str) -> str:
    both = {char, char.lower(), char.upper()}
    return "".join(sorted(c for c in both if len(c) == 1))


def word_branches(words: Iterable[str], space: str = r"[ \t\-]?",
                  after: str = "") -> dict[str, str]:
    """{first characters (any case): the rest of the words starting with them, case-insensitive}."""
    rests: dict[str, list[str]] = {}
    for word in words:
        rests.setdefault(word[0].lower(), []).append(word[1:])
    return {_cases(first): f"(?i:{trie(rest, space)}){after}" for first, rest in rests.items()}


_BEFORE = "\x00"  # in a first_char_scan pattern: around the class of the character before it


def first_char_scan(branches: dict[str, str], not_after: str | None = None,
                    name: str | None = None) -> str:
    """An alternation with one arm per possible first character, each a plain literal.

    `branches` maps the characters a branch may start with (as they go in a character class,
    ranges such as "0-9" allowed) to the pattern of the rest; `name` names the group of the
    alternation. Without `not_after`, `re` derives the set of first characters from the literals
    and skips every other position in C; inside the alternation an arm whose literal does not
    match is skipped without entering it.

    With `not_after`, a class the character before the match must not be in (a word start, a
    token start), the result is for `WordStart`, which finds the match by that character instead:
    in prose a space or a punctuation mark is far rarer than a letter a label may start with.
    """
    arms, firsts = [], []
    for start, rest in branches.items():
        for part in _split_class(start):
            chars = ([chr(c) for c in range(ord(part[0]), ord(part[2]) + 1)] if len(part) == 3
                     else [part])
            arms += [f"{re.escape(char)}(?:{rest})" for char in chars]
            firsts += chars
    body = f"(?:{'|'.join(arms)})"
    if name:
        body = f"(?P<{name}>{body})"
    if not_after is None:
        return body
    before = (f"[{not_after[2:]}" if not_after.startswith("[^") else
              f"[^{not_after[1:]}" if not_after.startswith("[") else not_after.swapcase())
    first_class = "".join(re.escape(c) for c in dict.fromkeys(firsts))
    return f"{_BEFORE}{before}{_BEFORE}(?=[{first_class}]){body}"


class WordStart:
    """A pattern from `first_char_scan(..., not_after=…)` and what follows it.

    `scan` takes the character before the match along (so `re` scans for it in C); `at_start`
    finds a match at the very start of the text, where there is no character before.
    """

    def __init__(self, pattern: str) -> None:
        _, before, body = pattern.split(_BEFORE)
        self.scan = re.compile(before + body)
        self.at_start = re.compile(body)

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        first = self.at_start.match(text)
        if first is not None:
            yield first
        yield from self.scan.finditer(text, first.end() if first is not None else 0)


def _split_class(body: str) -> list[str]:
    """Characters of a class body, keeping ranges such as "0-9" whole."""
    parts, index = [], 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            parts.append(body[index : index + 3])
            index += 3
        else:
            parts.append(body[index])
            index += 1
    return list(dict.fromkeys(parts))
