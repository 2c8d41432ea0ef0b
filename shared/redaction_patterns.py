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
from collections.abc import Iterable


def trie(words: Iterable[str], space: str = r"[ \t\-]?") -> str:
    """An alternation of the literal `words` (lower case) as a trie; " " in a word is `space`."""
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for char in word.lower():
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:
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


def first_char_scan(branches: dict[str, str], not_after: str | None = None) -> str:
    """An alternation with one arm per possible first character, each a plain literal.

    `branches` maps the characters a branch may start with (as they go in a character class,
    ranges such as "0-9" allowed) to the pattern of the rest; `not_after` is a class the character
    before the match must not be in (a word start, a token start). `re` derives the set of first
    characters from the literals and skips every other position in C; inside the alternation an
    arm whose literal does not match is skipped without entering it.
    """
    guard = f"(?<!{not_after}.)" if not_after else ""
    arms = []
    for firsts, rest in branches.items():
        for part in _split_class(firsts):
            chars = ([chr(c) for c in range(ord(part[0]), ord(part[2]) + 1)] if len(part) == 3
                     else [part])
            arms += [f"{re.escape(char)}{guard}{rest}" for char in chars]
    return f"(?:{'|'.join(arms)})"


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
